"""A QTT case's declared topic schemas: registered, their ids mapped, inputs written with them.

ksqlDB's test driver gives each case a fresh mock registry, so its schema ids start at 1 (a
topic's key schema, then its value schema, topic by topic) unless the topic names one
(`keySchemaId`/`valueSchemaId`). A case's statements use those ids (`VALUE_SCHEMA_ID=2`). Here
the registry is shared and real, so each declared schema is registered under the case's prefix
and every `*_SCHEMA_ID` in the statements is rewritten to the id the registry gave.

Schema languages follow the topic's format: AVRO (JSON), PROTOBUF (`.proto` text, with
`*SchemaReferences` registered first under their names) and JSON (a JSON Schema: JSON_SR).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from services.common.avro.wire import header_of
from services.ksql_server.formats.avro import encode_with_schema

SCHEMA_TYPE = {"AVRO": "AVRO", "PROTOBUF": "PROTOBUF", "JSON": "JSON", "JSON_SR": "JSON"}
_SCHEMA_ID = re.compile(r"\b(KEY|VALUE)_SCHEMA_ID\s*=\s*'?(\d+)'?", re.IGNORECASE)


@dataclass
class Declared:
    """One registered topic schema."""

    schema_id: int
    schema_type: str
    schema: Any
    references: dict[str, str] = field(default_factory=dict)


@dataclass
class CaseSchemas:
    """The case's declared schemas by (physical topic, key|value) and its id mapping."""

    by_topic: dict[tuple[str, str], Declared] = field(default_factory=dict)
    ids: dict[int, int] = field(default_factory=dict)

    def rewrite(self, statement: str, prefix: str = "") -> str:
        """`*_SCHEMA_ID=<the case's id>` → the id the registry gave that schema: the one
        declared for the statement's own topic when there is one (the driver's numbering also
        counts schemas it registered for the statements' sources), else by the case's id."""
        if not self.ids:
            return statement
        topic = _topic_of(statement)

        def sub(m: re.Match[str]) -> str:
            which = m.group(1).upper()
            own = self.by_topic.get((prefix + topic, which.lower())) if topic else None
            found = own.schema_id if own is not None else self.ids.get(int(m.group(2)))
            return m.group(0) if found is None else f"{which}_SCHEMA_ID={found}"

        return _SCHEMA_ID.sub(sub, statement)


_KAFKA_TOPIC = re.compile(r"\bKAFKA_TOPIC\s*=\s*'([^']+)'", re.IGNORECASE)
_CREATE_NAME = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:STREAM|TABLE)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(`[^`]+`|\w+)",
    re.IGNORECASE,
)


def _topic_of(statement: str) -> str | None:
    """The topic a CREATE statement names (KAFKA_TOPIC, else the source's name)."""
    found = _KAFKA_TOPIC.search(statement)
    if found:
        return found.group(1)
    name = _CREATE_NAME.match(statement)
    if name is None:
        return None
    text = name.group(1)
    return text.strip("`") if text.startswith("`") else text.upper()


def register_topic(
    registry: Any, topic: dict[str, Any], prefix: str, out: CaseSchemas, ordinal: list[int]
) -> None:
    """Register a topic's key then value schema; `ordinal` counts the case's mock ids."""
    from confluent_kafka.schema_registry import Schema, SchemaReference

    for which in ("key", "value"):
        schema = topic.get(f"{which}Schema")
        if schema is None:
            continue
        ordinal[0] += 1
        fmt = str(topic.get(f"{which}Format") or topic.get("format") or "AVRO").upper()
        schema_type = SCHEMA_TYPE.get(fmt)
        if schema_type is None:
            from services.ksql_conformance.qtt import Unsupported

            raise Unsupported(f"schema for format {fmt}")
        refs = []
        texts: dict[str, str] = {}
        for ref in topic.get(f"{which}SchemaReferences") or []:
            ref_text = (
                ref["schema"] if isinstance(ref["schema"], str) else json.dumps(ref["schema"])
            )
            ref_type = SCHEMA_TYPE.get(str(ref.get("format", fmt)).upper(), schema_type)
            subject = prefix + ref["name"]
            registry.register_schema(subject, Schema(ref_text, ref_type))
            version = registry.get_latest_version(subject).version
            refs.append(SchemaReference(ref["name"], subject, version))
            texts[ref["name"]] = ref_text
        text = schema if schema_type == "PROTOBUF" else json.dumps(schema)
        subject = f"{prefix}{topic['name']}-{which}"
        # ksqlDB's QTT registry (a MockSchemaRegistryClient) checks no compatibility: a sink's
        # declared schema must not stop the server registering its own (another record name,
        # an anonymous map against Connect's array of key/value records)
        registry.set_compatibility(subject_name=subject, level="NONE")
        schema_id = registry.register_schema(subject, Schema(text, schema_type, refs))
        parsed = json.loads(text) if schema_type != "PROTOBUF" else text
        out.by_topic[(prefix + topic["name"], which)] = Declared(
            schema_id, schema_type, parsed, texts
        )
        out.ids[ordinal[0]] = schema_id
        explicit = topic.get(f"{which}SchemaId")
        if explicit is not None:
            out.ids[int(explicit)] = schema_id


def encode(value: Any, declared: Declared, full_name: str | None) -> bytes:
    """A JSON test value written with the case's own schema, in Confluent's framing."""
    if declared.schema_type == "AVRO":
        return encode_with_schema(value, declared.schema, declared.schema_id)
    if declared.schema_type == "JSON":
        return header_of(declared.schema_id) + json.dumps(value).encode()
    from services.ksql_server.formats.protobuf import encode_json

    return encode_json(value, declared.schema, declared.references, full_name, declared.schema_id)
