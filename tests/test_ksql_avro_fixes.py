"""ksqlDB's semantics behind the AVRO and aggregate conformance fixes of issue 13, checked
without a broker: SUM_LIST, SUM(DECIMAL) overflow stopping the query, Avro type inference
(fixed, a decimal without precision), temporal values read as the engine's ints, and the
conformance runner's comparisons (decimals in JSON sinks, BYTES, partitions tied on time).
"""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from services.ksql_conformance.qtt import _align_ties, matches
from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError, KsqlFunctionException
from services.ksql_server.formats.avro import raw_temporals, sql_type_of
from services.ksql_server.functions import aggregates_basic  # noqa: F401 - registers SUM, SUM_LIST
from services.ksql_server.functions.aggregates import resolve_aggregate


def test_sum_list_sums_every_element_in_the_element_type() -> None:
    fn = resolve_aggregate("SUM_LIST", [T.array(T.INTEGER)], ())
    acc = fn.initial()
    for values in ([1, 1], [2, 2], None, [100, 100, None]):
        acc = fn.add(acc, (values,))
    assert fn.result(acc) == 206
    assert fn.result(fn.undo(acc, ([2, 2],))) == 202
    assert fn.return_type == T.INTEGER
    doubles = resolve_aggregate("SUM_LIST", [T.array(T.DOUBLE)], ())
    assert doubles.result(doubles.add(doubles.initial(), ([0.5, 0.25],))) == 0.75
    with pytest.raises(KsqlError, match="SUM_LIST"):
        resolve_aggregate("SUM_LIST", [T.STRING], ())


def test_decimal_sum_past_its_precision_stops_the_query() -> None:
    fn = resolve_aggregate("SUM", [T.decimal(4, 1)], ())
    acc = fn.add(fn.add(fn.initial(), (Decimal("500.9"),)), (Decimal("300.8"),))
    assert fn.result(acc) == Decimal("801.7")
    with pytest.raises(KsqlFunctionException, match="Numeric field overflow"):
        fn.add(acc, (Decimal("400.8"),))


def test_avro_inference_of_fixed_and_decimal_without_precision() -> None:
    assert sql_type_of(["null", {"type": "fixed", "name": "md5", "size": 16}]) == T.BYTES
    assert sql_type_of({"type": "bytes", "logicalType": "decimal", "scale": 2}) == T.decimal(64, 2)


def _read(schema: Any, value: Any) -> Any:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), value)
    parsed = raw_temporals(fastavro.parse_schema(schema))
    return fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), parsed, None)  # type: ignore[call-arg]


def test_temporal_values_read_as_the_engines_ints() -> None:
    """A DATE of -2^31+1 days is past Python's dates; it still reads, as days."""
    schema = {
        "type": "record",
        "name": "r",
        "fields": [
            {"name": "d", "type": ["null", {"type": "int", "logicalType": "date"}]},
            {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "m", "type": {"type": "int", "logicalType": "time-millis"}},
        ],
    }
    assert _read(schema, {"d": -2147483647, "t": 1234, "m": 5}) == {
        "d": -2147483647,
        "t": 1234,
        "m": 5,
    }
    no_precision = {"type": "bytes", "logicalType": "decimal", "scale": 2}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, {"type": "bytes"}, (6521).to_bytes(2, "big", signed=True))
    reader = raw_temporals(no_precision)
    assert fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), reader, None) == Decimal(  # type: ignore[call-arg]
        "65.21"
    )


def test_runner_compares_decimals_and_bytes_as_ksqldb_does() -> None:
    assert matches({"L0": Decimal("3.40")}, {"L0": "3.40"})
    assert not matches({"L0": Decimal("3.4")}, {"L0": "3.40"})
    assert matches({"D": Decimal("0.1")}, {"D": 0.1})  # a JSON double read as a decimal
    assert matches({"VALUE": b"B"}, {"VALUE": "Qg=="})


class _Record:
    def __init__(self, partition: int, ts: int, key: int) -> None:
        self._p, self._ts, self.k = partition, ts, key

    def partition(self) -> int:
        return self._p

    def timestamp(self) -> tuple[int, int]:
        return 0, self._ts


def test_partitions_tied_on_time_follow_the_expected_order() -> None:
    records = [_Record(5, 10, 2), _Record(7, 10, 0), _Record(7, 10, 1), _Record(1, 20, 3)]
    decoded = [(r.k, None) for r in records]
    expected: list[dict[str, Any]] = [{"key": k, "value": None} for k in (0, 2, 1, 3)]
    _align_ties(records, decoded, expected)  # type: ignore[arg-type]
    assert [r.k for r in records] == [0, 2, 1, 3]
    # one partition's own order is kept: 1 cannot come before 0 (both in partition 7)
    records = [_Record(7, 10, 0), _Record(7, 10, 1)]
    decoded = [(r.k, None) for r in records]
    _align_ties(records, decoded, [{"key": 1, "value": None}, {"key": 0, "value": None}])  # type: ignore[arg-type]
    assert [r.k for r in records] == [0, 1]
