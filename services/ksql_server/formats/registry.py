"""What the Schema Registry formats (AVRO, JSON_SR, PROTOBUF) share: the Confluent header,
finding a source's schema (by id or by the topic's subject), registering a sink's schema.

One place for ksqlDB's "schema does not exist" text and for the schema-by-id cache, so the three
codecs, which must not import each other, each stay a thin layer over their schema language.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from services.common.avro.wire import HEADER, MAGIC_BYTE
from services.ksql_server.errors import KsqlError

SR_FORMATS = ("AVRO", "JSON_SR", "PROTOBUF")
"""Formats whose records carry a registry schema id (and whose sinks register a schema)."""
INFERRING_FORMATS = ("AVRO", "JSON_SR", "PROTOBUF")
"""Formats whose columns can come from the registry (CREATE STREAM without columns)."""
SCHEMA_TYPES = {"AVRO": "AVRO", "JSON_SR": "JSON", "PROTOBUF": "PROTOBUF"}
"""KSQL format → the registry's `schemaType`."""
HEADER_SIZE = HEADER.size


def uses_registry(name: str) -> bool:
    """Whether a format needs the Schema Registry."""
    return name in SR_FORMATS


def subject_of(topic: str, is_key: bool) -> str:
    """TopicNameStrategy: `<topic>-key` / `<topic>-value`."""
    return f"{topic}-{'key' if is_key else 'value'}"


def split_confluent(data: bytes, fmt: str) -> tuple[int, memoryview]:
    """The schema id and the body of a record in Confluent's framing, or ksqlDB's error."""
    from services.ksql_server.formats.base import SerdeError

    if len(data) < HEADER_SIZE or data[0] != MAGIC_BYTE:
        raise SerdeError(f"Failed to deserialize {fmt}: Unknown magic byte!")
    magic, schema_id = HEADER.unpack_from(data)
    del magic
    return schema_id, memoryview(data)[HEADER_SIZE:]


@dataclass
class Registered:
    """A schema from the registry: its text, type, id and references (name → text)."""

    schema_id: int
    text: str
    schema_type: str
    references: dict[str, str] = field(default_factory=dict)


def missing_schema(topic: str, subject: str, is_key: bool) -> KsqlError:
    """ksqlDB's error for a source whose schema is not in the registry."""
    which = "keys" if is_key else "values"
    return KsqlError(
        f"Schema for message {which} on topic '{topic}' does not exist "
        f"in the Schema Registry.Subject: {subject}\n\nPossible causes include:\n"
        "- The topic itself does not exist\n\t-> Use SHOW TOPICS; to check\n"
        "- Messages on the topic are not serialized using a format Schema Registry supports\n"
        "\t-> Use PRINT '<topic>' FROM BEGINNING; to verify\n"
        "- Messages on the topic have not been serialized using a Schema Registry integrated "
        "serializer\n\t-> See https://docs.confluent.io/current/schema-registry/docs/serializer-formatter.html\n"
        "- The schema is registered on a different instance of the Schema Registry\n"
        "\t-> Use the REST API to list available subjects\thttps://docs.confluent.io/current/"
        "schema-registry/docs/api.html#get--subjects\n"
        "- You do not have Read access to the subject\n\t-> Check your permissions "
        f"on subject '{subject}'"
    )


MAX_REFERENCE_FILES = 200


def _references(registry: Any, refs: Any, out: dict[str, str]) -> None:
    """Every schema `refs` reach, by reference name (transitively, each once)."""
    for ref in refs or []:
        if ref.name in out:
            continue
        if len(out) >= MAX_REFERENCE_FILES:
            raise KsqlError(f"more than {MAX_REFERENCE_FILES} schema references")
        version = registry.get_version(ref.subject, ref.version)
        out[ref.name] = version.schema.schema_str
        _references(registry, version.schema.references, out)


def _registered(registry: Any, schema_id: int, schema: Any) -> Registered:
    refs: dict[str, str] = {}
    _references(registry, schema.references, refs)
    return Registered(schema_id, schema.schema_str, schema.schema_type or "AVRO", refs)


_BY_ID: dict[tuple[int, int], Registered] = {}
_LOCK = threading.Lock()


def schema_by_id(registry: Any, schema_id: int) -> Registered:
    """The schema registered under `schema_id` (cached: an id never changes its schema)."""
    key = (id(registry), schema_id)
    with _LOCK:
        found = _BY_ID.get(key)
    if found is not None:
        return found
    schema = registry.get_schema(schema_id)
    found = _registered(registry, schema_id, schema)
    with _LOCK:
        if len(_BY_ID) > 4096:
            _BY_ID.clear()
        _BY_ID[key] = found
    return found


def source_schema(
    registry: Any, topic: str, is_key: bool, schema_id: int | None, fmt: str
) -> Registered | None:
    """The schema a source reads: `schema_id` when given, else the latest under its subject;
    None when the subject has none (a key may lack one), KsqlError for a missing id."""
    subject = subject_of(topic, is_key)
    if registry is None:
        raise KsqlError(f"{fmt} requires a Schema Registry (ksql.schema.registry.url)")
    if schema_id is not None:
        try:
            found = schema_by_id(registry, schema_id)
        except Exception as exc:
            raise missing_schema(topic, subject, is_key) from exc
    else:
        try:
            latest = registry.get_latest_version(subject)
        except Exception:
            return None
        found = _registered(registry, latest.schema_id, latest.schema)
    want = SCHEMA_TYPES[fmt]
    if found.schema_type != want:
        raise KsqlError(
            f"Unable to verify if the {'key' if is_key else 'value'} schema for topic: {topic} is "
            f"compatible with ksqlDB.\nReason: the schema is {found.schema_type}, not {want}"
        )
    return found


def register(registry: Any, subject: str, text: str, fmt: str) -> int:
    """Register a sink's schema under `subject` (a schema already there gets its id back)."""
    from confluent_kafka.schema_registry import Schema

    if registry is None:
        raise KsqlError(f"{fmt} requires a Schema Registry (ksql.schema.registry.url)")
    try:
        return int(registry.register_schema(subject, Schema(text, SCHEMA_TYPES[fmt])))
    except Exception as exc:
        raise KsqlError(f"Could not register schema for subject {subject}: {exc}") from exc


NULLABLE_REPRESENTATIONS = ("OPTIONAL", "WRAPPER")


def schema_properties(fmt: Any, props: Any, which: str) -> None:
    """`<which>_SCHEMA_ID` and `<which>_PROTOBUF_NULLABLE_REPRESENTATION` onto a FormatInfo,
    with ksqlDB's errors for values and formats that cannot take them."""
    raw_id = props.get(f"{which}_SCHEMA_ID", props.get(f"_{which}_SCHEMA_ID"))
    if raw_id is not None and fmt.name == "AVRO":
        from services.ksql_server.errors import UnsupportedError

        raise UnsupportedError(f"WITH property {which}_SCHEMA_ID with AVRO")
    if raw_id is not None:
        try:
            fmt.schema_id = int(raw_id)
        except (TypeError, ValueError):
            raise KsqlError(f"Invalid value for {which}_SCHEMA_ID: {raw_id}") from None
    nullable = props.get(f"{which}_PROTOBUF_NULLABLE_REPRESENTATION")
    if nullable is not None:
        text = str(nullable).upper()
        if fmt.name not in ("PROTOBUF", "PROTOBUF_NOSR"):
            raise KsqlError(
                f"{fmt.name} does not support the following configs: [nullableRepresentation]"
            )
        if text not in NULLABLE_REPRESENTATIONS:
            raise KsqlError(
                f"Invalid value {nullable} for {which}_PROTOBUF_NULLABLE_REPRESENTATION: "
                "must be one of OPTIONAL, WRAPPER"
            )
        fmt.nullable = text
