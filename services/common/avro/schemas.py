"""Writer schemas: fetched from the Schema Registry once per id, parsed, and planned.

A value names its writer schema by id. Two failures look alike from the outside and must not be
confused: a registry that answers "no such id" (the value is bad: it is rejected, code
`schema_id`) and a registry that does not answer (the value may be fine: `ServiceUnavailable`,
code `registry_unreachable`, so the batch is retried instead of dead-lettering good data).

A *plan* says how the compiled walker reads a flat record schema (every field a primitive or a
`["null", primitive]` union, ksqlDB's style); other schemas have none and are read by fastavro.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from services.common.avro.kinds import KINDS
from services.common.avro.wire import WireFormatError
from services.common.errors import ServiceUnavailable

KSQL_RECORD_NAME = "KsqlDataSourceSchema"
KSQL_RECORD_NAMESPACE = "io.confluent.ksql.avro_schemas"
UNKNOWN_ID_TTL_S = 60.0
"""An id the registry did not know is not asked for again for this long (bad records with a
bogus id must not cost a registry round trip each)."""
NUMERIC_TYPES = ("int", "long", "float", "double")

AvroType = str | list[Any] | dict[str, Any]


def parse_schema(schema: str | dict[str, Any]) -> Any:
    """fastavro's parsed form of a schema given as JSON text or dict."""
    obj = json.loads(schema) if isinstance(schema, str) else schema
    return fastavro.parse_schema(obj)


def ksql_record_schema(fields: Sequence[tuple[str, AvroType]]) -> dict[str, Any]:
    """A record schema the way ksqlDB writes its sinks: optional (null-first union) fields."""
    return {
        "type": "record",
        "name": KSQL_RECORD_NAME,
        "namespace": KSQL_RECORD_NAMESPACE,
        "fields": [{"name": name, "type": ["null", typ], "default": None} for name, typ in fields],
    }


@dataclass(frozen=True)
class FieldPlan:
    """How to read one field: its primitive type and where null sits in its union (if any)."""

    name: str
    type: str
    null_branch: int | None
    """None: not a union; 0 or 1: the union branch index that is null."""


def plan_schema(schema: Any) -> list[FieldPlan] | None:
    """A plan for a flat record schema, or None when the schema needs the general decoder."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    plans: list[FieldPlan] = []
    for field in schema.get("fields", []):
        plan = _plan_field(field.get("name"), field.get("type"))
        if plan is None:
            return None
        plans.append(plan)
    return plans


def numeric_features(plans: Sequence[FieldPlan], fields: Sequence[str]) -> bool:
    """Every feature field is in the schema with a numeric type (else: the general path)."""
    types = {p.name: p.type for p in plans}
    return all(types.get(f) in NUMERIC_TYPES for f in fields)


def _primitive(typ: Any) -> str | None:
    if isinstance(typ, dict) and "logicalType" not in typ:
        typ = typ.get("type")
    return typ if isinstance(typ, str) and typ in KINDS else None


def _plan_field(name: Any, typ: Any) -> FieldPlan | None:
    if not isinstance(name, str):
        return None
    if isinstance(typ, list):
        if len(typ) != 2 or "null" not in typ:
            return None
        null_branch = typ.index("null")
        primitive = _primitive(typ[1 - null_branch])
        return None if primitive is None else FieldPlan(name, primitive, null_branch)
    primitive = _primitive(typ)
    return None if primitive is None else FieldPlan(name, primitive, None)


@dataclass(frozen=True)
class Writer:
    """One writer schema: parsed for fastavro, and planned for the walker (None: no plan)."""

    schema_id: int
    parsed: Any
    plans: list[FieldPlan] | None


class WriterSchemas:
    """Writer schemas by id; tells "no such schema" (a bad record) from "registry down"."""

    def __init__(self, client: SchemaRegistryClient, retries: int = 5) -> None:
        self._client = client
        self.retries = retries
        """How many times an unanswered fetch is tried again (with backoff) before giving up."""
        self._known: dict[int, Writer] = {}
        self._unknown: dict[int, float] = {}

    def get(self, schema_id: int) -> Writer:
        """The writer schema; WireFormatError (code `schema_id`) when the registry has no such
        id, ServiceUnavailable (code `registry_unreachable`) when it does not answer."""
        writer = self._known.get(schema_id)
        if writer is not None:
            return writer
        failed_at = self._unknown.get(schema_id)
        if failed_at is not None and time.monotonic() - failed_at < UNKNOWN_ID_TTL_S:
            raise WireFormatError.unknown_schema(schema_id)
        schema = json.loads(self._fetch(schema_id))
        writer = Writer(schema_id, fastavro.parse_schema(schema), plan_schema(schema))
        self._known[schema_id] = writer
        return writer

    def _fetch(self, schema_id: int) -> str:
        delay = 0.2
        for attempt in range(self.retries + 1):
            try:
                return str(self._client.get_schema(schema_id).schema_str)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    self._unknown[schema_id] = time.monotonic()
                    raise WireFormatError.unknown_schema(schema_id) from exc
                last: Exception = exc
            except Exception as exc:
                last = exc
            if attempt < self.retries:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise ServiceUnavailable(
            f"Schema Registry did not return schema {schema_id}: {last}",
            code="registry_unreachable",
        )


def registry_client(url: str | None = None) -> SchemaRegistryClient:
    """A Schema Registry client for `url` (default: the settings'), with the project's auth."""
    from services.common.http.clients import registry_client_conf
    from services.common.settings import get_settings

    return SchemaRegistryClient(registry_client_conf(url or get_settings().schema_registry_url))
