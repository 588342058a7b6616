"""KSQL's JSON_SR, PROTOBUF and PROTOBUF_NOSR formats without a broker: the schemas ksqlDB
generates, inference from registered schemas, the wire framing and round trips of every type."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.schemas.protobuf import parse
from services.ksql_conformance.schemas import CaseSchemas
from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.formats import (
    json_sr,
    make_deserializer,
    make_serializer,
    protobuf,
    validate_format,
)
from services.ksql_server.formats.base import SerdeError
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.formats.registry import Registered
from services.ksql_server.types import ColumnDef, SqlType
from services.producer import formats as producer_formats

ALL_TYPES: list[ColumnDef] = [
    ("B", T.BOOLEAN),
    ("I", T.INTEGER),
    ("L", T.BIGINT),
    ("D", T.DOUBLE),
    ("S", T.STRING),
    ("Y", T.BYTES),
    ("DEC", T.decimal(6, 2)),
    ("TS", T.TIMESTAMP),
    ("DT", T.DATE),
    ("TM", T.TIME),
    ("A", T.array(T.STRING)),
    ("M", T.map_of(T.STRING, T.INTEGER)),
    ("ST", T.struct([("X", T.BIGINT), ("Z", T.array(T.DOUBLE))])),
]

_scalars: dict[str, st.SearchStrategy[Any]] = {
    "BOOLEAN": st.booleans(),
    "INTEGER": st.integers(-(2**31), 2**31 - 1),
    "BIGINT": st.integers(-(2**63), 2**63 - 1),
    "DOUBLE": st.floats(allow_nan=False),
    "STRING": st.text(max_size=20),
    "BYTES": st.binary(max_size=20),
    "DECIMAL": st.decimals(min_value=Decimal("-9999.99"), max_value=Decimal("9999.99"), places=2),
    "TIMESTAMP": st.integers(0, 2**42),
    "DATE": st.integers(0, 2_900_000),
    "TIME": st.integers(0, 86_399_999),
}


def _values(typ: SqlType) -> st.SearchStrategy[Any]:
    if typ.base in _scalars:
        return _scalars[typ.base]
    if typ.base == "ARRAY":
        return st.lists(_values(typ.item or T.STRING), max_size=4)
    if typ.base == "MAP":
        return st.dictionaries(st.text(max_size=5), _values(typ.item or T.STRING), max_size=4)
    return st.fixed_dictionaries({n: _values(t) for n, t in typ.fields})


ROWS = st.tuples(*[_values(t) for _, t in ALL_TYPES])


NOSR = FormatInfo("PROTOBUF_NOSR")


@settings(max_examples=60, deadline=None)
@given(ROWS)
def test_protobuf_nosr_round_trips_every_type(row: tuple[Any, ...]) -> None:
    ser = make_serializer(NOSR, ALL_TYPES, "t", False)
    de = make_deserializer(NOSR, ALL_TYPES, "t", False)
    encoded = ser(list(row))
    assert encoded is not None
    assert de(encoded) == list(row)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)), min_size=3, max_size=3))
def test_protobuf_nulls_per_nullable_representation(ints: list[int | None]) -> None:
    """Plain proto3 scalars read a null back as 0; OPTIONAL and WRAPPER keep the null."""
    cols = [("A", T.INTEGER), ("B", T.INTEGER), ("C", T.INTEGER)]
    for nullable, expected in (
        (None, [0 if v is None else v for v in ints]),
        ("OPTIONAL", ints),
        ("WRAPPER", ints),
    ):
        fmt = FormatInfo("PROTOBUF_NOSR", nullable=nullable)
        encoded = make_serializer(fmt, cols, "t", False)(ints)
        assert encoded is not None
        assert make_deserializer(fmt, cols, "t", False)(encoded) == expected


def test_protobuf_sink_schema_is_connects_shape() -> None:
    text = protobuf.sink_schema_text(ALL_TYPES)
    assert text.startswith('syntax = "proto3";')
    assert "message ConnectDefault1 {" in text
    assert "message ConnectDefault2 {" in text and "ConnectDefault2 ST = 13;" in text
    assert "int32 I = 2;" in text and "int64 L = 3;" in text and "repeated string A = 11;" in text
    assert "map<string, int32> M = 12;" in text
    assert (
        "confluent.type.Decimal DEC = 7 [(confluent.field_meta) = "
        '{ params: [ { key: "precision", value: "6" }' in text
    )
    assert "google.protobuf.Timestamp TS = 8;" in text
    assert "google.type.Date DT = 9;" in text and "google.type.TimeOfDay TM = 10;" in text
    named = protobuf.sink_schema_text([("V", T.STRING)], "io.test.value")
    assert "package io.test;" in named and "message value {" in named
    schema = parse(text)
    assert schema.message_names()[0] == "ConnectDefault1"


def test_protobuf_inference_follows_connect() -> None:
    text = """syntax = "proto3";
    import "google/protobuf/wrappers.proto";
    message First { int32 x = 1; }
    message Second {
      enum Kind { A = 0; B = 1; }
      uint64 big = 1; sint32 small = 2; float f = 3; Kind kind = 4;
      google.protobuf.StringValue maybe = 5; repeated int64 many = 6;
      map<string, bool> flags = 7; Inner inner = 8;
      message Inner { string s = 1; }
    }"""
    found = Registered(1, text, "PROTOBUF")
    assert protobuf.columns_of(found, None) == [("X", T.INTEGER)]
    assert protobuf.columns_of(found, "Second") == [
        ("BIG", T.BIGINT),
        ("SMALL", T.INTEGER),
        ("F", T.DOUBLE),
        ("KIND", T.STRING),
        ("MAYBE", T.STRING),
        ("MANY", T.array(T.BIGINT)),
        ("FLAGS", T.map_of(T.STRING, T.BOOLEAN)),
        ("INNER", T.struct([("S", T.STRING)])),
    ]
    with pytest.raises(KsqlError, match="does not contain message Third"):
        protobuf.columns_of(found, "Third")


def test_protobuf_record_framing_picks_the_message_by_index() -> None:
    """A record of the second message (indexes [1]) and of the first ([0] → one zero byte)."""
    text = 'syntax = "proto3"; message K1 { int32 a = 1; } message K2 { string b = 1; }'
    second = protobuf.encode_json({"B": "x"}, text, {}, "K2", 7)
    assert second[:5] == b"\x00\x00\x00\x00\x07" and second[5:7] == b"\x02\x02"
    first = protobuf.encode_json(5, text, {}, None, 7)
    assert first[5:6] == b"\x00" and first[6:] == b"\x08\x05"


def test_wrap_single_value_false_is_refused_for_protobuf() -> None:
    fmt = FormatInfo("PROTOBUF", wrap_single=False)
    with pytest.raises(KsqlError, match="does not support 'WRAP_SINGLE_VALUE' set to 'false'"):
        validate_format(fmt, [("A", T.INTEGER)], False)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([t for _, t in ALL_TYPES]))
def test_json_schema_inference_inverts_the_sink_schema(typ: SqlType) -> None:
    schema = json_sr.sink_schema([("C", typ)], True, None)
    assert json_sr.columns_of(Registered(1, json.dumps(schema), "JSON"), False) == [("C", typ)]


def test_json_sr_sink_schema_shape() -> None:
    schema = json_sr.sink_schema([("ID", T.BIGINT), ("NAME", T.STRING)], True, None)
    assert schema == {
        "type": "object",
        "properties": {
            "ID": {
                "oneOf": [{"type": "null"}, {"type": "integer", "connect.type": "int64"}],
                "connect.index": 0,
            },
            "NAME": {"oneOf": [{"type": "null"}, {"type": "string"}], "connect.index": 1},
        },
    }
    assert json_sr.sink_schema([("ID", T.INTEGER)], False, "Key")["title"] == "Key"


def test_json_sr_reads_the_body_after_the_header() -> None:
    cols = [("ID", T.BIGINT), ("NAME", T.STRING)]
    de = make_deserializer(FormatInfo("JSON_SR"), cols, "t", False)
    assert de(b"\x00\x00\x00\x00\x05" + b'{"id": 3, "NAME": "a"}') == [3, "a"]
    assert de(None) is None
    with pytest.raises(SerdeError, match="Unknown magic byte"):
        de(b'{"ID": 3}')


def test_case_schema_ids_are_rewritten() -> None:
    schemas = CaseSchemas(ids={1: 41, 2: 42})
    text = "CREATE STREAM S WITH (key_schema_id=1, VALUE_SCHEMA_ID = 2, x='KEY_SCHEMA_ID=3');"
    assert schemas.rewrite(text) == (
        "CREATE STREAM S WITH (KEY_SCHEMA_ID=41, VALUE_SCHEMA_ID=42, x='KEY_SCHEMA_ID=3');"
    )


def test_producer_schemas_give_the_source_streams_columns() -> None:
    """What `produce --format` registers infers the DELIMITED source's column types."""
    want = [("ID", T.BIGINT), ("TIMESTAMP", T.STRING), ("USER", T.STRING), ("TIME", T.INTEGER)]
    want += [(f"V{i}", T.DOUBLE) for i in range(1, 29)] + [("AMOUNT", T.DOUBLE)]
    want += [("CLASS", T.STRING)]
    as_json = Registered(1, json.dumps(producer_formats.json_schema()), "JSON")
    assert json_sr.columns_of(as_json, False) == want
    as_proto = Registered(2, producer_formats.proto_schema(), "PROTOBUF")
    assert protobuf.columns_of(as_proto, None) == want


def test_producer_encoders_keep_unlabelled_rows_null() -> None:
    line = b'7,"2013-09-01T00:00:07Z","Kai",7,' + b"0.5," * 28 + b'12.5,""'
    labelled = line[: -len(b'""')] + b'"1"'
    (json_value, json_labelled) = producer_formats._json_encoder(b"\x00" * 5)([line, labelled])
    assert json.loads(json_value[5:])["CLASS"] is None
    assert json.loads(json_labelled[5:])["CLASS"] == "1"
    encode = producer_formats._proto_encoder(b"\x00" * 5, producer_formats.proto_schema())
    cols = protobuf.columns_of(Registered(1, producer_formats.proto_schema(), "PROTOBUF"), None)
    read = protobuf.protobuf_nosr_deserializer(
        cols, FormatInfo("PROTOBUF_NOSR", nullable="OPTIONAL")
    )
    rows = [read(v[6:]) for v in encode([line, labelled])]
    assert rows[0] is not None and rows[1] is not None
    assert rows[0][0] == 7 and rows[0][-1] is None and rows[1][-1] == "1"
    with pytest.raises(producer_formats.FormatError):
        producer_formats.default_topic("xml")
