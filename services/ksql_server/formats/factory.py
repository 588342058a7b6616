"""The format factories: a (de)serializer for a format, its columns and its topic.

Kept apart from `serdes` (the KAFKA, DELIMITED and JSON codecs) and `avro` (the AVRO codec),
which both sit below it: the factory is the one place that knows every format, so no codec
module imports another to find its sibling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.ksql_server.errors import UnsupportedError
from services.ksql_server.formats import serdes
from services.ksql_server.formats.avro import avro_deserializer, avro_serializer
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.formats.serdes import Deserializer, Serializer
from services.ksql_server.types import ColumnDef


def make_deserializer(
    fmt: FormatInfo, columns: Sequence[ColumnDef], topic: str, is_key: bool, registry: Any = None
) -> Deserializer:
    name = fmt.name
    if is_key and not columns:
        return lambda data: []
    if name == "KAFKA":
        return serdes.kafka_deserializer(columns)
    if name == "DELIMITED":
        return serdes.delimited_deserializer(columns, fmt.delimiter)
    if name == "JSON":
        wrap = _wrap(fmt, columns, is_key)
        return serdes.json_deserializer(columns, wrap)
    if name == "AVRO":
        return avro_deserializer(columns, _wrap(fmt, columns, is_key), registry)
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
        return serdes.kafka_serializer(columns)
    if name == "DELIMITED":
        return serdes.delimited_serializer(columns, fmt.delimiter)
    if name == "JSON":
        return serdes.json_serializer(columns, _wrap(fmt, columns, is_key))
    if name == "AVRO":
        return avro_serializer(
            columns,
            _wrap(fmt, columns, is_key),
            registry,
            f"{topic}-{'key' if is_key else 'value'}",
            fmt,
        )
    if name == "NONE":
        return lambda row: None
    raise UnsupportedError(f"format {name}")


def _wrap(fmt: FormatInfo, columns: Sequence[ColumnDef], is_key: bool) -> bool:
    """Keys with one column are unwrapped; values are wrapped unless WRAP_SINGLE_VALUE=false."""
    if is_key:
        return len(columns) > 1
    return not (fmt.wrap_single is False and len(columns) == 1)
