"""Unit tests of the scorer's batch decoding: the columnar fast path against fastavro +
extract_features, and every kind of bad record with its reason."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import fastavro
import numpy as np
import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_scorer_support import input_schema, make_records

from services.common.avro import HEADER, parse_schema
from services.common.avro_columns import decode_columns, plan_schema
from services.common.errors import ServiceUnavailable
from services.common.features import extract_features
from services.scorer.decode import BatchDecoder


class FakeRegistry:
    """Only what BatchDecoder asks of a SchemaRegistryClient: get_schema by id."""

    def __init__(self, schemas: dict[int, dict[str, Any]], down: bool = False) -> None:
        self.schemas = schemas
        self.down = down
        self.calls = 0

    def get_schema(self, schema_id: int) -> Schema:
        self.calls += 1
        if self.down:
            raise ConnectionError("connection refused")
        if schema_id not in self.schemas:
            raise SchemaRegistryError(404, 40403, "Schema not found")
        return Schema(json.dumps(self.schemas[schema_id]), "AVRO")


def frame(schema: dict[str, Any], record: dict[str, Any], schema_id: int = 1) -> bytes:
    buf = io.BytesIO()
    buf.write(HEADER.pack(0, schema_id))
    fastavro.schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def test_columnar_decoding_equals_fastavro_on_varied_records() -> None:
    schema = input_schema()
    records = make_records(300, seed=3)
    rng = np.random.default_rng(1)
    for i, rec in enumerate(records):
        if i % 7 == 0:
            rec["USER"] = None
        if i % 11 == 0:
            rec["V3"] = None
        if i % 13 == 0:
            rec["ID"] = -int(rng.integers(1, 2**62))
        if i % 17 == 0:
            rec["TIMESTAMP"] = "zeit ⏱ " * int(rng.integers(0, 40))
        if i % 19 == 0:
            rec["V7"] = float("nan")
        if i % 23 == 0:
            rec["TIME"] = -(2**31)
    bodies = [frame(schema, r)[5:] for r in records]
    plans = plan_schema(schema)
    assert plans is not None
    batch = decode_columns(bodies, plans)
    assert batch.ok.all()
    for i, body in enumerate(bodies):
        expected = fastavro.schemaless_reader(io.BytesIO(body), parse_schema(schema), None)
        assert isinstance(expected, dict)  # a record schema reads back as a dict
        got = batch.record(i)
        assert got.keys() == expected.keys()
        for key in expected:
            if isinstance(expected[key], float) and np.isnan(expected[key]):
                assert np.isnan(got[key])
            else:
                assert got[key] == expected[key], (i, key)


def test_columnar_rejects_corrupt_bodies_for_the_general_path() -> None:
    schema = input_schema()
    good = frame(schema, make_records(1)[0])[5:]
    plans = plan_schema(schema)
    assert plans is not None
    bodies = [good, good[:-3], good + b"\x00", b"\x07" + good[1:], good]
    batch = decode_columns(bodies, plans)
    assert batch.ok.tolist() == [True, False, False, False, True]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12) | st.text(max_size=6).map(str.encode))
@example(b"\xed\xa0\x80")  # a surrogate
@example(b"\xc0\xaf")  # overlong
@example(b"\xf4\x90\x80\x80")  # past U+10FFFF
@example(b"\xe2\x82")  # truncated
@example("ok \U0001f600 ⏱".encode())
def test_columnar_accepts_exactly_the_strings_python_decodes(raw: bytes) -> None:
    """A string field holding any bytes: the walker takes it iff it is UTF-8 to Python's strict
    decoder (otherwise the record goes to fastavro, which rejects it with its reason)."""
    schema = {"type": "record", "name": "r", "fields": [{"name": "S", "type": ["null", "string"]}]}
    body = b"\x02" + _zigzag_varint(len(raw)) + raw
    plans = plan_schema(schema)
    assert plans is not None
    batch = decode_columns([body], plans)
    try:
        raw.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert bool(batch.ok[0]) == valid
    if valid:
        assert batch.record(0) == {"S": raw.decode("utf-8")}


def _zigzag_varint(value: int) -> bytes:
    z, out = (value << 1) ^ (value >> 63), bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def test_plan_refuses_nested_schemas() -> None:
    nested = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "A", "type": {"type": "array", "items": "long"}}],
    }
    assert plan_schema(nested) is None
    assert (
        plan_schema(
            {
                "type": "record",
                "name": "R",
                "fields": [{"name": "A", "type": ["null", "long", "string"]}],
            }
        )
        is None
    )


@pytest.mark.parametrize("columnar", [True, False])
def test_batch_decoder_features_match_extract_features(columnar: bool) -> None:
    schema = input_schema()
    records = make_records(500, seed=5)
    values = [frame(schema, r) for r in records]
    decoder = BatchDecoder(FakeRegistry({1: schema}))  # type: ignore[arg-type]
    decoder.columnar = columnar
    out = decoder.decode(values)
    expected = extract_features(records)
    assert out.rejected == []
    np.testing.assert_array_equal(out.kept, np.arange(500))
    np.testing.assert_array_equal(out.features, expected.features)
    assert out.record(42)["ID"] == 42 and out.record(42)["USER"] == records[42]["USER"]


@pytest.mark.parametrize("columnar", [True, False])
def test_every_kind_of_bad_record_is_rejected_with_its_reason(columnar: bool) -> None:
    schema = input_schema()
    text_v1 = {
        **schema,
        "fields": [
            {**f, "type": ["null", "string"]} if f["name"] == "V1" else f for f in schema["fields"]
        ],
    }
    good = make_records(6, seed=9)
    missing = {**good[1], "V5": None}
    nan = {**good[2], "AMOUNT": float("nan")}
    inf = {**good[3], "V28": float("-inf")}
    non_numeric = {**good[4], "V1": "abc"}
    values: list[bytes | None] = [
        frame(schema, good[0]),
        b"\x01" + frame(schema, good[0])[1:],  # 1 wrong magic byte
        frame(schema, good[0], schema_id=999),  # 2 unknown schema id
        frame(schema, missing),  # 3 missing feature
        frame(schema, nan),  # 4 NaN
        frame(text_v1, non_numeric, schema_id=2),  # 5 non-numeric feature
        frame(schema, good[5])[:-4],  # 6 truncated body
        b"\x00\x00",  # 7 too short
        None,  # 8 tombstone
        frame(schema, inf),  # 9 infinite
        frame(text_v1, good[4] | {"V1": "1.5"}, schema_id=2),  # 10 numeric text: usable
    ]
    registry = FakeRegistry({1: schema, 2: text_v1})
    decoder = BatchDecoder(registry)  # type: ignore[arg-type]
    decoder.columnar = columnar
    out = decoder.decode(values)
    reasons = dict(out.rejected)
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert reasons[1] == "unknown magic byte 1"
    assert reasons[2] == "unknown schema id 999"
    assert reasons[3] == "missing feature V5"
    assert reasons[4] == "non-finite feature AMOUNT=nan"
    assert reasons[5] == "non-numeric feature V1='abc'"
    assert reasons[6].startswith("cannot decode Avro body with schema 1")
    assert "too short" in reasons[7] and "too short" in reasons[8]
    assert reasons[9] == "non-finite feature V28=-inf"
    assert out.kept.tolist() == [0, 10]
    assert out.features[1, 1] == pytest.approx(1.5)
    # a second batch with the same unknown id does not ask the registry again
    calls = registry.calls
    decoder.decode([frame(schema, good[0], schema_id=999)])
    assert registry.calls == calls


def _value_kinds() -> dict[str, tuple[int, dict[str, Any] | None, bool]]:
    """name -> (schema id, record overrides or None, truncate): good and bad kinds of value."""
    return {
        "good": (1, {}, False),
        "missing": (1, {"V5": None}, False),
        "nan": (1, {"AMOUNT": float("nan")}, False),
        "inf": (1, {"V28": float("-inf")}, False),
        "non-numeric": (2, {"V1": "abc"}, False),
        "numeric text": (2, {"V1": "1.5"}, False),
        "unknown id": (999, {}, False),
        "truncated": (1, {}, True),
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from([*_value_kinds(), "bad magic", "too short", "tombstone"]),
        min_size=1,
        max_size=30,
    )
)
def test_fast_path_decodes_a_mixed_batch_as_the_general_path_does(kinds: list[str]) -> None:
    """The one-pass kernel takes the batch (with the first value's header or, when that one is
    bad, the last batch's) and hands the rest to the general path: features, rows, reasons and
    the alert fields must be the general path's."""
    schema = input_schema()
    text_v1 = {
        **schema,
        "fields": [
            {**f, "type": ["null", "string"]} if f["name"] == "V1" else f for f in schema["fields"]
        ],
    }
    schemas = {1: schema, 2: text_v1}
    records = make_records(len(kinds), seed=len(kinds))
    values: list[bytes | None] = []
    for record, kind in zip(records, kinds, strict=True):
        if kind == "bad magic":
            values.append(b"\x05" + frame(schema, record)[1:])
        elif kind == "too short":
            values.append(b"\x00\x00\x00")
        elif kind == "tombstone":
            values.append(None)
        else:
            schema_id, overrides, truncate = _value_kinds()[kind]
            value = frame(
                schemas.get(schema_id, schema), {**record, **(overrides or {})}, schema_id
            )
            values.append(value[:-3] if truncate else value)
    decoder = BatchDecoder(FakeRegistry(schemas))  # type: ignore[arg-type]
    decoder.decode([frame(schema, records[0])])  # an earlier batch: the header to fall back on
    assert decoder._decode_fast(values) is not None  # the fast path is what is tested here
    fast, general = decoder.decode(values), decoder._decode_general(values)
    np.testing.assert_array_equal(fast.kept, general.kept)
    np.testing.assert_array_equal(fast.features, general.features)
    assert fast.rejected == general.rejected
    fields = ("ID", "USER", "TIMESTAMP", "AMOUNT", "CLASS")
    for i in fast.kept.tolist():  # (fastavro's records have every field, fields or not)
        assert {f: fast.record(i, fields)[f] for f in fields} == {
            f: general.record(i)[f] for f in fields
        }
    found = {
        int(fast.kept[int(pos)]): batch.record(int(row), fields)
        for batch, rows, where in fast.columnar_rows(fast.kept)
        for row, pos in zip(rows.tolist(), where.tolist(), strict=True)
    }
    assert set(found) <= set(fast.kept.tolist())
    for i, record in found.items():
        assert record == {f: general.record(i)[f] for f in fields}


def test_registry_down_is_an_error_not_a_dead_letter() -> None:
    decoder = BatchDecoder(FakeRegistry({}, down=True))  # type: ignore[arg-type]
    decoder.schemas._retries = 1
    with pytest.raises(ServiceUnavailable):
        decoder.decode([HEADER.pack(0, 1) + struct.pack(">d", 1.0)])


def test_batch_alert_encoding_is_byte_identical_to_make_alert_and_fastavro() -> None:
    from services.scorer.records import alert_schema, encode_alerts, make_alert

    schema = input_schema()
    records = make_records(200, seed=5)
    for i, rec in enumerate(records):
        if i % 5 == 0:
            rec["USER"] = None
        if i % 7 == 0:
            rec["TIMESTAMP"] = "zeit ⏱ " * (i % 30)
        if i % 9 == 0:
            rec["CLASS"] = None
        if i % 11 == 0:
            rec["ID"] = -(2**40) - i
    bodies = [frame(schema, r)[5:] for r in records]
    plans = plan_schema(schema)
    assert plans is not None
    batch = decode_columns(bodies, plans)
    rows = np.arange(0, 200, 3)
    scores = np.linspace(0.1, 9.9, len(rows)).astype(np.float32)
    header = HEADER.pack(0, 42)
    got = encode_alerts(batch, rows, scores, 0.25, "20261126-abc", 1_795_000_000_123, header)
    assert got is not None
    parsed = parse_schema(alert_schema())
    for row, score, value in zip(rows, scores, got, strict=True):
        rec = records[row]
        alert = make_alert(
            rec, rec["AMOUNT"], float(score), 0.25, "20261126-abc", 1_795_000_000_123
        )
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed, alert)
        assert value == buf.getvalue(), row


def test_batch_alert_encoding_declines_inputs_of_other_types() -> None:
    from services.scorer.records import encode_alerts

    schema = input_schema()
    for field in schema["fields"]:
        if field["name"] == "ID":
            field["type"] = ["null", "string"]
    records = make_records(3)
    for rec in records:
        rec["ID"] = str(rec["ID"])
    plans = plan_schema(schema)
    assert plans is not None
    batch = decode_columns([frame(schema, r)[5:] for r in records], plans)
    assert encode_alerts(batch, np.arange(3), np.ones(3), 0.5, "v", 0, HEADER.pack(0, 1)) is None
