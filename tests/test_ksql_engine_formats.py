"""Formats: DELIMITED (ksqlDB CSV semantics), JSON, KAFKA, and the generated Avro encoder."""

from __future__ import annotations

import io
import json
import struct
from decimal import Decimal

import fastavro
import pytest

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.formats import make_deserializer, make_serializer, validate_format
from services.ksql_server.formats.avro import sink_encoder, sink_schema, sql_type_of
from services.ksql_server.formats.base import SerdeError, deserialize_batch
from services.ksql_server.formats.info import FormatInfo

COLS = [("ID", T.BIGINT), ("NAME", T.STRING), ("AMOUNT", T.DOUBLE), ("CLASS", T.STRING)]


def test_delimited_empty_field_is_null_and_quotes_are_stripped() -> None:
    de = make_deserializer(FormatInfo("DELIMITED"), COLS, "t", False)
    assert de(b'1,"a, b",2.5,"0"') == [1, "a, b", 2.5, "0"]
    assert de(b"2,,3.0,") == [2, None, 3.0, None]
    assert de(None) is None
    with pytest.raises(SerdeError, match="Unexpected field count"):
        de(b"1,2")


def test_delimited_batch_matches_single_and_reports_errors_in_place() -> None:
    de = make_deserializer(FormatInfo("DELIMITED"), COLS, "t", False)
    values = [b'1,x,1.5,"1"', b"bad", None, b"3,,x,"]
    out = deserialize_batch(de, values)
    assert out[0] == de(values[0])
    assert isinstance(out[1], SerdeError) and out[2] is None and isinstance(out[3], SerdeError)


def test_delimited_custom_delimiter_and_quoting() -> None:
    fmt = FormatInfo("DELIMITED", delimiter="|")
    ser = make_serializer(fmt, COLS, "t", False)
    assert ser([1, 'say "hi"', 1e10, None]) == b'1|"say ""hi"""|1.0E10|'
    assert ser([-5, "x", 0.5, "a|b"]) == b'"-5"|x|0.5|"a|b"'  # Commons CSV MINIMAL quoting
    de = make_deserializer(fmt, COLS, "t", False)
    assert de(b'1|"say ""hi"""|1.0E10|') == [1, 'say "hi"', 1e10, None]


def test_json_case_insensitive_fields_and_coercion() -> None:
    cols = [("ID", T.BIGINT), ("M", T.decimal(4, 2)), ("S", T.STRING)]
    de = make_deserializer(FormatInfo("JSON"), cols, "t", False)
    assert de(b'{"id": "5", "m": 1.5, "S": 3}') == [5, Decimal("1.50"), "3"]
    ser = make_serializer(FormatInfo("JSON"), cols, "t", False)
    encoded = ser([5, Decimal("1.50"), None])
    assert encoded is not None
    assert json.loads(encoded) == {"ID": 5, "M": 1.5, "S": None}
    assert b'"M":1.50' in encoded


def test_json_unwrapped_single_value() -> None:
    cols = [("V", T.INTEGER)]
    fmt = FormatInfo("JSON", wrap_single=False)
    assert make_serializer(fmt, cols, "t", False)([3]) == b"3"
    assert make_deserializer(fmt, cols, "t", False)(b"4") == [4]


def test_kafka_primitive_keys() -> None:
    for typ, value, raw in [
        (T.INTEGER, 7, struct.pack(">i", 7)),
        (T.BIGINT, -2, struct.pack(">q", -2)),
        (T.DOUBLE, 1.5, struct.pack(">d", 1.5)),
        (T.STRING, "k", b"k"),
    ]:
        cols = [("K", typ)]
        assert make_serializer(FormatInfo("KAFKA"), cols, "t", True)([value]) == raw
        assert make_deserializer(FormatInfo("KAFKA"), cols, "t", True)(raw) == [value]


def test_format_validation_messages() -> None:
    with pytest.raises(KsqlError, match="does not support type 'ARRAY'"):
        validate_format(FormatInfo("DELIMITED"), [("A", T.array(T.INTEGER))], False)
    with pytest.raises(KsqlError, match="Map keys"):
        validate_format(FormatInfo("JSON"), [("K", T.map_of(T.STRING, T.INTEGER))], True)
    with pytest.raises(KsqlError, match="Unknown format"):
        validate_format(FormatInfo("FOO"), [], False)


def test_ksql_sink_schema_shape() -> None:
    schema = sink_schema(COLS, True)
    assert schema["name"] == "KsqlDataSourceSchema"
    assert schema["namespace"] == "io.confluent.ksql.avro_schemas"
    assert schema["fields"][0] == {"name": "ID", "type": ["null", "long"], "default": None}
    assert sql_type_of(
        ["null", {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}]
    ) == T.decimal(5, 2)


@pytest.mark.parametrize(
    "row",
    [
        (1, "é", 2.5, "0"),
        (None, None, None, None),
        (-(2**40), "", -0.0, "x" * 300),
    ],
)
def test_generated_avro_encoder_matches_fastavro(row: tuple[object, ...]) -> None:
    cols = COLS + [("OK", T.BOOLEAN), ("N", T.INTEGER)] + [(f"V{i}", T.DOUBLE) for i in range(4)]
    full = (*row, True, 3, 1.0, None, 3.0, 4.0)
    encode = sink_encoder(cols, True, sink_schema(cols, True), b"")
    parsed = fastavro.parse_schema(sink_schema(cols, True))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, dict(zip([n for n, _ in cols], full, strict=True)))
    assert encode(full) == buf.getvalue()
