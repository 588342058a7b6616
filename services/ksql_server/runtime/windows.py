"""Windowed aggregation: window assignment, grace, retention, session merging and EMIT FINAL.

This is Kafka Streams' windowed aggregation as ksqlDB configures it, as a pure state machine
over a key-value store (the query's changelog-backed store, or a dict in tests):

- **TUMBLING / HOPPING** (`TimeWindows`): a record at `ts` belongs to every window
  `[start, start + size)` with `start` a multiple of the advance and `start <= ts`. Stream time is
  the largest timestamp seen; a window whose end is at or before `stream time - grace` is
  closed, and a record for it is dropped (Kafka Streams' "Skipping record for expired window").
  An update is emitted with the largest record timestamp of the window.
- **SESSION** (`SessionWindows`): a record at `ts` opens `[ts, ts]` and merges every session of
  its key that ends at or after `ts - gap` and starts at or before `ts + gap`; the merged
  accumulator is `merge` of the old ones, then the record is added. Each merged-away session is
  retracted (a tombstone at its end time) before the merged one is emitted at its end time. A
  session ending before `stream time - grace - gap` is closed.
- **GRACE PERIOD** defaults to `max(24 h - size, 0)` (ksqlDB's default while GRACE is optional),
  and to 0 under EMIT FINAL;
  **RETENTION** defaults to size (gap) + grace. State older than `stream time - retention` is
  deleted, so the store stays bounded by retention.
- **EMIT FINAL** (`EmitStrategy.onWindowClose`): nothing is emitted on update; when stream time
  advances the window-close time, every window that closed since the last emission is emitted
  once (time windows in start order, sessions in end order), at most once per emit interval of
  wall-clock time (`__emit.interval.ms.kstreams.windowed.aggregation__`, default 1 s). Which
  time windows are still visible follows Kafka Streams' time-ordered store: windows starting
  before `last window start put - retention` are gone.

Accumulators are opaque here: the caller gives `initial`, `fold` (add one record's arguments)
and `merge`, and `encode`/`decode` for the store. Store keys are `(*group, start, end)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_GRACE_BASE_MS = 24 * 60 * 60 * 1000
EMIT_INTERVAL_PROP = "__emit.interval.ms.kstreams.windowed.aggregation__"
DEFAULT_EMIT_INTERVAL_MS = 1000
META_KEY = ("__window_meta__",)


class Store(Protocol):
    """What this module needs of a state store (state.KeyValueStore has it)."""

    def get(self, key: Any, default: Any = None) -> Any: ...

    def put(self, key: Any, value: Any, timestamp: int | None = None) -> None: ...

    def delete(self, key: Any) -> None: ...

    def items(self) -> list[tuple[Any, Any]]: ...


@dataclass(frozen=True)
class WindowDef:
    """A query's window: kind, sizes in ms, grace and retention resolved to ksqlDB's defaults."""

    kind: str  # TUMBLING | HOPPING | SESSION
    size_ms: int  # the gap of a SESSION window
    advance_ms: int
    grace_ms: int
    retention_ms: int
    emit_final: bool = False

    @classmethod
    def of(
        cls,
        kind: str,
        size_ms: int,
        advance_ms: int | None = None,
        grace_ms: int | None = None,
        retention_ms: int | None = None,
        emit_final: bool = False,
    ) -> WindowDef:
        kind = kind.upper()
        advance = size_ms if kind != "HOPPING" or advance_ms is None else advance_ms
        if grace_ms is None:  # EMIT FINAL: no grace unless given (ksqlDB's RewrittenAnalysis)
            grace_ms = 0 if emit_final else max(DEFAULT_GRACE_BASE_MS - size_ms, 0)
        grace = grace_ms
        retention = size_ms + grace if retention_ms is None else retention_ms
        return cls(kind, size_ms, advance, grace, retention, emit_final)

    @classmethod
    def from_spec(cls, spec: Any, emit_final: bool = False) -> WindowDef:
        """From the parser's `WindowSpec` (all durations in ms)."""
        return cls.of(
            spec.kind,
            spec.size_ms,
            spec.advance_ms,
            spec.grace_ms,
            spec.retention_ms,
            emit_final,
        )

    @property
    def is_session(self) -> bool:
        return self.kind == "SESSION"

    def windows_for(self, ts: int) -> list[tuple[int, int]]:
        """The time windows `[start, end)` holding `ts`, in start order (Kafka's `windowsFor`)."""
        size, advance = self.size_ms, self.advance_ms
        start = (max(0, ts - size + advance) // advance) * advance
        out = []
        while start <= ts:
            out.append((start, start + size))
            start += advance
        return out

    def close_time(self, stream_time: int) -> int:
        """Windows ending before (sessions) / at or before (time windows) this are closed."""
        if self.is_session:
            return stream_time - self.grace_ms - self.size_ms
        return stream_time - self.grace_ms


@dataclass
class Change:
    """One output of the windowed aggregation: a window's new accumulators, or None (retract).

    `old_passed`: whether the window's previous value passed the caller's `passes` (HAVING);
    ksqlDB's table filter forwards a filtered-out value as a tombstone only then."""

    group: tuple[Any, ...]
    start: int
    end: int
    accs: Any
    timestamp: int
    old_passed: bool = True


@dataclass
class _Meta:
    stream_time: int = -1
    last_emit_close: int | None = None
    last_start_put: int = -1  # the time-ordered store's "observed stream time"


@dataclass
class WindowedAggregation:
    """The windowed state machine of one query (one store; groups are tuples)."""

    window: WindowDef
    store: Store
    initial: Callable[[], Any]
    fold: Callable[[Any, Any], Any]  # (accs, record arguments) -> accs
    merge: Callable[[Any, Any], Any]
    encode: Callable[[Any], Any] = lambda accs: accs
    decode: Callable[[Any], Any] = lambda state: state
    properties: Mapping[str, Any] = field(default_factory=dict)
    # (window key, accumulators) -> the value passes HAVING; judged on a window's old value
    # before a record folds into it (a fold may change accumulators in place)
    passes: Callable[[tuple[Any, ...], Any], bool] | None = None
    clock: Callable[[], float] = time.monotonic
    _meta: _Meta | None = None
    _next_emit: float = 0.0

    # ------------------------------------------------------------------ state
    @property
    def meta(self) -> _Meta:
        if self._meta is None:
            stored = self.store.get(META_KEY)
            self._meta = _Meta(*stored) if stored else _Meta()
        return self._meta

    def _save_meta(self) -> None:
        m = self.meta
        self.store.put(META_KEY, [m.stream_time, m.last_emit_close, m.last_start_put])

    def _load(self, key: tuple[Any, ...]) -> tuple[Any, int] | None:
        stored = self.store.get(key)
        if stored is None:
            return None
        return self.decode(stored[0]), stored[1]

    def _passed(self, key: tuple[Any, ...], old: tuple[Any, int] | None) -> bool:
        """Whether a window's old value (None: it had none) passed `passes`."""
        if old is None:
            return False
        return self.passes is None or self.passes(key, old[0])

    def _put(self, key: tuple[Any, ...], accs: Any, ts: int) -> None:
        self.store.put(key, [self.encode(accs), ts], timestamp=key[-2])

    def windows(self) -> list[tuple[tuple[Any, ...], int, int, Any, int]]:
        """Every stored window: (group, start, end, accumulators, timestamp)."""
        out = []
        for key, stored in self.store.items():
            if tuple(key) == META_KEY:
                continue
            key = tuple(key)
            out.append((key[:-2], key[-2], key[-1], self.decode(stored[0]), stored[1]))
        return out

    # ------------------------------------------------------------------ records
    def add(self, group: tuple[Any, ...], args: Any, ts: int) -> list[Change]:
        """Fold one record in; the changes to emit (none under EMIT FINAL until windows close)."""
        self._meta = None  # read from the store: a rolled-back store rolls the stream time back
        meta = self.meta
        meta.stream_time = max(meta.stream_time, ts)
        close = self.window.close_time(meta.stream_time)
        if self.window.is_session:
            changes = self._add_session(group, args, ts, close)
        else:
            changes = self._add_time(group, args, ts, close)
        if self.window.emit_final:
            changes = self._emit_closed(close)
        self._save_meta()
        return changes

    def _add_time(self, group: tuple[Any, ...], args: Any, ts: int, close: int) -> list[Change]:
        changes = []
        for start, end in self.window.windows_for(ts):
            if end <= close:
                continue  # late: the window closed (grace passed)
            key = (*group, start, end)
            old = self._load(key)
            old_passed = self._passed(key, old)
            accs = self.fold(self.initial() if old is None else old[0], args)
            new_ts = ts if old is None else max(ts, old[1])
            self._put(key, accs, new_ts)
            self.meta.last_start_put = max(self.meta.last_start_put, start)
            changes.append(Change(group, start, end, accs, new_ts, old_passed))
        return changes

    def _sessions(self, group: tuple[Any, ...]) -> list[tuple[int, int, Any]]:
        """The group's sessions as (end, start, stored), in Kafka's (end, start) order."""
        n = len(group)
        found = []
        for key, stored in self.store.items():
            key = tuple(key)
            if key != META_KEY and len(key) == n + 2 and key[:n] == group:
                found.append((key[-1], key[-2], stored))
        found.sort(key=lambda s: (s[0], s[1]))
        return found

    def _add_session(self, group: tuple[Any, ...], args: Any, ts: int, close: int) -> list[Change]:
        gap = self.window.size_ms
        start, end = ts, ts
        accs = self.initial()
        merged = []
        # a session past retention is gone even before this batch's `expire` deletes it (Kafka
        # Streams' store fetches from `stream time - retention + 1`): it merges with nothing
        horizon = self.meta.stream_time - self.window.retention_ms + 1
        for s_end, s_start, stored in self._sessions(group):
            if s_end >= max(ts - gap, horizon) and s_start <= ts + gap:
                old = self.decode(stored[0])
                merged.append((s_start, s_end, self._passed((*group, s_start, s_end), (old, 0))))
                accs = self.merge(accs, old)
                start, end = min(start, s_start), max(end, s_end)
        if end < close:
            return []  # late: the merged session already closed
        changes = []
        if (start, end) != (ts, ts):
            for s_start, s_end, passed in merged:
                self.store.delete((*group, s_start, s_end))
                changes.append(Change(group, s_start, s_end, None, s_end, passed))
        accs = self.fold(accs, args)
        self.store.put((*group, start, end), [self.encode(accs), end], timestamp=end)
        # a merged session is a new key (no old value; the merged ones were retracted above);
        # a record at an existing one-point session's time updates it in place
        old_passed = (start, end) == (ts, ts) and any(m[2] for m in merged)
        changes.append(Change(group, start, end, accs, end, old_passed))
        return changes

    # ------------------------------------------------------------------ EMIT FINAL
    def _emit_closed(self, close: int) -> list[Change]:
        meta = self.meta
        if meta.last_emit_close is not None and meta.last_emit_close >= close:
            return []
        now = self.clock() * 1000
        if now < self._next_emit:
            return []
        self._next_emit = now + emit_interval(self.properties)
        if self.window.is_session:
            return self._emit_sessions(close)
        return self._emit_windows(close)

    def _emit_windows(self, close: int) -> list[Change]:
        meta = self.meta
        upper = close - self.window.size_ms  # windows starting at or before this have closed
        if upper < 0:
            return []
        if meta.last_emit_close is None:
            lower = 0
        else:
            lower = max(0, meta.last_emit_close - self.window.size_ms) + 1
        # Kafka Streams' time-ordered store no longer sees windows older than its retention
        lower = max(lower, meta.last_start_put - self.window.retention_ms)
        ready = [w for w in self.windows() if lower <= w[1] <= upper]
        ready.sort(key=lambda w: w[1])
        meta.last_emit_close = close
        return [Change(g, s, e, accs, ts) for g, s, e, accs, ts in ready]

    def _emit_sessions(self, close: int) -> list[Change]:
        meta = self.meta
        upper = close - 1
        if upper < 0:
            return []
        lower = max(0, meta.last_emit_close if meta.last_emit_close is not None else 0)
        if upper < lower:
            return []
        ready = [w for w in self.windows() if lower <= w[2] <= upper]
        ready.sort(key=lambda w: (w[2], w[1]))
        meta.last_emit_close = close
        return [Change(g, s, e, accs, e) for g, s, e, accs, _ts in ready]

    # ------------------------------------------------------------------ retention
    def expire(self) -> None:
        """Delete windows past retention (by start; sessions by end) so state stays bounded.

        Called once per batch, not per record: a scan of every key per record made windowed
        aggregations ten times slower than a pass-through. Deferring it to the batch's end is
        exact: a time window past retention is older than the close time, so no record accepted
        in the batch can update it; a session past retention can still be within a record's gap,
        so `_add_session` leaves those out itself; emission bounds its windows by retention."""
        horizon = self.meta.stream_time - self.window.retention_ms
        edge_at = -1 if self.window.is_session else -2
        expired = [
            key
            for key, _stored in self.store.items()
            if tuple(key) != META_KEY and key[edge_at] < horizon
        ]
        for key in expired:
            self.store.delete(tuple(key))

    def visible(self) -> list[tuple[tuple[Any, ...], int, int, Any, int]]:
        """The windows a pull query sees: not past retention (Kafka's `actualFrom`)."""
        horizon = self.meta.stream_time - self.window.retention_ms + 1
        return [w for w in self.windows() if (w[2] if self.window.is_session else w[1]) >= horizon]


def emit_interval(props: Mapping[str, Any]) -> int:
    """The EMIT FINAL emit interval from query properties (`ksql.streams.` prefix allowed)."""
    for name in (EMIT_INTERVAL_PROP, "ksql.streams." + EMIT_INTERVAL_PROP):
        if name in props:
            return int(props[name])
    return DEFAULT_EMIT_INTERVAL_MS
