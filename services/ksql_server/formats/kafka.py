"""The KAFKA format: one primitive column as Kafka's own serializers write it (big-endian
INT/BIGINT/DOUBLE, UTF-8 STRING)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from services.ksql_server.errors import KsqlError
from services.ksql_server.formats.base import Deserializer, SerdeError, Serializer
from services.ksql_server.types import ColumnDef

_PACK = {
    "INTEGER": struct.Struct(">i"),
    "BIGINT": struct.Struct(">q"),
    "DOUBLE": struct.Struct(">d"),
}


_JAVA_DESER = {
    "INTEGER": "IntegerDeserializer",
    "BIGINT": "LongDeserializer",
    "DOUBLE": "DoubleDeserializer",
}


def kafka_deserializer(columns: Sequence[ColumnDef]) -> Deserializer:
    if not columns:
        return lambda data: []
    typ = columns[0][1]
    base = typ.base
    if base == "STRING":
        return lambda data: [None if data is None else data.decode("utf-8")]
    if base == "BYTES":
        return lambda data: [data]
    packer = _PACK.get(base)
    if packer is None:
        raise KsqlError(f"The 'KAFKA' format does not support type '{base}'")

    def deser(data: bytes | None) -> list[Any]:
        if data is None:
            return [None]
        if len(data) != packer.size:
            raise SerdeError(f"Size of data received by {_JAVA_DESER[base]} is not {packer.size}")
        return [packer.unpack(data)[0]]

    return deser


def kafka_serializer(columns: Sequence[ColumnDef]) -> Serializer:
    if not columns:
        return lambda row: None
    base = columns[0][1].base
    if base == "STRING":
        return lambda row: None if row[0] is None else row[0].encode("utf-8")
    if base == "BYTES":
        return lambda row: row[0]
    packer = _PACK[base]
    if base == "DOUBLE":
        return lambda row: None if row[0] is None else packer.pack(float(row[0]))
    return lambda row: None if row[0] is None else packer.pack(row[0])
