"""A stateful operator's local key-value store, backed by a compacted changelog topic.

Kafka Streams keeps the state of an aggregation or a materialised table in a local store and
every change of it in a compacted *changelog* topic, written in the same transaction as the
query's output and its consumed offsets; on start the store is rebuilt from the changelog
before any record is processed. That is what makes a restart (even after kill -9) continue
from exactly the state its committed offsets describe. These stores do the same:

- the store lives in memory (a dict) and is read and written by the query's own thread;
  `get`/`put`/`delete`/`range`/`items` are the whole data API (`timestamp(key)`: the time an
  entry was put with, which pull queries read as the row's ROWTIME);
- every key changed since the last commit is *dirty*; `flush(producer)` writes each dirty key's
  current value (or a tombstone) to the changelog with the query's producer, inside its open
  transaction, just before the checkpoint commits; `committed()` then forgets the undo log;
- `rollback()` puts back the values of the last commit (a transaction that aborted, or a loop
  that restarts from its committed offsets, reads those records again);
- `restore(consumer)` reads the changelog from the start to its end (read_committed: aborted
  transactions' writes are skipped) into the dict.

Keys and values are plain JSON-able values (lists/tuples, strings, numbers, booleans, None,
dicts) or bytes; the changelog holds their JSON (bytes as `{"$b": base64}`), keys as compact JSON
so equal keys are equal bytes and compaction keeps the last. A store may have a retention: an
entry put with a `timestamp` older than the newest timestamp seen minus `retention_ms` is
dropped (and tombstoned in the changelog) by `expire()`, so windowed state stays bounded.

Topic names are ksqlDB's: `_confluent-ksql-<service id>query_<query id>-<store>-changelog`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

_MISSING = object()


def changelog_topic(service_id: str, query_id: str, store_name: str) -> str:
    """ksqlDB's changelog topic name for a query's store (the application id, then the store)."""
    return f"_confluent-ksql-{service_id}query_{query_id}-{store_name}-changelog"


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode()}
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    if isinstance(value, dict):
        if len(value) == 1 and "$b" in value:
            return base64.b64decode(value["$b"])
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _json_default(value: Any) -> Any:
    """What `json` cannot write itself: bytes as `{"$b": base64}`, anything else as text."""
    if isinstance(value, bytes):
        return _to_json(value)
    return str(value)


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_json_default)


def encode(value: Any) -> bytes:
    """The changelog bytes of a key or value (compact, key order kept).

    One C-level `json` pass (tuples are arrays, bytes and other types go through
    `_json_default`); a dict key `json` refuses (a tuple, …) takes the recursive `_to_json`,
    which writes every dict key as `str(key)`."""
    try:
        return _ENCODER.encode(value).encode()
    except TypeError:
        return json.dumps(_to_json(value), separators=(",", ":"), default=str).encode()


def decode(data: bytes) -> Any:
    """The key or value `encode` wrote (lists come back as tuples: keys stay hashable)."""
    return _from_json(json.loads(data))


_SCALARS = frozenset({str, int, float, bool, type(None), bytes})


def _hashable(key: Any) -> Any:
    """Keys as dict keys: lists as tuples, a STRUCT (dict) as a tuple of its (name, value)
    pairs in field order (what its changelog JSON reads back as, too)."""
    if type(key) is tuple and all(type(k) in _SCALARS for k in key):
        return key  # the usual key (group columns, window bounds): as it is
    if isinstance(key, list | tuple):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, dict):
        return tuple((k, _hashable(v)) for k, v in key.items())
    return key


class KeyValueStore:
    """One named store of one query (see the module docstring)."""

    def __init__(self, name: str, changelog: str, retention_ms: int | None = None) -> None:
        self.name = name
        self.changelog = changelog
        self.retention_ms = retention_ms
        self._data: dict[Any, Any] = {}
        self._times: dict[Any, int] = {}
        self._undo: dict[Any, tuple[Any, Any]] = {}
        """key → (value, timestamp) at the last commit (_MISSING when absent)"""
        self._flushed: set[Any] = set()
        self.max_timestamp = -1
        self._lock = threading.Lock()
        """held while the dict changes, so `items()` from another thread sees a consistent copy"""
        self.revive: Callable[[Any], Any] | None = None
        """applied to each value read back from the changelog (JSON → the owner's types)"""

    # ------------------------------------------------------------------ data API
    def get(self, key: Any, default: Any = None) -> Any:
        return self._data.get(_hashable(key), default)

    def timestamp(self, key: Any) -> int | None:
        """The timestamp `key` was last put with (None: absent or put without one)."""
        return self._times.get(_hashable(key))

    def __contains__(self, key: Any) -> bool:
        return _hashable(key) in self._data

    def __len__(self) -> int:
        return len(self._data)

    def put(self, key: Any, value: Any, timestamp: int | None = None) -> None:
        """Set `key` (None as a value deletes it). `timestamp` (ms) ages the entry out under a
        retention."""
        if value is None:
            self.delete(key)
            return
        key = _hashable(key)
        self._remember(key)
        with self._lock:
            self._data[key] = value
            if timestamp is not None:
                self._times[key] = timestamp
                self.max_timestamp = max(self.max_timestamp, timestamp)

    def delete(self, key: Any) -> None:
        key = _hashable(key)
        if key not in self._data:
            return
        self._remember(key)
        with self._lock:
            self._data.pop(key, None)
            self._times.pop(key, None)

    def items(self) -> list[tuple[Any, Any]]:
        """A copy of every (key, value), in key order when the keys are comparable."""
        with self._lock:
            pairs = list(self._data.items())
        with contextlib.suppress(TypeError):  # keys with nulls or mixed types: insertion order
            pairs.sort(key=lambda kv: kv[0])
        return pairs

    def range(self, low: Any = None, high: Any = None) -> Iterator[tuple[Any, Any]]:
        """(key, value) with low <= key <= high (None: unbounded), in key order."""
        lo = None if low is None else _hashable(low)
        hi = None if high is None else _hashable(high)
        for k, v in self.items():
            try:
                if (lo is not None and k < lo) or (hi is not None and k > hi):
                    continue
            except TypeError:
                continue
            yield k, v

    def expire(self, now: int | None = None) -> int:
        """Drop entries whose timestamp is older than `now` (default: the newest timestamp put)
        minus the retention; returns how many went."""
        if self.retention_ms is None:
            return 0
        limit = (self.max_timestamp if now is None else now) - self.retention_ms
        old = [k for k, t in list(self._times.items()) if t < limit]
        for k in old:
            self.delete(k)
        return len(old)

    # ------------------------------------------------------------------ transaction
    def _remember(self, key: Any) -> None:
        if key not in self._undo:
            self._undo[key] = (self._data.get(key, _MISSING), self._times.get(key))

    @property
    def dirty(self) -> int:
        return len(self._undo)

    def flush(self, send: Callable[[str, bytes, bytes | None], None]) -> int:
        """Write every key changed since the last commit to the changelog (`send(topic, key,
        value)`, a tombstone for a deleted key); call it with the transaction still open."""
        n = 0
        for key in self._undo:
            if key in self._flushed:
                continue
            value = self._data.get(key, _MISSING)
            send(self.changelog, encode(key), None if value is _MISSING else self._encode(key))
            self._flushed.add(key)
            n += 1
        return n

    def _encode(self, key: Any) -> bytes:
        t = self._times.get(key)
        value = self._data[key]
        return encode([value, t] if t is not None else [value])

    def committed(self) -> None:
        """What was flushed is durable: forget the undo log."""
        self._undo.clear()
        self._flushed.clear()

    def rollback(self) -> None:
        """Put back the values of the last commit."""
        with self._lock:
            for key, (value, t) in self._undo.items():
                if value is _MISSING:
                    self._data.pop(key, None)
                    self._times.pop(key, None)
                else:
                    self._data[key] = value
                    if t is not None:
                        self._times[key] = t
        self._undo.clear()
        self._flushed.clear()

    # ------------------------------------------------------------------ restore
    def load(self, key_bytes: bytes, value_bytes: bytes | None) -> None:
        """Apply one changelog record (restore)."""
        key = _hashable(decode(key_bytes))
        with self._lock:
            if value_bytes is None:
                self._data.pop(key, None)
                self._times.pop(key, None)
                return
            record = decode(value_bytes)
            value = _unfreeze(record[0])
            self._data[key] = value if self.revive is None else self.revive(value)
            if len(record) > 1 and record[1] is not None:
                self._times[key] = int(record[1])
                self.max_timestamp = max(self.max_timestamp, int(record[1]))


def _unfreeze(value: Any) -> Any:
    """Values come back with lists as tuples; accumulators expect lists."""
    if isinstance(value, tuple):
        return [_unfreeze(v) for v in value]
    if isinstance(value, dict):
        return {k: _unfreeze(v) for k, v in value.items()}
    return value


__all__ = ["KeyValueStore", "changelog_topic", "decode", "encode"]
