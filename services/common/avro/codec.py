"""One record at a time through fastavro: the encoder every producer of Avro uses, and the
decoder of the tools that read a few records (alert viewer, pipeline summary, tests).

Hot paths read whole batches with `services.common.avro.decoder` instead.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from services.common.avro.schemas import WriterSchemas, parse_schema
from services.common.avro.wire import WireFormatError, header_of, split_header


class AvroDecoder:
    """Decodes Confluent-framed values with the writer schema named in each record."""

    def __init__(self, client: SchemaRegistryClient, retries: int = 5) -> None:
        self._schemas = WriterSchemas(client, retries)

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """The record; WireFormatError for a bad value, ServiceUnavailable for a registry
        that does not answer."""
        schema_id, body = split_header(value)
        writer = self._schemas.get(schema_id)
        try:
            record = fastavro.schemaless_reader(io.BytesIO(body), writer.parsed, None)  # type: ignore[call-arg]
        except Exception as exc:
            raise WireFormatError.bad_body(schema_id, exc) from exc
        if not isinstance(record, dict):
            raise WireFormatError.not_record(schema_id)
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
        self.header = header_of(self.schema_id)
        """The Confluent wire-format prefix of every record (magic byte, schema id)."""

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.header)
        fastavro.schemaless_writer(buf, self._parsed, record)
        return buf.getvalue()

    def encode_batch(self, records: Iterable[dict[str, Any]]) -> list[bytes]:
        return [self.encode(r) for r in records]
