"""`produce --format`: the source records as DELIMITED (the default), JSON_SR or PROTOBUF.

Teams whose producers use Confluent's `JSONSchemaSerializer` or `ProtobufSerializer` write the
transactions that way; `ksql/examples/50_json_sr_to_avro.sql` and `51_protobuf_to_avro.sql` turn
such a topic into the Avro streams the trainer and the scorer read. The replay stays as it is:
it reads DELIMITED lines in blocks, and an encoder given here turns each block's values into
the chosen format (Confluent's framing, the schema registered once under `<topic>-value`), so
`confluent_kafka`'s deserializers and the KSQL server both read the records.

The fields are the source's 34 columns in upper case (`ID`, `TIMESTAMP`, `USER`, `TIME`,
`V1`..`V28`, `AMOUNT`, `CLASS`); an empty `CLASS` (unlabelled) is null: `null` in JSON, an
unset proto3 `optional` field in Protobuf, so `WHERE CLASS IS NOT NULL` keeps only labelled rows.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from typing import Any

from services.common.topics import EXTENDED_COLUMNS, SOURCE_TOPIC
from services.producer.errors import ProducerError

FORMATS = ("delimited", "json_sr", "protobuf")
DEFAULT_TOPICS = {
    "delimited": SOURCE_TOPIC,
    "json_sr": f"{SOURCE_TOPIC}_json_sr",
    "protobuf": f"{SOURCE_TOPIC}_protobuf",
}
"""Each format has its own topic by default: the DELIMITED source stream keeps its own."""
FIELDS: tuple[str, ...] = tuple(c.upper() for c in EXTENDED_COLUMNS)
_TYPES = ["int64", "string", "string", "int32"] + ["double"] * 29 + ["optional string"]
"""Protobuf field types of FIELDS (the DELIMITED stream's BIGINT, VARCHAR, INT, DOUBLE)."""
MESSAGE_NAME = "Transaction"

ValueEncoder = Callable[[Sequence[bytes]], list[bytes]]


class FormatError(ProducerError, ValueError):
    """A bad `--format` or a schema the registry refused."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="bad_option")


def default_topic(fmt: str) -> str:
    return DEFAULT_TOPICS[_checked(fmt)]


def _checked(fmt: str) -> str:
    name = fmt.lower()
    if name not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    return name


def json_schema() -> dict[str, Any]:
    """The JSON Schema registered for JSON_SR values (Kafka Connect's shape, as ksqlDB's)."""
    kinds = {
        "int64": {"type": "integer", "connect.type": "int64"},
        "int32": {"type": "integer", "connect.type": "int32"},
        "double": {"type": "number", "connect.type": "float64"},
        "string": {"type": "string"},
        "optional string": {"type": "string"},
    }
    props = {
        name: {"oneOf": [{"type": "null"}, kinds[kind]], "connect.index": i}
        for i, (name, kind) in enumerate(zip(FIELDS, _TYPES, strict=True))
    }
    return {"type": "object", "title": MESSAGE_NAME, "properties": props}


def proto_schema() -> str:
    """The `.proto` registered for PROTOBUF values."""
    body = "\n".join(
        f"  {kind} {name} = {i};"
        for i, (name, kind) in enumerate(zip(FIELDS, _TYPES, strict=True), start=1)
    )
    return f'syntax = "proto3";\n\nmessage {MESSAGE_NAME} {{\n{body}\n}}\n'


def _rows(values: Sequence[bytes]) -> list[list[Any]]:
    """DELIMITED lines → typed rows (one csv pass over the block)."""
    out = []
    for fields in csv.reader(v.decode("utf-8") for v in values):
        row: list[Any] = [int(fields[0]), fields[1], fields[2], int(float(fields[3]))]
        row += [float(x) for x in fields[4:33]]
        row.append(fields[33] or None)
        out.append(row)
    return out


def value_encoder(fmt: str, topic: str, registry: Any = None) -> ValueEncoder | None:
    """The encoder for `fmt` (None for DELIMITED: the lines go as they are); registers the
    value schema under `<topic>-value` with `registry` (a `SchemaRegistryClient`)."""
    name = _checked(fmt)
    if name == "delimited":
        return None
    from confluent_kafka.schema_registry import Schema

    from services.common.avro.wire import header_of

    if registry is None:
        from services.common.avro.schemas import registry_client

        registry = registry_client()
    text = json.dumps(json_schema()) if name == "json_sr" else proto_schema()
    kind = "JSON" if name == "json_sr" else "PROTOBUF"
    try:
        schema_id = registry.register_schema(f"{topic}-value", Schema(text, kind))
    except Exception as exc:
        raise FormatError(f"the registry refused the {kind} schema for {topic}: {exc}") from exc
    header = header_of(schema_id)
    if name == "json_sr":
        return _json_encoder(header)
    return _proto_encoder(header, text)


def _json_encoder(header: bytes) -> ValueEncoder:
    def encode(values: Sequence[bytes]) -> list[bytes]:
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        return [
            header + dumps(dict(zip(FIELDS, row, strict=True))).encode() for row in _rows(values)
        ]

    return encode


def _proto_encoder(header: bytes, text: str) -> ValueEncoder:
    from services.common.schemas.protobuf import encode_message_indexes, parse

    schema = parse(text)
    cls = schema.message_class(MESSAGE_NAME)
    prefix = header + encode_message_indexes(schema.message_index(MESSAGE_NAME))

    def encode(values: Sequence[bytes]) -> list[bytes]:
        out = []
        for row in _rows(values):
            fields = dict(zip(FIELDS, row, strict=True))
            if fields["CLASS"] is None:
                del fields["CLASS"]
            out.append(prefix + cls(**fields).SerializeToString())
        return out

    return encode
