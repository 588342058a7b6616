"""JSON_SR: JSON with a registered JSON Schema, as Confluent's `JSONSchemaSerializer` writes it.

A record is magic byte 0, the 4-byte schema id, then the JSON document. The body is read and
written exactly as the JSON format does (same coercions, same null handling: ksqlDB reads the
document against the source's columns, not against the registered schema), so this module only
adds the framing, the schema ksqlDB registers for a sink (Kafka Connect's `JsonSchemaData`
shape: `connect.index`, `connect.type`, nullable fields as `oneOf` with `null`) and the columns
a registered schema gives a source declared without any.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from services.common.avro.wire import header_of
from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.formats.base import Deserializer, Serializer
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.formats.json_plain import json_deserializer, json_serializer
from services.ksql_server.formats.registry import (
    Registered,
    register,
    schema_by_id,
    split_confluent,
    subject_of,
)
from services.ksql_server.types import ColumnDef, SqlType

_CONNECT = "org.apache.kafka.connect.data."
MAX_SCHEMA_DEPTH = 64
"""Nesting a registered schema may have before inference refuses it."""


# ----------------------------------------------------------------------------- sink schema


def json_schema_of(typ: SqlType) -> dict[str, Any]:
    """The JSON Schema Kafka Connect's `JsonSchemaData` writes for one (non-null) type."""
    base = typ.base
    simple: dict[str, dict[str, Any]] = {
        "BOOLEAN": {"type": "boolean"},
        "INTEGER": {"type": "integer", "connect.type": "int32"},
        "BIGINT": {"type": "integer", "connect.type": "int64"},
        "DOUBLE": {"type": "number", "connect.type": "float64"},
        "STRING": {"type": "string"},
        "BYTES": {"type": "string", "connect.type": "bytes"},
    }
    if base in simple:
        return dict(simple[base])
    if base == "DECIMAL":
        return {
            "type": "number",
            "title": _CONNECT + "Decimal",
            "connect.version": 1,
            "connect.parameters": {
                "scale": str(typ.scale),
                "connect.decimal.precision": str(typ.precision),
            },
            "connect.type": "bytes",
        }
    if base in ("TIMESTAMP", "DATE", "TIME"):
        return {
            "type": "integer",
            "title": _CONNECT + base.title(),
            "connect.version": 1,
            "connect.type": "int64" if base == "TIMESTAMP" else "int32",
        }
    if base == "ARRAY":
        return {"type": "array", "items": _nullable(json_schema_of(typ.item or T.STRING))}
    if base == "MAP":
        return {
            "type": "object",
            "additionalProperties": _nullable(json_schema_of(typ.item or T.STRING)),
            "connect.type": "map",
        }
    if base == "STRUCT":
        return _object(list(typ.fields))
    raise KsqlError(f"The 'JSON_SR' format does not support type '{base}'")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [{"type": "null"}, schema]}


def _object(fields: Sequence[ColumnDef]) -> dict[str, Any]:
    props = {}
    for i, (name, typ) in enumerate(fields):
        props[name] = {**_nullable(json_schema_of(typ)), "connect.index": i}
    return {"type": "object", "properties": props}


def sink_schema(columns: Sequence[ColumnDef], wrap: bool, full_name: str | None) -> dict[str, Any]:
    """What ksqlDB registers for a JSON_SR key or value with these columns."""
    schema = _object(columns) if wrap else _nullable(json_schema_of(columns[0][1]))
    if full_name:
        schema["title"] = full_name
    return schema


# ----------------------------------------------------------------------------- inference


def sql_type_of(schema: Any, root: Any, depth: int = 0) -> SqlType:
    """A JSON Schema → ksqlDB type (Connect's `JsonSchemaData.toConnectSchema` rules)."""
    if depth > MAX_SCHEMA_DEPTH:
        raise KsqlError("JSON schema nested too deeply")
    if not isinstance(schema, dict):
        return T.STRING
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return sql_type_of(target, root, depth + 1)
    for key in ("oneOf", "anyOf"):
        options = schema.get(key)
        if isinstance(options, list):
            real = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return sql_type_of(real[0], root, depth + 1) if len(real) == 1 else T.STRING
    typ = schema.get("type")
    if isinstance(typ, list):
        real_types = [t for t in typ if t != "null"]
        typ = real_types[0] if len(real_types) == 1 else None
    title = str(schema.get("title", ""))
    connect = schema.get("connect.type")
    if title == _CONNECT + "Decimal":
        params = schema.get("connect.parameters") or {}
        return T.decimal(
            int(params.get("connect.decimal.precision", 64)), int(params.get("scale", 0))
        )
    for logical in ("Timestamp", "Date", "Time"):
        if title == _CONNECT + logical:
            return {"Timestamp": T.TIMESTAMP, "Date": T.DATE, "Time": T.TIME}[logical]
    if typ == "integer":
        return T.INTEGER if connect in ("int8", "int16", "int32") else T.BIGINT
    if typ == "number":
        return T.DOUBLE
    if typ == "boolean":
        return T.BOOLEAN
    if typ == "string":
        return T.BYTES if connect == "bytes" else T.STRING
    if typ == "array":
        return T.array(sql_type_of(schema.get("items", {}), root, depth + 1))
    if typ == "object":
        props = schema.get("properties")
        if connect == "map" or (not props and isinstance(schema.get("additionalProperties"), dict)):
            return T.map_of(T.STRING, sql_type_of(schema["additionalProperties"], root, depth + 1))
        return T.struct(
            [(str(n).upper(), sql_type_of(p, root, depth + 1)) for n, p in (props or {}).items()]
        )
    return T.STRING


def columns_of(found: Registered, is_key: bool) -> list[ColumnDef]:
    """A source's columns from its registered JSON Schema (ROWKEY/ROWVAL for a non-object)."""
    try:
        schema = json.loads(found.text)
    except ValueError as exc:
        raise KsqlError(f"Invalid JSON schema {found.schema_id}: {exc}") from exc
    typ = sql_type_of(schema, schema)
    if typ.base == "STRUCT" and typ.fields:
        return list(typ.fields)
    return [("ROWKEY" if is_key else "ROWVAL", typ)]


# ----------------------------------------------------------------------------- serdes


def json_sr_deserializer(columns: Sequence[ColumnDef], wrap: bool) -> Deserializer:
    """Strip Confluent's header, then read the document as the JSON format does."""
    body = json_deserializer(columns, wrap)

    def deser(data: bytes | None) -> list[Any] | None:
        if data is None:
            return None
        _schema_id, rest = split_confluent(data, "JSON_SR")
        return body(bytes(rest))

    return deser


def json_sr_serializer(
    columns: Sequence[ColumnDef],
    wrap: bool,
    registry: Any,
    topic: str,
    is_key: bool,
    fmt: FormatInfo,
) -> Serializer:
    """Register (or reuse, with SCHEMA_ID) the sink's schema; header + the JSON document."""
    extra = b""
    if fmt.schema_id is not None:
        found = schema_by_id(registry, fmt.schema_id)  # fails now for an id the registry lacks
        schema_id = fmt.schema_id
        if wrap:
            extra = _missing_properties(found, columns)
    else:
        schema = sink_schema(columns, wrap, fmt.schema_name)
        schema_id = register(registry, subject_of(topic, is_key), json.dumps(schema), "JSON_SR")
    header = header_of(schema_id)
    body = json_serializer(columns, wrap)
    if extra:
        return lambda row: header + body(row)[:-1] + extra + b"}"  # type: ignore[index]
    return lambda row: header + body(row)  # type: ignore[operator]


def _missing_properties(found: Registered, columns: Sequence[ColumnDef]) -> bytes:
    """`,"p":null` for each top-level property of the schema no column fills: ksqlDB writes a
    sink with a given schema id in that schema's shape."""
    try:
        props = json.loads(found.text).get("properties") or {}
    except (ValueError, AttributeError):
        return b""
    names = {n.upper() for n, _ in columns}
    if not columns:
        return b""
    return b"".join(
        b"," + json.dumps(p).encode() + b":null" for p in props if str(p).upper() not in names
    )
