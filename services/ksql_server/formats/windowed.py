"""Windowed keys on the wire, exactly as ksqlDB and Kafka Streams write them.

A windowed table's key is its inner key (serialised by the key format as usual) followed by the
window, as Kafka Streams' `WindowedSerdes` do:

- time windows (TUMBLING, HOPPING): inner key + 8-byte big-endian window *start*
  (`TimeWindowedSerializer`); the end is not on the wire, so a reader needs the window size
  (`WITH (WINDOW_TYPE='TUMBLING', WINDOW_SIZE='30 SECONDS')`) to know it;
- session windows: inner key + 8-byte big-endian *end* + 8-byte big-endian *start*
  (`SessionWindowedSerializer`).

`WindowInfo` is a source's window (type and size), read from the `WITH` clause of CREATE
STREAM/TABLE over a windowed topic or set by a windowed aggregation; `wrap_key_serializer`,
`wrap_key_deserializer` and `flat_key_deserializer` put a key format's serde inside the
windowed framing. Pure, Kafka-free.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services.ksql_server.errors import KsqlError

_LONG = struct.Struct(">q")
_UNITS_MS = {
    "MILLISECOND": 1,
    "SECOND": 1000,
    "MINUTE": 60_000,
    "HOUR": 3_600_000,
    "DAY": 86_400_000,
}
WINDOW_TYPES = ("TUMBLING", "HOPPING", "SESSION")


@dataclass(frozen=True)
class WindowInfo:
    """A source's window: its type and (time windows) size in ms."""

    type: str  # TUMBLING | HOPPING | SESSION
    size_ms: int | None = None

    @property
    def is_session(self) -> bool:
        return self.type == "SESSION"

    def describe(self) -> str:
        """How DESCRIBE and the REST `windowType` name it."""
        return self.type


def parse_duration(text: str) -> int:
    """ksqlDB's `'<n> <unit>'` duration (`'30 SECONDS'`, `'1 hour'`) in milliseconds."""
    m = re.fullmatch(r"\s*(\d+)\s+([A-Za-z]+)\s*", text)
    if not m:
        raise KsqlError(f"Invalid duration: '{text}'. Expected '<number> <unit>'")
    unit = m.group(2).upper()
    base = unit[:-1] if unit.endswith("S") else unit
    if base not in _UNITS_MS:
        raise KsqlError(f"Invalid duration: '{text}'. Unknown time unit: '{unit}'")
    return int(m.group(1)) * _UNITS_MS[base]


def window_from_properties(props: Mapping[str, Any]) -> WindowInfo | None:
    """The `WINDOW_TYPE` / `WINDOW_SIZE` properties of a CREATE statement (upper-case keys)."""
    wtype = props.get("WINDOW_TYPE")
    size = props.get("WINDOW_SIZE")
    kind = str(wtype).upper() if wtype is not None else "SESSION"
    if kind not in WINDOW_TYPES:
        raise KsqlError(
            f"Invalid value {wtype} for property WINDOW_TYPE: "
            "String must be one of: SESSION, HOPPING, TUMBLING, null"
        )
    if kind == "SESSION":
        if size is not None:
            raise KsqlError("'WINDOW_SIZE' should not be set for SESSION windows.")
        return None if wtype is None else WindowInfo(kind)
    if size is None:
        raise KsqlError(
            f"{kind} windows require 'WINDOW_SIZE' to be provided in the WITH clause. "
            "For example: 'WINDOW_SIZE'='10 SECONDS'"
        )
    try:
        return WindowInfo(kind, parse_duration(str(size)))
    except KsqlError as exc:
        raise KsqlError(f"Configuration WINDOW_SIZE is invalid: {exc}") from exc


# ---------------------------------------------------------------------- bytes
def time_windowed(inner: bytes, start: int) -> bytes:
    return inner + _LONG.pack(start)


def session_windowed(inner: bytes, start: int, end: int) -> bytes:
    return inner + _LONG.pack(end) + _LONG.pack(start)


def split_windowed(data: bytes, window: WindowInfo) -> tuple[bytes, int, int]:
    """(inner key bytes, window start, window end) of a windowed key."""
    if window.is_session:
        if len(data) < 16:
            raise KsqlError("Session-windowed key too short: expected the window's end and start")
        end = _LONG.unpack_from(data, len(data) - 16)[0]
        start = _LONG.unpack_from(data, len(data) - 8)[0]
        return data[:-16], start, end
    if len(data) < 8:
        raise KsqlError("Time-windowed key too short: expected the window start")
    start = _LONG.unpack_from(data, len(data) - 8)[0]
    return data[:-8], start, start + (window.size_ms or 0)


def frame(inner: bytes, window: WindowInfo, start: int, end: int) -> bytes:
    if window.is_session:
        return session_windowed(inner, start, end)
    return time_windowed(inner, start)


# ---------------------------------------------------------------------- serdes
KeySerializer = Callable[[list[Any]], bytes | None]
KeyDeserializer = Callable[[bytes | None], list[Any] | None]


def wrap_key_serializer(
    inner: KeySerializer, window: WindowInfo
) -> Callable[[list[Any], int, int], bytes]:
    """A serializer of (key columns, window start, window end) around the key format's."""

    def serialize(key: list[Any], start: int, end: int) -> bytes:
        return frame(inner(key) or b"", window, start, end)

    return serialize


def wrap_key_deserializer(
    inner: KeyDeserializer, window: WindowInfo
) -> Callable[[bytes | None], tuple[list[Any] | None, int, int] | None]:
    """A deserializer of windowed keys: (key columns, window start, window end)."""

    def deserialize(data: bytes | None) -> tuple[list[Any] | None, int, int] | None:
        if data is None:
            return None
        key_bytes, start, end = split_windowed(data, window)
        return inner(key_bytes), start, end

    return deserialize


def flat_key_deserializer(
    inner: KeyDeserializer, window: WindowInfo, n_keys: int
) -> KeyDeserializer:
    """A windowed source's key as row columns: the key columns, then window start and end (a
    windowed source's row layout, planner/windowing.py)."""

    def deserialize(data: bytes | None) -> list[Any] | None:
        if data is None:
            return None
        key_bytes, start, end = split_windowed(data, window)
        keys = inner(key_bytes)
        return [*(keys if keys is not None else [None] * n_keys), start, end]

    return deserialize
