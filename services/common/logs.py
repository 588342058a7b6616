"""Structured logging: one JSON object per line in files, readable lines on a terminal.

Log files are rotated by size with a bounded number of old files, so a long-running server
(or a client flooding it with failing statements) cannot fill the disk. The embedded stack
starts servers with stdout/stderr appended to `.fraudstream/logs/<name>.log` (see
`process.py`); `setup_logging()` notices that its stderr is such a file and rotates that very
file, pointing the process's stdout and stderr at the new file after each rollover so that
output from outside `logging` (a native library, an uncaught thread exception) rotates too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import sys
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

LOG_MAX_BYTES = int(os.environ.get("FRAUDSTREAM_LOG_MAX_BYTES", str(20 * 1024 * 1024)))
"""A log file is rotated when it would grow past this size (bytes)."""
LOG_BACKUPS = int(os.environ.get("FRAUDSTREAM_LOG_BACKUPS", "5"))
"""Rotated files kept (`<log>.1` … `<log>.N`); older ones are deleted."""


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


class RotatingOutputHandler(RotatingFileHandler):
    """A size-rotated log file that is also this process's stdout/stderr (`redirect_fds`).

    After each rollover the given descriptors are pointed at the new file, so nothing keeps
    writing into the renamed one."""

    def __init__(
        self,
        path: Path,
        max_bytes: int = LOG_MAX_BYTES,
        backups: int = LOG_BACKUPS,
        redirect_fds: tuple[int, ...] = (),
    ) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.redirect_fds = redirect_fds

    def doRollover(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        super().doRollover()
        if self.stream is not None:
            for fd in self.redirect_fds:
                os.dup2(self.stream.fileno(), fd)

    def shouldRollover(self, record: logging.LogRecord) -> int:
        # output written to the shared descriptors bypasses our stream's position
        if self.stream is not None and self.maxBytes > 0:
            self.stream.flush()
            if os.fstat(self.stream.fileno()).st_size >= self.maxBytes:
                return 1
        return super().shouldRollover(record)


def output_log_file(fd: int = 2) -> Path | None:
    """The regular file `fd` appends to (a server started by the stack), or None (a terminal,
    a pipe, or a platform without /proc)."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None
    return target if target.is_absolute() and target.exists() else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, theirs = os.fstat(fd), path.stat()
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def setup_logging(level: str = "INFO", json_lines: bool = False, file: Path | None = None) -> None:
    """Configure the root logger once per process."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    handler: logging.Handler
    output = output_log_file() if file is None else None
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingOutputHandler(file)
        handler.setFormatter(JsonFormatter())
    elif output is not None:
        fds = tuple(fd for fd in (1, 2) if _same_file(fd, output))
        handler = RotatingOutputHandler(output, redirect_fds=fds)
        handler.setFormatter(
            JsonFormatter()
            if json_lines
            else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
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
