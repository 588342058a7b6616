"""Schema references: what a request's `references` name, every schema they reach, and who
references a version (`/referencedby`, and the 42206 that stops deleting a referenced one).

They live apart from `registry.Registry`'s register/lookup/delete because they are a graph over
the stored versions with its own bounds (MAX_REFERENCES, transitively); the core only asks for
a request's references, their resolved texts, and whether a version may go. `Registry` inherits
this mixin and provides the state, its lock, `_version` and `schema_by_id`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from services.schema_registry import errors, schemas
from services.schema_registry.state import RegistryState, SchemaVersion

MAX_REFERENCES = 200
"""References one schema may pull in, transitively."""


class SchemaReferences:
    """Reading, resolving and guarding the references between stored schema versions."""

    state: RegistryState
    lock: threading.RLock

    if TYPE_CHECKING:

        def _version(self, subject: str, raw: str, deleted: bool) -> SchemaVersion: ...

        def schema_by_id(self, schema_id: int) -> SchemaVersion: ...

    def _references_of(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """`references` as sent: a list of {name, subject, version}; -1 means the latest."""
        raw = body.get("references")
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise errors.invalid_schema("'references' must be a list")
        if len(raw) > MAX_REFERENCES:
            raise errors.invalid_schema(f"more than {MAX_REFERENCES} references")
        out = [self._reference_of(ref) for ref in raw]
        if len({r["name"] for r in out}) != len(out):
            raise errors.invalid_schema("two references have the same name")
        return out

    def _reference_of(self, ref: Any) -> dict[str, Any]:
        """One reference as sent, checked, with version -1 turned into the latest number."""
        name = ref.get("name") if isinstance(ref, dict) else None
        subject = ref.get("subject") if isinstance(ref, dict) else None
        version = ref.get("version") if isinstance(ref, dict) else None
        if not (isinstance(name, str) and name and isinstance(subject, str) and subject):
            raise errors.invalid_schema("each reference needs a 'name' and a 'subject'")
        if not isinstance(version, int) or isinstance(version, bool):
            raise errors.invalid_schema(f"reference {name!r}: 'version' must be a number")
        if version == -1:
            version = self._reference_entry(name, subject, None).version
        return {"name": name, "subject": subject, "version": version}

    def _reference_entry(self, name: str, subject: str, version: int | None) -> SchemaVersion:
        with self.lock:
            every = self.state.all_versions(subject)
        live = [e for e in every if not e.deleted]
        found = live[-1:] if version is None else [e for e in every if e.version == version]
        if not found:
            where = f"{subject} version {'latest' if version is None else version}"
            raise errors.invalid_schema(f"reference {name!r}: no schema {where}")
        return found[0]

    def _resolve(self, references: list[dict[str, Any]]) -> schemas.References:
        """Every schema `references` reaches, as (name, text), each after its own references."""
        out: dict[str, str] = {}
        seen: set[tuple[str, int]] = set()
        todo: list[tuple[dict[str, Any], bool]] = [(r, False) for r in reversed(references)]
        while todo:
            ref, expanded = todo.pop()
            entry = self._reference_entry(ref["name"], ref["subject"], ref["version"])
            if expanded:
                out.setdefault(ref["name"], entry.schema)
                continue
            key = (entry.subject, entry.version)
            if key in seen:
                continue
            seen.add(key)
            if len(seen) > MAX_REFERENCES:
                raise errors.invalid_schema(f"more than {MAX_REFERENCES} references in all")
            todo.append((ref, True))
            todo.extend((r, False) for r in reversed(entry.references))
        return list(out.items())

    def referenced_by(self, subject: str, raw: str) -> list[int]:
        """GET /subjects/{subject}/versions/{version}/referencedby: ids of the schemas whose
        references name this version."""
        entry = self._version(subject, raw, deleted=True)
        with self.lock:
            found = self.state.referrers(subject, entry.version)
        return sorted({e.schema_id for e in found})

    def id_referenced_by(self, schema_id: int) -> list[int]:
        """Ids of the schemas that reference any version holding `schema_id`."""
        usages = self.id_usages(schema_id, deleted=True)
        with self.lock:
            found = [r for e in usages for r in self.state.referrers(e.subject, e.version)]
        return sorted({e.schema_id for e in found})

    def id_usages(self, schema_id: int, deleted: bool) -> list[SchemaVersion]:
        self.schema_by_id(schema_id)
        with self.lock:
            return [
                entry
                for subject in sorted(self.state.subjects)
                for entry in self.state.all_versions(subject)
                if entry.schema_id == schema_id and (deleted or not entry.deleted)
            ]

    def _check_unreferenced(self, entries: list[SchemaVersion]) -> None:
        """42206 when another live schema references one of `entries`."""
        with self.lock:
            for entry in entries:
                if self.state.referrers(entry.subject, entry.version):
                    raise errors.reference_exists(entry.subject, entry.version)
