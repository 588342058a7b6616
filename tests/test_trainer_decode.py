"""The column-wise Avro reader gives exactly what fastavro + extract_features give."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.avro import HEADER, MAGIC_BYTE, SchemaCache, ksql_record_schema, parse_schema
from services.common.avro_columns import ColumnarDecoder
from services.common.features import extract_features
from services.common.topics import AVRO_FEATURE_FIELDS
from services.trainer.synthetic import PREPROCESSED_FIELDS

WITH_ID = [("ID", "long"), *PREPROCESSED_FIELDS, ("USER", "string")]


@dataclass
class _Schema:
    schema_str: str


class _Registry:
    """Answers get_schema(id) like SchemaRegistryClient, from a dict (no server needed)."""

    def __init__(self, schemas: dict[int, dict[str, Any]]) -> None:
        self._schemas = schemas

    def get_schema(self, schema_id: int) -> _Schema:
        return _Schema(json.dumps(self._schemas[schema_id]))


def _frame(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    import io

    import fastavro

    buf = io.BytesIO()
    buf.write(HEADER.pack(MAGIC_BYTE, schema_id))
    fastavro.schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def _reference(values: list[bytes | None], schemas: dict[int, dict[str, Any]]) -> Any:
    """The record-by-record path: fastavro decode then extract_features."""
    import io

    import fastavro

    records: list[Any] = []
    for v in values:
        if v is None:
            records.append(None)
            continue
        schema_id = HEADER.unpack_from(v)[1]
        records.append(
            fastavro.schemaless_reader(  # type: ignore[call-arg]
                io.BytesIO(v[HEADER.size :]), parse_schema(schemas[schema_id]), None
            )
        )
    return extract_features(records)


def _record(rng: np.random.Generator, i: int) -> dict[str, Any]:
    rec: dict[str, Any] = {f"V{k}": float(rng.normal()) for k in range(1, 29)}
    rec.update(TIME=int(rng.integers(0, 172_800)), AMOUNT=float(rng.exponential(50)))
    rec["CLASS"] = str(int(rng.random() < 0.1))
    rec["ID"] = int(rng.integers(0, 10**12)) if i % 3 else i
    rec["USER"] = "u" * int(rng.integers(0, 4))
    return rec


def test_columnar_matches_reference_on_messy_batch() -> None:
    schemas = {1: ksql_record_schema(PREPROCESSED_FIELDS), 7: ksql_record_schema(WITH_ID)}
    rng = np.random.default_rng(0)
    values: list[bytes | None] = []
    for i in range(400):
        rec = _record(rng, i)
        if i % 37 == 0:
            rec[f"V{1 + i % 28}"] = None  # missing feature
        if i % 41 == 0:
            rec["AMOUNT"] = float("nan")
        if i % 43 == 0:
            rec["CLASS"] = None if i % 2 else "x"  # unlabelled / unparseable label
        if i % 53 == 0:
            rec["V3"] = float("inf")
        schema_id = 7 if i % 2 else 1
        values.append(_frame(schema_id, schemas[schema_id], rec))
    values[5] = None  # tombstone
    decoder = ColumnarDecoder(SchemaCache(_Registry(schemas)))  # type: ignore[arg-type]
    got = decoder.decode(values)
    want = _reference(values, schemas)
    assert got.fast_rows > 300  # the column path did the work
    np.testing.assert_array_equal(got.kept, want.kept)
    np.testing.assert_array_equal(got.features, want.features)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert got.rejected == want.rejected
    assert len(got.rejected) > 10


def test_bad_framing_is_rejected_with_reason() -> None:
    schemas = {1: ksql_record_schema(PREPROCESSED_FIELDS)}
    good = _frame(1, schemas[1], _record(np.random.default_rng(1), 1))
    bad_magic = b"\x01" + good[1:]
    decoder = ColumnarDecoder(SchemaCache(_Registry(schemas)))  # type: ignore[arg-type]
    got = decoder.decode([good, bad_magic, b"\x00\x00", good[:-3]])
    assert got.kept.tolist() == [0]
    reasons = dict(got.rejected)
    assert "magic" in reasons[1] and "short" in reasons[2] and "decode" in reasons[3]
    assert got.features.shape == (1, len(AVRO_FEATURE_FIELDS))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "TIME": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
                "V1": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
                "AMOUNT": st.one_of(st.none(), st.floats(width=64)),
                "CLASS": st.one_of(st.none(), st.sampled_from(["0", "1", "", "1.0", "abc"])),
            }
        ),
        min_size=1,
        max_size=30,
    )
)
def test_columnar_matches_reference_property(partials: list[dict[str, Any]]) -> None:
    schemas = {3: ksql_record_schema(PREPROCESSED_FIELDS)}
    values: list[bytes | None] = []
    for p in partials:
        rec: dict[str, Any] = {f"V{k}": 0.5 * k for k in range(2, 29)}
        rec.update(p)
        values.append(_frame(3, schemas[3], rec))
    decoder = ColumnarDecoder(SchemaCache(_Registry(schemas)))  # type: ignore[arg-type]
    got, want = decoder.decode(values), _reference(values, schemas)
    np.testing.assert_array_equal(got.kept, want.kept)
    np.testing.assert_array_equal(got.features, want.features)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert got.rejected == want.rejected
