"""Announcements of model versions on `fraudstream_models`: writing one for a verified
version, and parsing one read off the topic, which is untrusted (bounded size, strict types, a
valid version name; errors never echo the input).

It lives apart from `registry.ModelRegistry`'s version storage because it is the registry's
only Kafka side, and the scorer needs the parser without the storage. `ModelRegistry` inherits
the `Announcer` mixin and provides `models_dir`, `resolve`, `metrics`, `threshold_info`,
`manifest_digest` and `read_verified`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.errors import ServiceUnavailable
from services.common.json_limits import loads_bounded
from services.common.topics import MODELS_TOPIC
from services.model_registry.api import (
    MODEL_NAME,
    InvalidVersion,
    ModelAnnouncement,
    validate_version,
    version_dir,
)
from services.model_registry.errors import ModelRegistryError
from services.model_registry.integrity import is_digest

MAX_ANNOUNCEMENT_BYTES = 4096
"""An announcement is a few hundred bytes; anything far larger is refused unparsed."""
MAX_ANNOUNCEMENT_DEPTH = 2
"""An announcement is one flat object; a little room for a future nested field."""


class BadAnnouncement(ModelRegistryError, ValueError):
    """A record on `fraudstream_models` that is not a well-formed announcement; `code` says
    which rule it broke (`too_large`, `not_json`, `bad_fields`, `bad_version`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


def utc_now_iso() -> str:
    """Now in UTC as an announcement's (and metrics.json's) `created_at`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def announcement_to_json(announcement: ModelAnnouncement) -> bytes:
    return json.dumps(asdict(announcement)).encode()


def announcement_from_json(value: bytes | str | None) -> ModelAnnouncement:
    """Parse an untrusted event from `fraudstream_models`: bounded size, strict types, a valid
    version name. Raises BadAnnouncement (a ValueError) whose message never echoes the input."""
    raw = value.encode() if isinstance(value, str) else (value or b"")
    if len(raw) > MAX_ANNOUNCEMENT_BYTES:
        raise BadAnnouncement("too_large", f"{len(raw)} bytes (limit {MAX_ANNOUNCEMENT_BYTES})")
    try:
        doc = loads_bounded(raw, MAX_ANNOUNCEMENT_DEPTH)
    except ValueError as exc:  # JsonTooDeep and UnicodeDecodeError are ValueErrors
        raise BadAnnouncement("not_json", "not a JSON document") from exc
    if not isinstance(doc, dict):
        raise BadAnnouncement("bad_fields", "not a JSON object")
    version = _text_field(doc, "version", 256)
    try:
        validate_version(version)
    except InvalidVersion as exc:
        raise BadAnnouncement("bad_version", str(exc)) from exc
    return ModelAnnouncement(
        model=_text_field(doc, "model", 128),
        version=version,
        path=_text_field(doc, "path", 1024),
        threshold=_number_field(doc, "threshold"),
        created_at=_text_field(doc, "created_at", 64),
        digest=_digest_field(doc),
    )


def _text_field(doc: dict[str, Any], name: str, max_length: int) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or len(value) > max_length:
        raise BadAnnouncement("bad_fields", f"'{name}' must be a string of <= {max_length} chars")
    return value


def _number_field(doc: dict[str, Any], name: str) -> float:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadAnnouncement("bad_fields", f"'{name}' must be a number")
    try:
        number = float(value)
    except OverflowError as exc:
        raise BadAnnouncement("bad_fields", f"'{name}' is out of range") from exc
    if not math.isfinite(number):
        raise BadAnnouncement("bad_fields", f"'{name}' must be finite")
    return number


def _digest_field(doc: dict[str, Any]) -> str | None:
    value = doc.get("digest")
    if value is None:
        return None
    if not is_digest(value):
        raise BadAnnouncement("bad_fields", "'digest' must be 64 lower-case hex digits")
    return str(value)


class Announcer:
    """Publishes a verified version's announcement, keyed by the model name."""

    models_dir: Path

    if TYPE_CHECKING:

        def resolve(self, version: str) -> str: ...

        def metrics(self, version: str) -> dict[str, Any]: ...

        def threshold_info(self, version: str) -> dict[str, Any]: ...

        def manifest_digest(self, version: str) -> str | None: ...

        def read_verified(self, version: str, digest: str | None = None) -> dict[str, bytes]: ...

    def announcement(self, version: str) -> ModelAnnouncement:
        version = self.resolve(version)
        threshold = self.threshold_info(version)
        path = version_dir(self.models_dir, version)
        return ModelAnnouncement(
            model=MODEL_NAME,
            version=version,
            path=str(path),
            threshold=float(threshold["threshold"]),
            created_at=str(self.metrics(version).get("created_at", utc_now_iso())),
            digest=self.manifest_digest(version),
        )

    def announce(
        self,
        version: str,
        bootstrap: str | None = None,
        timeout: float = 15.0,
        topic: str = MODELS_TOPIC,
    ) -> ModelAnnouncement:
        """Publish the version's event on `fraudstream_models`, keyed by the model name (only a
        verified version: scorers act on nothing else)."""
        from services.common.kafka import ensure_topic, make_producer

        self.read_verified(version)
        event = self.announcement(version)
        try:
            ensure_topic(topic, bootstrap=bootstrap, timeout=timeout)
        except Exception as exc:
            raise ServiceUnavailable(f"cannot announce model {version}: {exc}") from exc
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        producer = make_producer(bootstrap)
        producer.produce(
            topic,
            key=MODEL_NAME.encode(),
            value=announcement_to_json(event),
            on_delivery=on_delivery,
        )
        if producer.flush(timeout) > 0 or errors:
            reason = errors[0] if errors else f"not delivered within {timeout:.0f}s"
            raise ServiceUnavailable(f"cannot announce model {version} on {topic}: {reason}")
        return event
