"""Subject and global settings of the registry: the compatibility level (`/config`) and the
mode (`/mode`).

They live apart from `registry.Registry`'s schemas because they are another concern: small
records beside the schemas in `_schemas`, read by every write (is this subject writable, which
level applies?) but changed only by the config and mode endpoints. `Registry` inherits this
mixin and provides what it needs: the state, its locks and `_write`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from services.schema_registry import compatibility, errors
from services.schema_registry.state import Record, RegistryState, config_key, mode_key

MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT")
DEFAULT_MODE = "READWRITE"


class SubjectSettings:
    """Compatibility levels and modes, per subject with a global fallback (subject None)."""

    state: RegistryState
    lock: threading.RLock
    write_lock: threading.Lock

    if TYPE_CHECKING:

        def _write(self, records: list[Record]) -> None: ...

    def level(self, subject: str | None) -> str:
        with self.lock:
            configs = self.state.configs
            found = configs.get(subject) if subject is not None else None
            return found or configs.get(None) or compatibility.DEFAULT_LEVEL

    def _mode(self, subject: str | None) -> str:
        with self.lock:
            modes = self.state.modes
            found = modes.get(subject) if subject is not None else None
            return found or modes.get(None) or DEFAULT_MODE

    def _check_writable(self, subject: str | None) -> None:
        if self._mode(subject) in ("READONLY", "READONLY_OVERRIDE"):
            raise errors.operation_not_permitted(f"Subject {subject} is in read-only mode")

    def _settings_records(self, subject: str) -> list[Record]:
        """Tombstones for the subject's own config and mode (its permanent delete)."""
        records: list[Record] = []
        with self.lock:
            if subject in self.state.configs:
                records.append((config_key(subject), None))
            if subject in self.state.modes:
                records.append((mode_key(subject), None))
        return records

    def _check_own(
        self,
        table: dict[str | None, str],
        subject: str | None,
        default_to_global: bool,
        missing: Callable[[str], errors.RegistryError],
    ) -> None:
        """`missing(subject)` when a subject has no setting of its own in `table` and the
        caller did not ask to fall back to the global one."""
        with self.lock:
            configured = subject in table
        if subject is not None and not configured and not default_to_global:
            raise missing(subject)

    # -- config -------------------------------------------------------------------------------

    def get_config(self, subject: str | None, default_to_global: bool) -> dict[str, Any]:
        self._check_own(
            self.state.configs, subject, default_to_global, errors.subject_config_not_found
        )
        return {"compatibilityLevel": self.level(subject)}

    def put_config(self, subject: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if "compatibility" not in body and "compatibilityLevel" not in body:
            raise errors.invalid_compatibility_level(None)
        level = compatibility.parse_level(body.get("compatibility", body.get("compatibilityLevel")))
        with self.write_lock:
            self._write([(config_key(subject), {"compatibilityLevel": level})])
        return {"compatibility": level}

    def delete_config(self, subject: str | None) -> dict[str, Any]:
        with self.write_lock:
            with self.lock:
                old = self.state.configs.get(subject)
            if old is None:
                if subject is not None:
                    raise errors.subject_config_not_found(subject)
                return {"compatibilityLevel": compatibility.DEFAULT_LEVEL}
            self._write([(config_key(subject), None)])
            return {"compatibilityLevel": old}

    # -- mode ---------------------------------------------------------------------------------

    def get_mode(self, subject: str | None, default_to_global: bool) -> dict[str, Any]:
        self._check_own(self.state.modes, subject, default_to_global, errors.subject_mode_not_found)
        return {"mode": self._mode(subject)}

    def put_mode(self, subject: str | None, body: dict[str, Any]) -> dict[str, Any]:
        mode = body.get("mode")
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise errors.invalid_mode(mode)
        with self.write_lock:
            self._write([(mode_key(subject), {"mode": mode.upper()})])
        return {"mode": mode.upper()}

    def delete_mode(self, subject: str) -> dict[str, Any]:
        with self.write_lock:
            with self.lock:
                old = self.state.modes.get(subject)
            if old is None:
                raise errors.subject_mode_not_found(subject)
            self._write([(mode_key(subject), None)])
            return {"mode": old}
