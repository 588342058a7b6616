"""Confluent Schema Registry semantics on top of the `_schemas` state: ids, versions, deletes
and compatibility decisions (configs and modes in `subject_settings`, references in
`references`; `Registry` brings the three together).

Reads look at the in-memory state; every change is a list of `_schemas` records handed to the
`Log`, which returns once the records are applied to the state. One global id space: the same
schema text gets the same id in every subject, re-registering returns the existing id. Writes
are serialised by `write_lock`, and the Kafka log only accepts them on the elected writer, so an
id is never handed out twice.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from services.schema_registry import compatibility, errors, schemas
from services.schema_registry.limits import SchemaLimits
from services.schema_registry.references import MAX_REFERENCES, SchemaReferences
from services.schema_registry.state import (
    Record,
    RegistryState,
    SchemaVersion,
    encode,
    references_key,
    schema_key,
    schema_value,
)
from services.schema_registry.subject_settings import DEFAULT_MODE, MODES, SubjectSettings

__all__ = [
    "DEFAULT_MODE",
    "MAX_REFERENCES",
    "MODES",
    "Log",
    "MemoryLog",
    "ParseCache",
    "Registry",
    "parse_version",
]


class ParseCache:
    """Parsed schemas by their text, least recently used first out, bounded by the total size
    of the texts it keeps (a parsed schema is about ten times its text), so neither many small
    schemas nor a few big ones can grow the registry's memory without bound."""

    def __init__(self, max_text_bytes: int = 8 * 1024 * 1024) -> None:
        self.max_text_bytes = max_text_bytes
        self._items: OrderedDict[str, schemas.ParsedSchema] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, text: str, parse: Callable[[str], schemas.ParsedSchema]) -> schemas.ParsedSchema:
        with self._lock:
            found = self._items.get(text)
            if found is not None:
                self._items.move_to_end(text)
                return found
        parsed = parse(text)  # outside the lock: parsing may take a while; invalid ones raise
        if len(text) <= self.max_text_bytes // 8:
            with self._lock:
                if text not in self._items:
                    self._items[text] = parsed
                    self._bytes += len(text)
                while self._bytes > self.max_text_bytes:
                    old, _ = self._items.popitem(last=False)
                    self._bytes -= len(old)
        return parsed


class Log(Protocol):
    """Where changes go: `write` appends records and returns once they are applied."""

    def write(self, records: list[Record]) -> None: ...


class MemoryLog:
    """Applies records straight to the state: the registry without Kafka (unit tests)."""

    def __init__(self, state: RegistryState, lock: threading.RLock) -> None:
        self.state = state
        self.lock = lock
        self.records: list[Record] = []

    def write(self, records: list[Record]) -> None:
        with self.lock:
            for key, value in records:
                self.records.append((key, value))
                self.state.apply(key, value)


def parse_version(raw: str, allow_latest: bool = True) -> int | None:
    """A version path segment: a number >= 1, or None for `latest`/`-1`; else 42202."""
    if allow_latest and raw in ("latest", "-1"):
        return None
    try:
        number = int(raw)
    except ValueError:
        raise errors.invalid_version(raw) from None
    if number < 1 or number > 2**31 - 1:
        raise errors.invalid_version(raw)
    return number


class Registry(SubjectSettings, SchemaReferences):
    """The registry's operations; each returns the JSON body Confluent's server would send.

    Schemas (register, look up, delete, check compatibility) are here; subject settings
    (config and mode) come from `SubjectSettings`, references from `SchemaReferences`."""

    def __init__(
        self,
        state: RegistryState | None = None,
        lock: threading.RLock | None = None,
        log_factory: Callable[[RegistryState, threading.RLock], Log] | None = None,
        limits: SchemaLimits | None = None,
    ) -> None:
        self.state = state or RegistryState()
        self.lock = lock or threading.RLock()
        self.log: Log = (log_factory or MemoryLog)(self.state, self.lock)
        self.limits = limits or SchemaLimits()
        self.write_lock = threading.Lock()
        self._requested = ParseCache()  # producers re-send the same few schemas
        self._stored = ParseCache()

    # -- helpers ------------------------------------------------------------------------------

    def _parse_stored(self, entry: SchemaVersion) -> schemas.ParsedSchema:
        """A schema from `_schemas`; one that cannot be parsed is a store failure (50001)."""
        stored_limits = SchemaLimits(  # a Confluent-written schema may exceed our size limit
            max_schema_bytes=2**31, max_depth=self.limits.max_depth
        )
        try:
            resolved = self._resolve(entry.references)
            key = _cache_key(entry.schema_type, entry.schema, entry.references)
            return self._stored.get(
                key,
                lambda _: schemas.parse(entry.schema, entry.schema_type, stored_limits, resolved),
            )
        except errors.RegistryError as exc:
            raise errors.store_error(f"a stored schema cannot be read: {exc.message}") from None

    def _parse_request(
        self, body: dict[str, Any]
    ) -> tuple[schemas.ParsedSchema, list[dict[str, Any]]]:
        """The schema a request carries, with its references (as stored), or 42201."""
        references = self._references_of(body)
        text, schema_type = body.get("schema"), body.get("schemaType") or "AVRO"
        if isinstance(schema_type, str):
            schema_type = schema_type.upper()
        if not isinstance(text, str) or schema_type not in schemas.SUPPORTED_TYPES:
            return schemas.parse(text, schema_type, self.limits), references
        resolved = self._resolve(references)
        parsed = self._requested.get(
            _cache_key(schema_type, text, references),
            lambda _: schemas.parse(text, schema_type, self.limits, resolved),
        )
        return parsed, references

    def _write(self, records: list[Record]) -> None:
        """Hand records to the log once each fits in a `_schemas` record (42201 otherwise):
        nothing is written, and nothing in memory changes, unless the whole change fits."""
        for key, value in records:
            self.limits.check_record(len(encode(key) or b"") + len(encode(value) or b""))
        self.log.write(records)

    def _check(
        self, candidate: schemas.ParsedSchema, previous: list[schemas.ParsedSchema], level: str
    ) -> list[str]:
        return compatibility.check_schemas(
            candidate, previous, level, max_steps=self.limits.max_compat_steps
        )

    def _same(
        self,
        entry: SchemaVersion,
        candidate: schemas.ParsedSchema,
        references: list[dict[str, Any]],
        normalize: bool,
    ) -> bool:
        if entry.schema_type != candidate.schema_type:
            return False
        if references_key(entry.references) != references_key(references):
            return False
        if entry.schema == candidate.text(normalize):
            return True
        if normalize:
            return self._parse_stored(entry).normalized == candidate.normalized
        return False

    def _versions(self, subject: str, deleted: bool) -> list[SchemaVersion]:
        """A subject's versions (live only unless `deleted`), or 40401 if there are none."""
        with self.lock:
            found = (
                self.state.all_versions(subject) if deleted else self.state.live_versions(subject)
            )
        if not found:
            raise errors.subject_not_found(subject)
        return found

    def _version(self, subject: str, raw: str, deleted: bool) -> SchemaVersion:
        number = parse_version(raw)
        found = self._versions(subject, deleted)
        if number is None:
            return found[-1]
        for entry in found:
            if entry.version == number:
                return entry
        raise errors.version_not_found(subject, number)

    @staticmethod
    def _describe(entry: SchemaVersion) -> dict[str, Any]:
        out: dict[str, Any] = {
            "subject": entry.subject,
            "version": entry.version,
            "id": entry.schema_id,
            "schema": entry.schema,
        }
        if entry.schema_type != "AVRO":
            out["schemaType"] = entry.schema_type
        if entry.references:
            out["references"] = [dict(r) for r in entry.references]
        return out

    def _formatted(self, entry: SchemaVersion, fmt: str | None) -> str:
        """The schema text, or with `format=serialized` a Protobuf schema as base64
        `FileDescriptorProto` (what confluent-kafka's Protobuf deserializer asks for)."""
        if fmt == "serialized" and entry.schema_type == "PROTOBUF":
            return str(self._parse_stored(entry).parsed.serialized())
        return entry.schema

    # -- schemas ------------------------------------------------------------------------------

    def register(self, subject: str, body: dict[str, Any], normalize: bool) -> dict[str, Any]:
        """POST /subjects/{subject}/versions."""
        candidate, references = self._parse_request(body)
        text = candidate.text(normalize)
        identity = (candidate.schema_type, text, references_key(references))
        self._check_writable(subject)
        with self.write_lock:
            with self.lock:
                every = self.state.all_versions(subject)
                live = [e for e in every if not e.deleted]
                existing_id = self.state.id_by_schema.get(identity)
                next_id = self.state.max_id + 1
            for entry in live:
                if self._same(entry, candidate, references, normalize):
                    return {"id": entry.schema_id}
            previous = [self._parse_stored(e) for e in live]
            messages = self._check(candidate, previous, self.level(subject))
            if messages:
                raise errors.incompatible_schema(messages)
            entry = SchemaVersion(
                subject=subject,
                version=(every[-1].version + 1) if every else 1,
                schema_id=existing_id if existing_id is not None else next_id,
                schema=text,
                schema_type=candidate.schema_type,
                references=references,
            )
            self._write([(schema_key(subject, entry.version), schema_value(entry))])
            return {"id": entry.schema_id}

    def lookup(
        self, subject: str, body: dict[str, Any], normalize: bool, deleted: bool
    ) -> dict[str, Any]:
        """POST /subjects/{subject}: the version of `subject` that holds this schema."""
        candidate, references = self._parse_request(body)
        for entry in self._versions(subject, deleted):
            if self._same(entry, candidate, references, normalize):
                return self._describe(entry)
        raise errors.schema_not_found()

    def schema_by_id(self, schema_id: int) -> SchemaVersion:
        with self.lock:
            found = self.state.schemas_by_id.get(schema_id)
        if found is None:
            raise errors.schema_not_found(f"Schema {schema_id} not found")
        return found

    def get_schema(self, schema_id: int, fmt: str | None = None) -> dict[str, Any]:
        """GET /schemas/ids/{id}."""
        entry = self.schema_by_id(schema_id)
        out: dict[str, Any] = {"schema": self._formatted(entry, fmt)}
        if entry.schema_type != "AVRO":
            out["schemaType"] = entry.schema_type
        if entry.references:
            out["references"] = [dict(r) for r in entry.references]
        return out

    def subjects(self, prefix: str, deleted: bool) -> list[str]:
        """GET /subjects."""
        with self.lock:
            names = [
                s
                for s, versions in self.state.subjects.items()
                if s.startswith(prefix)
                and (deleted or any(not e.deleted for e in versions.values()))
            ]
        return sorted(names)

    def versions(self, subject: str, deleted: bool) -> list[int]:
        return [e.version for e in self._versions(subject, deleted)]

    def get_version(
        self, subject: str, raw: str, deleted: bool, fmt: str | None = None
    ) -> dict[str, Any]:
        entry = self._version(subject, raw, deleted)
        out = self._describe(entry)
        out["schema"] = self._formatted(entry, fmt)
        return out

    def version_schema(self, subject: str, raw: str, deleted: bool) -> str:
        return self._version(subject, raw, deleted).schema

    # -- deletes ------------------------------------------------------------------------------

    def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        """DELETE /subjects/{subject}: soft first, then permanent (Confluent's two steps)."""
        self._check_writable(subject)
        with self.write_lock:
            every = self._versions(subject, deleted=True)
            live = [e for e in every if not e.deleted]
            self._check_unreferenced(every if permanent else live)
            if permanent:
                if live:
                    raise errors.subject_not_soft_deleted(subject)
                records: list[Record] = [(schema_key(subject, e.version), None) for e in every]
                self._write(records + self._settings_records(subject))
                return [e.version for e in every]
            if not live:
                raise errors.subject_soft_deleted(subject)
            self._write([self._soft_deleted(e) for e in live])
            return [e.version for e in live]

    @staticmethod
    def _soft_deleted(entry: SchemaVersion) -> Record:
        gone = SchemaVersion(
            entry.subject,
            entry.version,
            entry.schema_id,
            entry.schema,
            entry.schema_type,
            True,
            list(entry.references),
        )
        return schema_key(entry.subject, entry.version), schema_value(gone)

    def delete_version(self, subject: str, raw: str, permanent: bool) -> int:
        """DELETE /subjects/{subject}/versions/{version}."""
        number = parse_version(raw)
        self._check_writable(subject)
        with self.write_lock:
            every = self._versions(subject, deleted=True)
            if number is None:
                live = [e for e in every if not e.deleted]
                candidates = live or (every if permanent else [])
                if not candidates:
                    raise errors.subject_soft_deleted(subject)
                entry = candidates[-1]
            else:
                matches = [e for e in every if e.version == number]
                if not matches:
                    raise errors.version_not_found(subject, number)
                entry = matches[0]
            self._check_unreferenced([entry])
            if permanent:
                if not entry.deleted:
                    raise errors.version_not_soft_deleted(subject, entry.version)
                self._write([(schema_key(subject, entry.version), None)])
            else:
                if entry.deleted:
                    raise errors.version_soft_deleted(subject, entry.version)
                self._write([self._soft_deleted(entry)])
            return entry.version

    # -- compatibility ------------------------------------------------------------------------

    def test_compatibility(
        self,
        subject: str,
        raw_version: str | None,
        body: dict[str, Any],
        normalize: bool,
        verbose: bool,
    ) -> dict[str, Any]:
        """POST /compatibility/subjects/{subject}/versions[/{version}]."""
        candidate, _ = self._parse_request(body)
        level = self.level(subject)
        if raw_version is None:
            with self.lock:
                live = self.state.live_versions(subject)
            previous = [self._parse_stored(e) for e in live]
        else:
            entry = self._version(subject, raw_version, deleted=False)
            previous = [self._parse_stored(entry)]
            level = level.removesuffix("_TRANSITIVE")
        messages = self._check(candidate, previous, level)
        out: dict[str, Any] = {"is_compatible": not messages}
        if verbose:
            out["messages"] = messages
        return out


def _cache_key(schema_type: str, text: str, references: list[dict[str, Any]]) -> str:
    """What a parsed schema is cached under: the text alone for a plain Avro schema (the
    common case), else its type and references too."""
    if schema_type == "AVRO" and not references:
        return text
    return f"{schema_type}\x00{references_key(references)}\x00{text}"
