"""AVRO values through the Schema Registry, written the way ksqlDB writes its sinks.

Sink schemas are records named `io.confluent.ksql.avro_schemas.KsqlDataSourceSchema` with
upper-case, optional (null-first union, default null) fields, registered under
`<topic>-value`; records use the Confluent wire format, so any Confluent client reads them.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import fastavro

from services.common.avro.schemas import KSQL_RECORD_NAME, KSQL_RECORD_NAMESPACE, WriterSchemas
from services.common.avro.wire import WireFormatError, header_of, split_header
from services.common.errors import ServiceUnavailable
from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.formats.avro_encoder import compile_encoder
from services.ksql_server.formats.base import Deserializer, SerdeError, Serializer, coercer
from services.ksql_server.formats.columnar import avro_columns_encoder
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.types import ColumnDef, SqlType


def avro_type(typ: SqlType, name: str) -> Any:
    """The Avro schema of one column type (without the null union)."""
    base = typ.base
    simple = {
        "BOOLEAN": "boolean",
        "INTEGER": "int",
        "BIGINT": "long",
        "DOUBLE": "double",
        "STRING": "string",
        "BYTES": "bytes",
    }
    if base in simple:
        return simple[base]
    if base == "DECIMAL":
        return {
            "type": "bytes",
            "logicalType": "decimal",
            "precision": typ.precision,
            "scale": typ.scale,
            "connect.version": 1,
            "connect.parameters": {
                "scale": str(typ.scale),
                "connect.decimal.precision": str(typ.precision),
            },
            "connect.name": "org.apache.kafka.connect.data.Decimal",
        }
    if base == "TIMESTAMP":
        return {
            "type": "long",
            "logicalType": "timestamp-millis",
            "connect.name": "org.apache.kafka.connect.data.Timestamp",
            "connect.version": 1,
        }
    if base == "DATE":
        return {"type": "int", "logicalType": "date"}
    if base == "TIME":
        return {"type": "int", "logicalType": "time-millis"}
    if base == "ARRAY":
        return {"type": "array", "items": ["null", avro_type(typ.item or T.STRING, name)]}
    if base == "MAP":
        return {"type": "map", "values": ["null", avro_type(typ.item or T.STRING, name)]}
    if base == "STRUCT":
        return {
            "type": "record",
            "name": f"{KSQL_RECORD_NAME}_{name}",
            "fields": [
                {"name": n, "type": ["null", avro_type(t, f"{name}_{n}")], "default": None}
                for n, t in typ.fields
            ],
        }
    raise KsqlError(f"The 'AVRO' format does not support type '{base}'")


def sink_schema(columns: Sequence[ColumnDef], wrap: bool, full_name: str | None = None) -> Any:
    if not wrap:
        return ["null", avro_type(columns[0][1], columns[0][0])]
    name, namespace = KSQL_RECORD_NAME, KSQL_RECORD_NAMESPACE
    if full_name:
        namespace, _, name = full_name.rpartition(".")
    schema: dict[str, Any] = {
        "type": "record",
        "name": name,
        "fields": [
            {"name": n, "type": ["null", avro_type(t, n)], "default": None} for n, t in columns
        ],
    }
    if namespace:
        schema["namespace"] = namespace
    return schema


def sql_type_of(schema: Any) -> SqlType:
    """Avro schema → ksqlDB type (for CREATE STREAM without columns)."""
    if isinstance(schema, list):
        non_null = [s for s in schema if s != "null"]
        return sql_type_of(non_null[0]) if len(non_null) == 1 else T.STRING
    if isinstance(schema, str):
        return {
            "boolean": T.BOOLEAN,
            "int": T.INTEGER,
            "long": T.BIGINT,
            "double": T.DOUBLE,
            "float": T.DOUBLE,
            "string": T.STRING,
            "bytes": T.BYTES,
        }.get(schema, T.STRING)
    t = schema.get("type")
    logical = schema.get("logicalType")
    if logical == "decimal":
        # Connect's default when the schema names none (ksqlDB shows such a key as 64 digits)
        return T.decimal(int(schema.get("precision", 64)), int(schema.get("scale", 0)))
    if logical == "timestamp-millis":
        return T.TIMESTAMP
    if logical == "date":
        return T.DATE
    if logical == "time-millis":
        return T.TIME
    if t == "array":
        return T.array(sql_type_of(schema["items"]))
    if t == "map":
        return T.map_of(T.STRING, sql_type_of(schema["values"]))
    if t == "record":
        return T.struct([(f["name"].upper(), sql_type_of(f["type"])) for f in schema["fields"]])
    if t == "enum":
        return T.STRING
    if t == "fixed":
        return T.BYTES
    return sql_type_of(t)


_RAW_LOGICAL = ("date", "time-millis", "timestamp-millis")


def raw_temporals(parsed: Any) -> Any:
    """A parsed writer schema whose `date`, `time-millis` and `timestamp-millis` read as the
    plain ints the engine keeps (days, ms of the day, epoch ms): no Python date made and
    undone per value, and days past Python's year 9999 (a DATE of -2147483647) still read. A
    decimal without `precision` reads with Connect's default of 64."""

    def strip(node: Any) -> Any:
        if isinstance(node, list):
            return [strip(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: strip(v) for k, v in node.items() if not k.startswith("__")}
        if out.get("logicalType") in _RAW_LOGICAL:
            del out["logicalType"]
        if out.get("logicalType") == "decimal":  # Connect writes some without a precision
            out.setdefault("precision", 64)
        return out

    return fastavro.parse_schema(strip(parsed))


def avro_deserializer(columns: Sequence[ColumnDef], wrap: bool, registry: Any) -> Deserializer:
    if registry is None:
        raise KsqlError("AVRO requires a Schema Registry (ksql.schema.registry.url)")
    schemas = WriterSchemas(registry, retries=0)  # a record at a time: no waiting per record
    raw: dict[int, Any] = {}

    def decode(data: bytes) -> Any:
        """Any Avro value (records, and the primitives of keys and unwrapped values)."""
        schema_id, body = split_header(data)
        parsed = raw.get(schema_id)
        if parsed is None:
            parsed = raw[schema_id] = raw_temporals(schemas.get(schema_id).parsed)
        try:
            return fastavro.schemaless_reader(io.BytesIO(body), parsed, None)  # type: ignore[call-arg]
        except Exception as exc:
            raise WireFormatError.bad_body(schema_id, exc) from exc

    convs = [(n, n.upper(), coercer(t)) for n, t in columns]

    def deser(data: bytes | None) -> list[Any] | None:
        if data is None:
            return None
        try:
            obj = decode(data)
        except (WireFormatError, ServiceUnavailable) as exc:
            raise SerdeError(str(exc)) from exc
        if not wrap:
            return [None if obj is None else convs[0][2](obj)]
        if obj is None:
            return None
        if not isinstance(obj, dict):
            raise SerdeError("Avro value is not a record")
        upper = {k.upper(): v for k, v in obj.items()}
        return [None if (v := upper.get(up)) is None else conv(v) for _, up, conv in convs]

    return deser


def avro_serializer(
    columns: Sequence[ColumnDef], wrap: bool, registry: Any, subject: str, fmt: FormatInfo
) -> Serializer:
    if registry is None:
        raise KsqlError("AVRO requires a Schema Registry (ksql.schema.registry.url)")
    from confluent_kafka.schema_registry import Schema

    schema = sink_schema(columns, wrap, fmt.schema_name)
    try:
        schema_id = registry.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    except Exception as exc:
        raise KsqlError(f"Could not register schema for subject {subject}: {exc}") from exc
    return sink_encoder(columns, wrap, schema, header_of(schema_id))


def sink_encoder(
    columns: Sequence[ColumnDef], wrap: bool, schema: Any, header: bytes
) -> Serializer:
    """The sink's one encoder (`avro_encoder.compile_encoder`): a row → a framed record, or
    the single column of an unwrapped value; with `encode_columns`, the column-wise form for
    batches of primitive columns (None when a column is not one)."""
    if not wrap:
        encode_value = compile_encoder(schema, header)
        return lambda row: encode_value(row[0])
    encode = compile_encoder(schema, header, row=True)
    encode.encode_columns = avro_columns_encoder(  # type: ignore[attr-defined]
        [t for _, t in columns], header
    )
    return encode


def encode_with_schema(value: Any, schema: Any, schema_id: int) -> bytes:
    """A JSON-ish value written with a given Avro writer schema (as JSON), Confluent-framed: for
    records whose schema was registered elsewhere (a QTT case's declared topic schema), where
    `avro_serializer` derives the schema from columns. Names match case-insensitively."""
    return _schema_encoder(json.dumps(schema, sort_keys=True), schema_id)(
        _avro_ready(value, schema)
    )


@functools.lru_cache(maxsize=128)
def _schema_encoder(schema_text: str, schema_id: int) -> Any:
    return compile_encoder(json.loads(schema_text), header_of(schema_id))


def _avro_ready(value: Any, schema: Any) -> Any:
    if value is None:
        return None
    if isinstance(schema, list):
        options = [s for s in schema if s != "null"]
        return _avro_ready(value, options[0]) if len(options) == 1 else value
    if isinstance(schema, dict):
        t = schema.get("type")
        if schema.get("logicalType") == "decimal":
            return Decimal(str(value))
        if t == "record" and isinstance(value, dict):
            upper = {k.upper(): v for k, v in value.items()}
            return {
                f["name"]: _avro_ready(
                    value.get(f["name"], upper.get(f["name"].upper())), f["type"]
                )
                for f in schema["fields"]
            }
        if t == "array":
            return [_avro_ready(v, schema["items"]) for v in value]
        if t == "map":
            return {k: _avro_ready(v, schema["values"]) for k, v in value.items()}
        return (
            _avro_ready(value, t)
            if isinstance(t, (str, list)) and t not in ("record", "array", "map", "enum", "fixed")
            else value
        )
    if schema == "bytes" and isinstance(value, str):
        return value.encode()
    if schema == "string" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if schema in ("float", "double") and isinstance(value, int):
        return float(value)
    return value
