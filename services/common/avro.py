"""Avro in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body.

Both our own services and Confluent's serializers, ksqlDB and the project's KSQL server read and
write this framing, so records move freely between them. Decoding works on batches: a batch of
values sharing one schema id is decoded with one parsed schema, which is the hot path of the
trainer, the scorer and the KSQL runtime.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")
KSQL_RECORD_NAME = "KsqlDataSourceSchema"
KSQL_RECORD_NAMESPACE = "io.confluent.ksql.avro_schemas"


class WireFormatError(ValueError):
    """A value that is not a Confluent-framed Avro record (kept with the reason for the DLQ)."""


def split_header(value: bytes | None) -> tuple[int, memoryview]:
    """Return (schema id, Avro body) or raise WireFormatError."""
    if value is None or len(value) < HEADER.size:
        raise WireFormatError("value too short for the Confluent wire format")
    magic, schema_id = HEADER.unpack_from(value)
    if magic != MAGIC_BYTE:
        raise WireFormatError(f"unknown magic byte {magic}")
    return schema_id, memoryview(value)[HEADER.size :]


def parse_schema(schema: str | dict[str, Any]) -> Any:
    """fastavro's parsed form of a schema given as JSON text or dict."""
    obj = json.loads(schema) if isinstance(schema, str) else schema
    return fastavro.parse_schema(obj)


AvroType = str | list[Any] | dict[str, Any]


def ksql_record_schema(fields: Sequence[tuple[str, AvroType]]) -> dict[str, Any]:
    """A record schema the way ksqlDB writes its sinks: optional (null-first union) fields."""
    return {
        "type": "record",
        "name": KSQL_RECORD_NAME,
        "namespace": KSQL_RECORD_NAMESPACE,
        "fields": [{"name": name, "type": ["null", typ], "default": None} for name, typ in fields],
    }


class SchemaCache:
    """Parsed writer schemas by id, fetched from the Schema Registry once each."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self._client = client
        self._parsed: dict[int, Any] = {}

    def get(self, schema_id: int) -> Any:
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            schema = self._client.get_schema(schema_id)
            parsed = parse_schema(schema.schema_str or "")
            self._parsed[schema_id] = parsed
        return parsed


class AvroDecoder:
    """Decodes Confluent-framed values with the writer schema named in each record."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self._schemas = SchemaCache(client)

    def decode(self, value: bytes | None) -> dict[str, Any]:
        schema_id, body = split_header(value)
        try:
            parsed = self._schemas.get(schema_id)
        except Exception as exc:
            raise WireFormatError(f"unknown schema id {schema_id}: {exc}") from exc
        try:
            record = fastavro.schemaless_reader(io.BytesIO(body), parsed, None)
        except Exception as exc:
            raise WireFormatError(f"cannot decode Avro body (schema {schema_id}): {exc}") from exc
        if not isinstance(record, dict):
            raise WireFormatError(f"schema {schema_id} is not a record schema")
        return record

    def decode_batch(
        self, values: Iterable[bytes | None]
    ) -> list[dict[str, Any] | WireFormatError]:
        """Decode many values; a bad one yields its error in place instead of raising."""
        out: list[dict[str, Any] | WireFormatError] = []
        for value in values:
            try:
                out.append(self.decode(value))
            except WireFormatError as exc:
                out.append(exc)
        return out


class AvroEncoder:
    """Registers one schema under a subject (once) and frames records with its id."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        subject: str,
        schema: dict[str, Any],
    ) -> None:
        self.schema = schema
        self._parsed = parse_schema(schema)
        self.schema_id = client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
        self.header = HEADER.pack(MAGIC_BYTE, self.schema_id)
        """The Confluent wire-format prefix of every record (magic byte, schema id)."""

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.header)
        fastavro.schemaless_writer(buf, self._parsed, record)
        return buf.getvalue()

    def encode_batch(self, records: Iterable[dict[str, Any]]) -> list[bytes]:
        return [self.encode(r) for r in records]


def registry_client(url: str | None = None) -> SchemaRegistryClient:
    from services.common.http.clients import registry_client_conf
    from services.common.settings import get_settings

    return SchemaRegistryClient(registry_client_conf(url or get_settings().schema_registry_url))
