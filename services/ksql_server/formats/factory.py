"""The format factories: a (de)serializer for a format, its columns and its topic.

Kept apart from the codecs, one module per format over `base` (`kafka`, `delimited`,
`json_plain`, `avro`, `json_sr` and
`protobuf`, which all sit below it: the factory is the one place that knows every format, so no
codec module imports another to find its sibling.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping, Sequence
from typing import Any

from services.ksql_server.errors import KsqlError, UnsupportedError
from services.ksql_server.formats import delimited, json_plain, json_sr, kafka, protobuf
from services.ksql_server.formats.avro import avro_deserializer, avro_serializer, sql_type_of
from services.ksql_server.formats.base import Deserializer, Serializer
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.formats.registry import (
    INFERRING_FORMATS,
    missing_schema,
    source_schema,
    subject_of,
)
from services.ksql_server.types import ColumnDef


def make_deserializer(
    fmt: FormatInfo, columns: Sequence[ColumnDef], topic: str, is_key: bool, registry: Any = None
) -> Deserializer:
    name = fmt.name
    if is_key and not columns:
        return lambda data: []
    if name == "KAFKA":
        return kafka.kafka_deserializer(columns)
    if name == "DELIMITED":
        return delimited.delimited_deserializer(columns, fmt.delimiter)
    if name == "JSON":
        wrap = _wrap(fmt, columns, is_key)
        return json_plain.json_deserializer(columns, wrap)
    if name == "JSON_SR":
        return json_sr.json_sr_deserializer(columns, _wrap(fmt, columns, is_key))
    if name == "AVRO":
        return avro_deserializer(columns, _wrap(fmt, columns, is_key), registry)
    if name == "PROTOBUF":
        return protobuf.protobuf_deserializer(columns, registry, fmt)
    if name == "PROTOBUF_NOSR":
        return protobuf.protobuf_nosr_deserializer(columns, fmt)
    if name == "NONE":
        return lambda data: []
    raise UnsupportedError(f"format {name}")


def make_serializer(
    fmt: FormatInfo, columns: Sequence[ColumnDef], topic: str, is_key: bool, registry: Any = None
) -> Serializer:
    name = fmt.name
    if is_key and not columns:
        return lambda row: None
    if name == "KAFKA":
        return kafka.kafka_serializer(columns)
    if name == "DELIMITED":
        return delimited.delimited_serializer(columns, fmt.delimiter)
    if name == "JSON":
        return json_plain.json_serializer(columns, _wrap(fmt, columns, is_key))
    if name == "JSON_SR":
        wrap = _wrap(fmt, columns, is_key)
        return json_sr.json_sr_serializer(columns, wrap, registry, topic, is_key, fmt)
    if name == "AVRO":
        return avro_serializer(
            columns, _wrap(fmt, columns, is_key), registry, subject_of(topic, is_key), fmt
        )
    if name == "PROTOBUF":
        return protobuf.protobuf_serializer(columns, registry, topic, is_key, fmt)
    if name == "PROTOBUF_NOSR":
        return protobuf.protobuf_nosr_serializer(columns, fmt)
    if name == "NONE":
        return lambda row: None
    raise UnsupportedError(f"format {name}")


def _wrap(fmt: FormatInfo, columns: Sequence[ColumnDef], is_key: bool) -> bool:
    """Keys with one column are unwrapped; values are wrapped unless WRAP_SINGLE_VALUE=false."""
    if is_key:
        return len(columns) > 1
    return not (fmt.wrap_single is False and len(columns) == 1)


def infer_columns(
    fmt: FormatInfo,
    registry: Any,
    topic: str,
    is_key: bool,
    props: MutableMapping[str, Any] | None = None,
) -> list[ColumnDef] | None:
    """A source's key or value columns from the registry (CREATE without columns): the schema
    `fmt.schema_id` names, else the latest under the topic's subject. None for a key without a
    schema; KsqlError (ksqlDB's text) for a value without one or a format that cannot infer.

    As ksqlDB does, a JSON_SR or PROTOBUF source keeps the id of the schema it was inferred
    from (`props["_KEY_SCHEMA_ID"]`/`["_VALUE_SCHEMA_ID"]`): INSERTs write with that schema
    (and its message) instead of registering one of their own."""
    if fmt.name not in INFERRING_FORMATS:
        which = "KEY" if is_key else "VALUE"
        if fmt.schema_id is not None:
            raise KsqlError(
                f"{which}_FORMAT should support schema inference when {which}_SCHEMA_ID is "
                f"provided. Current format is {fmt.name}."
            )
        return None
    found = source_schema(registry, topic, is_key, fmt.schema_id, fmt.name)
    if found is None:
        if is_key:
            return None
        raise missing_schema(topic, subject_of(topic, is_key), is_key)
    if props is not None and fmt.name in ("PROTOBUF", "JSON_SR"):
        props[f"_{'KEY' if is_key else 'VALUE'}_SCHEMA_ID"] = found.schema_id
    if fmt.name == "PROTOBUF":
        return protobuf.columns_of(found, fmt.schema_name)
    if fmt.name == "JSON_SR":
        return json_sr.columns_of(found, is_key)
    schema = json.loads(found.text)
    if is_key:  # an AVRO key is one column, a record key a STRUCT
        return [("ROWKEY", sql_type_of(schema))]
    if isinstance(schema, dict) and schema.get("type") == "record" and fmt.wrap_single is not False:
        return [(f["name"].upper(), sql_type_of(f["type"])) for f in schema["fields"]]
    return [("ROWVAL", sql_type_of(schema))]
