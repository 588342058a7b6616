"""The registry's state as a fold over Confluent's `_schemas` records, plus those record formats.

Every instance rebuilds the same state by applying the topic's records in order, so a restart (or
a second instance) sees exactly what the writer wrote. The keys and values are Confluent's JSON
(key types SCHEMA, CONFIG, MODE, DELETE_SUBJECT, CLEAR_SUBJECT, NOOP; a null value is a
tombstone), printed the way Confluent's Jackson does, so log compaction keeps the newest record
per key and a Confluent registry can read the same topic.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("fraudstream.schema_registry.state")

Record = tuple[dict[str, Any], dict[str, Any] | None]
"""One `_schemas` record: the key object and the value object (None for a tombstone)."""


def schema_key(subject: str, version: int) -> dict[str, Any]:
    return {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}


def config_key(subject: str | None) -> dict[str, Any]:
    return {"keytype": "CONFIG", "subject": subject, "magic": 0}


def mode_key(subject: str | None) -> dict[str, Any]:
    return {"keytype": "MODE", "subject": subject, "magic": 0}


def noop_key() -> dict[str, Any]:
    return {"keytype": "NOOP", "magic": 0}


def schema_value(entry: SchemaVersion) -> dict[str, Any]:
    value: dict[str, Any] = {
        "subject": entry.subject,
        "version": entry.version,
        "id": entry.schema_id,
        "schema": entry.schema,
        "deleted": entry.deleted,
    }
    if entry.schema_type != "AVRO":
        value["schemaType"] = entry.schema_type
    if entry.references:
        value["references"] = [dict(r) for r in entry.references]
    return value


def references_key(references: list[dict[str, Any]] | None) -> str:
    """References as one comparable string (the same schema text with other references is
    another schema, with its own id)."""
    return json.dumps(references or [], separators=(",", ":"), sort_keys=True)


def encode(obj: dict[str, Any] | None) -> bytes | None:
    """Compact JSON in the given key order (Jackson's output), so equal keys are equal bytes."""
    return None if obj is None else json.dumps(obj, separators=(",", ":")).encode()


def decode(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("record is not a JSON object")
    return obj


@dataclass
class SchemaVersion:
    """One version of one subject."""

    subject: str
    version: int
    schema_id: int
    schema: str
    schema_type: str = "AVRO"
    deleted: bool = False
    references: list[dict[str, Any]] = field(default_factory=list)
    """Confluent's `references`: [{"name", "subject", "version"}], as registered."""

    @property
    def identity(self) -> tuple[str, str, str]:
        """What makes two versions the same schema (and so the same id)."""
        return self.schema_type, self.schema, references_key(self.references)


def _references(raw: object) -> list[dict[str, Any]]:
    """The `references` of a stored value, kept only in Confluent's shape."""
    if not isinstance(raw, list):
        return []
    return [
        {"name": r.get("name"), "subject": r.get("subject"), "version": r.get("version")}
        for r in raw
        if isinstance(r, dict)
    ]


@dataclass
class RegistryState:
    """Subjects, versions, ids and configs, as the `_schemas` records so far describe them."""

    subjects: dict[str, dict[int, SchemaVersion]] = field(default_factory=dict)
    schemas_by_id: dict[int, SchemaVersion] = field(default_factory=dict)
    """The first version stored under each id (its text, type and references)."""
    id_by_schema: dict[tuple[str, str, str], int] = field(default_factory=dict)
    configs: dict[str | None, str] = field(default_factory=dict)
    modes: dict[str | None, str] = field(default_factory=dict)
    max_id: int = 0
    records_applied: int = 0

    def apply(self, key: dict[str, Any] | None, value: dict[str, Any] | None) -> None:
        """Fold one record in; unknown key types are skipped (newer Confluent features)."""
        if key is None:
            return
        self.records_applied += 1
        keytype = key.get("keytype")
        subject = key.get("subject")
        if keytype == "SCHEMA":
            self._apply_schema(str(subject), int(key["version"]), value)
        elif keytype == "CONFIG":
            level = None if value is None else value.get("compatibilityLevel")
            self._set(self.configs, subject, level)
        elif keytype == "MODE":
            self._set(self.modes, subject, None if value is None else value.get("mode"))
        elif keytype == "DELETE_SUBJECT" and value is not None:
            upto = int(value.get("version", 0))
            for entry in self.subjects.get(str(subject), {}).values():
                if entry.version <= upto:
                    entry.deleted = True
        elif keytype == "CLEAR_SUBJECT" and value is not None:
            versions = self.subjects.get(str(subject), {})
            for number in [v for v, e in versions.items() if e.deleted]:
                self._apply_schema(str(subject), number, None)
        elif keytype != "NOOP":
            log.debug("skipping _schemas record with key type %r", keytype)

    @staticmethod
    def _set(table: dict[str | None, str], subject: str | None, value: str | None) -> None:
        if value is None:
            table.pop(subject, None)
        else:
            table[subject] = value

    def _apply_schema(self, subject: str, version: int, value: dict[str, Any] | None) -> None:
        versions = self.subjects.setdefault(subject, {})
        if value is None:
            old = versions.pop(version, None)
            if not versions:
                del self.subjects[subject]
            if old is not None:
                self._forget_if_unused(old.schema_id)
            return
        entry = SchemaVersion(
            subject=subject,
            version=version,
            schema_id=int(value["id"]),
            schema=str(value["schema"]),
            schema_type=str(value.get("schemaType") or "AVRO"),
            deleted=bool(value.get("deleted", False)),
            references=_references(value.get("references")),
        )
        versions[version] = entry
        self.schemas_by_id.setdefault(entry.schema_id, entry)
        self.id_by_schema.setdefault(entry.identity, entry.schema_id)
        self.max_id = max(self.max_id, entry.schema_id)

    def _forget_if_unused(self, schema_id: int) -> None:
        if any(e.schema_id == schema_id for vs in self.subjects.values() for e in vs.values()):
            return
        schema = self.schemas_by_id.pop(schema_id, None)
        if schema is not None and self.id_by_schema.get(schema.identity) == schema_id:
            del self.id_by_schema[schema.identity]

    def referrers(self, subject: str, version: int) -> list[SchemaVersion]:
        """Live versions whose references name `subject` at `version`."""
        return [
            entry
            for versions in self.subjects.values()
            for entry in versions.values()
            if not entry.deleted
            and any(
                r.get("subject") == subject and r.get("version") == version
                for r in entry.references
            )
        ]

    # -- queries -------------------------------------------------------------------------------

    def live_versions(self, subject: str) -> list[SchemaVersion]:
        """Versions not soft-deleted, oldest first."""
        versions = self.subjects.get(subject, {})
        return [versions[v] for v in sorted(versions) if not versions[v].deleted]

    def all_versions(self, subject: str) -> list[SchemaVersion]:
        versions = self.subjects.get(subject, {})
        return [versions[v] for v in sorted(versions)]
