"""The one feature decoder (`services.common.avro.decoder`), trainer and scorer cases both:
its compiled paths (the single-header fast pass, the column-wise walk) against fastavro +
extract_features, and every kind of bad record with its code and text."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import numpy as np
import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_scorer_support import input_schema, make_records

from services.common.avro.decoder import DecodedBatch, FeatureDecoder, decode_columns
from services.common.avro.features import extract_features
from services.common.avro.schemas import ksql_record_schema, parse_schema, plan_schema
from services.common.avro.wire import header_of
from services.common.topics import AVRO_FEATURE_FIELDS
from services.trainer.synthetic import PREPROCESSED_FIELDS

LABEL_FIELDS = [None, "CLASS"]
"""The scorer's case (no label: the fast pass) and the trainer's (with the label column)."""
WITH_ID = [("ID", "long"), *PREPROCESSED_FIELDS, ("USER", "string")]


class FakeRegistry:
    """Only what the decoder asks of a SchemaRegistryClient: get_schema by id."""

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
    buf.write(header_of(schema_id))
    fastavro.schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def decoder_for(
    schemas: dict[int, dict[str, Any]], label_field: str | None, columnar: bool = True
) -> FeatureDecoder:
    decoder = FeatureDecoder(FakeRegistry(schemas), label_field=label_field)  # type: ignore[arg-type]
    decoder.columnar = columnar
    return decoder


def reasons(batch: DecodedBatch) -> list[tuple[int, str, str]]:
    return [(i, why.code, str(why)) for i, why in batch.rejected]


def assert_same(got: DecodedBatch, want: DecodedBatch) -> None:
    """Same rows, features, labels and rejections (code and text)."""
    np.testing.assert_array_equal(got.kept, want.kept)
    np.testing.assert_array_equal(got.features, want.features)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert reasons(got) == reasons(want)


def text_v1(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with V1 as a string (features then need the general path)."""
    fields = [
        {**f, "type": ["null", "string"]} if f["name"] == "V1" else f for f in schema["fields"]
    ]
    return {**schema, "fields": fields}


# ----------------------------------------------------------------------------- column walker


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


@pytest.mark.parametrize("label_field", LABEL_FIELDS)
@pytest.mark.parametrize("columnar", [True, False])
def test_features_match_extract_features(columnar: bool, label_field: str | None) -> None:
    schema = input_schema()
    records = make_records(500, seed=5)
    values = [frame(schema, r) for r in records]
    out = decoder_for({1: schema}, label_field, columnar).decode(values)
    expected = extract_features(records, label_field=label_field)
    assert out.rejected == []
    np.testing.assert_array_equal(out.kept, np.arange(500))
    np.testing.assert_array_equal(out.features, expected.features)
    np.testing.assert_array_equal(out.labels, expected.labels)
    assert out.record(42)["ID"] == 42 and out.record(42)["USER"] == records[42]["USER"]
    assert out.fast_rows == (500 if columnar else 0)


@pytest.mark.parametrize("label_field", LABEL_FIELDS)
@pytest.mark.parametrize("columnar", [True, False])
def test_every_kind_of_bad_record_is_rejected_with_its_code(
    columnar: bool, label_field: str | None
) -> None:
    schema = input_schema()
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
        frame(text_v1(schema), non_numeric, schema_id=2),  # 5 non-numeric feature
        frame(schema, good[5])[:-4],  # 6 truncated body
        b"\x00\x00",  # 7 too short
        None,  # 8 tombstone
        frame(schema, inf),  # 9 infinite
        frame(text_v1(schema), good[4] | {"V1": "1.5"}, schema_id=2),  # 10 numeric text: usable
    ]
    registry = FakeRegistry({1: schema, 2: text_v1(schema)})
    decoder = FeatureDecoder(registry, label_field=label_field)  # type: ignore[arg-type]
    decoder.columnar = columnar
    out = decoder.decode(values)
    got = {i: (code, text) for i, code, text in reasons(out)}
    assert sorted(got) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert got[1] == ("magic_byte", "unknown magic byte 1")
    assert got[2] == ("schema_id", "unknown schema id 999")
    assert got[3] == ("missing_feature", "missing feature V5")
    assert got[4] == ("non_finite", "non-finite feature AMOUNT=nan")
    assert got[5] == ("non_numeric", "non-numeric feature V1='abc'")
    assert got[6][0] == "avro" and got[6][1].startswith("cannot decode Avro body with schema 1")
    assert got[7] == ("framing", "value too short for the Confluent wire format")
    assert got[8] == ("null_record", "record is null")
    assert got[9] == ("non_finite", "non-finite feature V28=-inf")
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
        "label": (1, {"CLASS": "1.0"}, False),
        "no label": (1, {"CLASS": None}, False),
        "bad label": (1, {"CLASS": "x"}, False),
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from([*_value_kinds(), "bad magic", "too short", "tombstone"]),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(LABEL_FIELDS),
)
def test_compiled_paths_decode_a_mixed_batch_as_fastavro_does(
    kinds: list[str], label_field: str | None
) -> None:
    """The compiled paths (the scorer's one-pass kernel, with the first value's header or, when
    that one is bad, the last batch's; the trainer's column walk with labels) hand what they
    cannot read to fastavro: features, rows, labels, reasons and the alert fields must be those
    of fastavro + extract_features alone."""
    schema = input_schema()
    schemas = {1: schema, 2: text_v1(schema)}
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
    decoder = decoder_for(schemas, label_field)
    decoder.decode([frame(schema, records[0])])  # an earlier batch: the header to fall back on
    if label_field is None:  # the fast pass is what is tested here
        assert decoder._decode_fast(values) is not None
    fast = decoder.decode(values)
    general = decoder_for(schemas, label_field, columnar=False).decode(values)
    assert_same(fast, general)
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


# ----------------------------------------------------------------------------- trainer batches


def _record(rng: np.random.Generator, i: int) -> dict[str, Any]:
    rec: dict[str, Any] = {f"V{k}": float(rng.normal()) for k in range(1, 29)}
    rec.update(TIME=int(rng.integers(0, 172_800)), AMOUNT=float(rng.exponential(50)))
    rec["CLASS"] = str(int(rng.random() < 0.1))
    rec["ID"] = int(rng.integers(0, 10**12)) if i % 3 else i
    rec["USER"] = "u" * int(rng.integers(0, 4))
    return rec


@pytest.mark.parametrize("label_field", LABEL_FIELDS)
def test_two_writer_schemas_in_one_messy_batch(label_field: str | None) -> None:
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
        values.append(frame(schemas[schema_id], rec, schema_id))
    values[5] = None  # tombstone
    got = decoder_for(schemas, label_field).decode(values)
    want = decoder_for(schemas, label_field, columnar=False).decode(values)
    assert got.fast_rows > 300  # the compiled paths did the work
    assert_same(got, want)
    assert len(got.rejected) > 10
    if label_field is not None:
        assert set(got.labels.tolist()) == {-1, 0, 1}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "TIME": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
                "V1": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
                "AMOUNT": st.one_of(st.none(), st.floats(width=64)),
                "CLASS": st.one_of(
                    st.none(), st.sampled_from(["0", "1", "", "1.0", "abc", "0.99999999"])
                ),
            }
        ),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(LABEL_FIELDS),
)
def test_compiled_paths_match_fastavro_on_any_values(
    partials: list[dict[str, Any]], label_field: str | None
) -> None:
    schemas = {3: ksql_record_schema(PREPROCESSED_FIELDS)}
    values: list[bytes | None] = []
    for p in partials:
        rec: dict[str, Any] = {f"V{k}": 0.5 * k for k in range(2, 29)}
        rec.update(p)
        values.append(frame(schemas[3], rec, 3))
    got = decoder_for(schemas, label_field).decode(values)
    want = decoder_for(schemas, label_field, columnar=False).decode(values)
    assert_same(got, want)
    assert got.features.shape[1] == len(AVRO_FEATURE_FIELDS)
