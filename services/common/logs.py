"""Structured logging: one JSON object per line in files, readable lines on a terminal."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            doc.update(extra)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(level: str = "INFO", json_lines: bool = False, file: Path | None = None) -> None:
    """Configure the root logger once per process."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file)
        handler.setFormatter(JsonFormatter())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JsonFormatter()
            if json_lines
            else logging.Formatter("%(levelname)s %(name)s: %(message)s")
        )
    root.addHandler(handler)


class LogThrottle:
    """At most one log line per key per `interval_s`: for events an outsider can trigger at
    will (garbage on a topic), so that logging them cannot flood the log. `allow` says whether
    to log now and how many were dropped since the last line."""

    def __init__(self, interval_s: float = 10.0, max_keys: int = 64) -> None:
        self._interval_s = interval_s
        self._max_keys = max_keys
        self._next_at: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """(log it now?, lines dropped for this key since the last one logged)."""
        now = time.monotonic()
        if now < self._next_at.get(key, 0.0):
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False, 0
        if key not in self._next_at and len(self._next_at) >= self._max_keys:
            self._next_at.clear()  # keys are few and fixed in practice; never grow unbounded
            self._dropped.clear()
        self._next_at[key] = now + self._interval_s
        return True, self._dropped.pop(key, 0)
