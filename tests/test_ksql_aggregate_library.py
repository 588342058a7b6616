"""The aggregate-function library (AVG … CORRELATION) against ksqlDB's semantics.

Per function: return types, null handling and the values ksqlDB's own tests expect; then
properties over random rows: undo after add gives the accumulator back (undoable functions),
a merge of two accumulators equals one that saw both sides' rows (session windows), and every
accumulator survives the JSON changelog round-trip.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ksql_server.errors import KsqlError
from services.ksql_server.functions.aggregates import AggregateFunction, resolve_aggregate
from services.ksql_server.types import (
    BIGINT,
    BYTES,
    DOUBLE,
    INTEGER,
    STRING,
    SqlType,
    array,
    decimal,
    map_of,
    struct,
)


def run(fn: AggregateFunction, rows: list[tuple[Any, ...]]) -> Any:
    acc = fn.initial()
    for row in rows:
        acc = fn.add(acc, row)
    return acc


def agg(name: str, types: list[SqlType | None], rows: list[Any], literals: tuple = ()) -> Any:
    fn = resolve_aggregate(name, types, literals)
    return fn.result(run(fn, [r if isinstance(r, tuple) else (r,) for r in rows]))


def roundtrip(fn: AggregateFunction, acc: Any) -> Any:
    return fn.from_state(json.loads(json.dumps(fn.to_state(acc))))


# --- per function -------------------------------------------------------------------------


def test_avg_types_nulls_and_overflow() -> None:
    assert resolve_aggregate("avg", [INTEGER]).return_type == DOUBLE
    assert agg("AVG", [INTEGER], []) == 0.0
    assert agg("AVG", [INTEGER], [1, None, 2]) == 1.5
    assert agg("AVG", [DOUBLE], [1.5, 2.5, None]) == 2.0
    # Java int sum wraps: 2^31-1 + 1 = -2^31
    assert agg("AVG", [INTEGER], [2**31 - 1, 1]) == -(2**31) / 2
    assert agg("AVG", [BIGINT], [2**40, 2**40]) == 2.0**40
    with pytest.raises(KsqlError, match="does not accept parameters"):
        resolve_aggregate("AVG", [STRING])


def test_avg_undo_matches_ksqldb_table_case() -> None:
    fn = resolve_aggregate("AVG", [BIGINT])
    acc = run(fn, [(10,), (20,)])
    acc = fn.undo(acc, (10,))
    assert fn.result(acc) == 20.0
    assert fn.undo(acc, (None,)) == acc


def test_count_distinct() -> None:
    fn = resolve_aggregate("COUNT_DISTINCT", [STRING])
    assert fn.return_type == BIGINT and not fn.undoable
    assert agg("COUNT_DISTINCT", [STRING], ["a", "b", "a", None]) == 2
    assert agg("COUNT_DISTINCT", [array(INTEGER)], [[1, 2], [1, 2], [2, 1]]) == 2
    assert agg("COUNT_DISTINCT", [STRING], []) == 0


def test_collect_list_keeps_nulls_order_and_limit() -> None:
    fn = resolve_aggregate("COLLECT_LIST", [INTEGER])
    assert fn.return_type == array(INTEGER) and fn.undoable
    assert fn.result(run(fn, [(1,), (None,), (1,)])) == [1, None, 1]
    assert fn.result(fn.undo(run(fn, [(1,), (2,), (1,)]), (1,))) == [1, 2]
    fn.configure({"ksql.functions.collect_list.limit": 1})  # type: ignore[attr-defined]
    assert fn.result(run(fn, [(5,), (6,)])) == [5]
    assert fn.result(fn.merge([5], [6])) == [5]


def test_collect_set() -> None:
    fn = resolve_aggregate("COLLECT_SET", [STRING])
    assert fn.return_type == array(STRING) and not fn.undoable
    assert fn.result(run(fn, [("b",), ("a",), ("b",)])) == ["b", "a"]
    assert fn.merge(["b", "a"], ["c", "a"]) == ["b", "a", "c"]


def test_histogram() -> None:
    fn = resolve_aggregate("HISTOGRAM", [STRING])
    assert fn.return_type == map_of(STRING, BIGINT)
    acc = run(fn, [("foo",), ("bar",), ("foo",), (None,)])
    assert fn.result(acc) == {"foo": 2, "bar": 1}
    assert fn.result(fn.undo(acc, ("bar",))) == {"foo": 2}
    assert len(fn.result(run(fn, [(str(i),) for i in range(1005)]))) == 1000
    with pytest.raises(KsqlError):
        resolve_aggregate("HISTOGRAM", [INTEGER])


def test_topk_plain_and_struct() -> None:
    assert agg("TOPK", [INTEGER], [0, 100, 99, None, 7], (3,)) == [100, 99, 7]
    assert agg("TOPK", [STRING], ["a", "c", "b"], (2,)) == ["c", "b"]
    fn = resolve_aggregate("TOPK", [BIGINT, STRING], (2,))
    assert fn.return_type == array(struct([("sort_col", BIGINT), ("col0", STRING)]))
    rows = [(2**31, "zero"), (100, "one"), (99, "two")]
    assert fn.result(run(fn, rows)) == [
        {"sort_col": 2**31, "col0": "zero"},
        {"sort_col": 100, "col0": "one"},
    ]
    with pytest.raises(KsqlError):
        resolve_aggregate("TOPK", [BYTES], (2,))


def test_topkdistinct() -> None:
    assert agg("TOPKDISTINCT", [INTEGER], [5, 5, 3, 9, 3], (2,)) == [9, 5]
    dec = decimal(4, 2)
    assert agg("TOPKDISTINCT", [dec], [Decimal("1.5"), Decimal("2.5")], (1,)) == [Decimal("2.5")]


@pytest.mark.parametrize(
    ("literals", "rows", "expected"),
    [
        ((), [1, None], 1),
        ((False,), [1, None], None),
        ((2,), [1, None, 2, 3], [2, 3]),
        ((2, False), [1, 2, None], [2, None]),
        ((), [None, None], None),
    ],
)
def test_latest_by_offset(literals: tuple, rows: list[Any], expected: Any) -> None:
    assert agg("LATEST_BY_OFFSET", [INTEGER], rows, literals) == expected


@pytest.mark.parametrize(
    ("literals", "rows", "expected"),
    [
        ((), [None, 1, 2], 1),
        ((False,), [None, 1], None),
        ((2,), [None, 1, None, 2, 3], [1, 2]),
        ((2, False), [None, 1, 2], [None, 1]),
        ((2,), [None, None], []),
    ],
)
def test_earliest_by_offset(literals: tuple, rows: list[Any], expected: Any) -> None:
    assert agg("EARLIEST_BY_OFFSET", [INTEGER], rows, literals) == expected


def test_by_offset_types_and_errors() -> None:
    assert resolve_aggregate("LATEST_BY_OFFSET", [STRING]).return_type == STRING
    assert resolve_aggregate("LATEST_BY_OFFSET", [STRING], (3,)).return_type == array(STRING)
    with pytest.raises(KsqlError, match="earliestN must be 1 or greater"):
        resolve_aggregate("EARLIEST_BY_OFFSET", [STRING], (0,))


def test_latest_merges_sessions_as_ksqldb() -> None:
    """ksqlDB's 'merging session windows': [0] ← 1, [1500] ← null, then 2 at 700 bridges."""
    fn = resolve_aggregate("LATEST_BY_OFFSET", [INTEGER], (2, False))
    first, second = run(fn, [(1,)]), run(fn, [(None,)])
    merged = fn.merge(fn.merge(fn.initial(), first), second)
    assert fn.result(fn.add(merged, (2,))) == [None, 2]


def test_stddev_variants() -> None:
    rows = [1, 2, 3, 4]
    variance = 5 / 3
    assert agg("STDDEV_SAMP", [INTEGER], rows) == pytest.approx(variance)  # ksqlDB: no root
    assert agg("STDDEV_SAMPLE", [INTEGER], rows) == pytest.approx(math.sqrt(variance))
    assert agg("STDDEV_SAMPLE", [DOUBLE], [1.0]) == 0.0
    assert resolve_aggregate("STDDEV_SAMP", [BIGINT]).return_type == DOUBLE


def test_correlation() -> None:
    rows = [(1.5, 8.0), (-1.0, -2.0), (None, 3.0), (2.0, 9.5)]
    r = agg("CORRELATION", [DOUBLE, DOUBLE], rows)
    assert r == pytest.approx(0.9994, abs=1e-3)
    assert math.isnan(agg("CORRELATION", [DOUBLE, DOUBLE], [(1.0, 2.0)]))
    assert agg("CORRELATION", [INTEGER, INTEGER], [(1, 1), (2, 2), (3, 3)]) == pytest.approx(1)


# --- properties ---------------------------------------------------------------------------

INTS = st.integers(-(2**31), 2**31 - 1)
SMALL = st.one_of(st.none(), st.integers(-1000, 1000))
STRINGS = st.one_of(st.none(), st.text(alphabet="abcde", max_size=3))
FLOATS = st.one_of(st.none(), st.floats(-1e3, 1e3, allow_nan=False).map(lambda x: round(x, 3)))

CASES: list[tuple[str, list[SqlType | None], tuple, Any]] = [
    ("AVG", [INTEGER], (), st.tuples(st.one_of(st.none(), INTS))),
    ("AVG", [DOUBLE], (), st.tuples(FLOATS)),
    ("STDDEV_SAMP", [BIGINT], (), st.tuples(SMALL)),
    ("STDDEV_SAMPLE", [DOUBLE], (), st.tuples(FLOATS)),
    ("CORRELATION", [DOUBLE, DOUBLE], (), st.tuples(FLOATS, FLOATS)),
    ("COUNT_DISTINCT", [STRING], (), st.tuples(STRINGS)),
    ("COLLECT_LIST", [INTEGER], (), st.tuples(SMALL)),
    ("COLLECT_SET", [STRING], (), st.tuples(STRINGS)),
    ("HISTOGRAM", [STRING], (), st.tuples(STRINGS)),
    ("TOPK", [INTEGER], (3,), st.tuples(SMALL)),
    ("TOPKDISTINCT", [STRING], (2,), st.tuples(STRINGS)),
    ("LATEST_BY_OFFSET", [INTEGER], (), st.tuples(SMALL)),
    ("LATEST_BY_OFFSET", [INTEGER], (2, False), st.tuples(SMALL)),
    ("EARLIEST_BY_OFFSET", [STRING], (False,), st.tuples(STRINGS)),
    ("EARLIEST_BY_OFFSET", [INTEGER], (3,), st.tuples(SMALL)),
]
IDS = [f"{c[0]}{c[2]}-{c[1][0]}" for c in CASES]


def close(a: Any, b: Any) -> bool:
    """Equal, with floats compared to a relative tolerance (sums of doubles reassociate)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.mark.parametrize(("name", "types", "literals", "row"), CASES, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_add_then_undo_restores(
    name: str, types: list[SqlType | None], literals: tuple, row: Any, data: st.DataObject
) -> None:
    fn = resolve_aggregate(name, types, literals)
    if not fn.undoable:
        with pytest.raises(KsqlError, match="does not support undo"):
            fn.undo(fn.initial(), data.draw(row))
        return
    acc = run(fn, data.draw(st.lists(row, max_size=8)))
    extra = data.draw(row)
    assert close(fn.undo(fn.add(acc, extra), extra), acc)


@pytest.mark.parametrize(("name", "types", "literals", "row"), CASES, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_merge_equals_adding_both_sides(
    name: str, types: list[SqlType | None], literals: tuple, row: Any, data: st.DataObject
) -> None:
    fn = resolve_aggregate(name, types, literals)
    left = data.draw(st.lists(row, max_size=8))
    right = data.draw(st.lists(row, max_size=8))
    merged = fn.merge(run(fn, left), run(fn, right))
    assert close(fn.result(merged), fn.result(run(fn, left + right)))


@pytest.mark.parametrize(("name", "types", "literals", "row"), CASES, ids=IDS)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_state_roundtrip(
    name: str, types: list[SqlType | None], literals: tuple, row: Any, data: st.DataObject
) -> None:
    fn = resolve_aggregate(name, types, literals)
    acc = run(fn, data.draw(st.lists(row, max_size=8)))
    assert close(fn.result(roundtrip(fn, acc)), fn.result(acc))


def test_roundtrip_of_typed_values() -> None:
    """DECIMAL, BYTES and nested values come back as the same engine values."""
    item = struct([("D", decimal(5, 2)), ("B", BYTES), ("M", map_of(STRING, array(DOUBLE)))])
    value = {"D": Decimal("1.25"), "B": b"\x00\xff", "M": {"k": [1.0, 2.5]}}
    fn = resolve_aggregate("COLLECT_LIST", [item])
    acc = run(fn, [(value,), (None,)])
    assert roundtrip(fn, acc) == [value, None]
    latest = resolve_aggregate("LATEST_BY_OFFSET", [item], (2,))
    acc = run(latest, [(value,)])
    restored = roundtrip(latest, acc)
    assert latest.result(restored) == [value]
    assert latest.add(restored, (value,))[-1][0] > restored[0][0]  # sequence continues
