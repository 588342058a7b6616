"""Join operators: the state and the rules of ksqlDB's (Kafka Streams') joins, Kafka-free.

Each operator takes one side's record at a time (`LEFT`/`RIGHT`, join key, side row, record
time) in the order the query reads them and returns the joined results: `(key, left row or
None, right row or None, timestamp)`, or `(key, None, None, timestamp)` for a table join's
tombstone. Knowing nothing of Kafka keeps them testable record by record against ksqlDB's
documented behaviour, and lets the query loop (`runtime/join_query.py`) stay a plain reader.

- stream-stream (`StreamStreamJoin`): both sides buffered by key and time, a record joins the
  other side's records within `WITHIN (before, after)`; buffers are trimmed to the window plus
  the grace period, so state stays bounded by the window. Outer results follow ksqlDB: without
  `GRACE PERIOD` an unmatched record is emitted with nulls at once (the legacy, eager
  semantics); with it, only once the window has closed and only if nothing matched.
- stream-table (`StreamTableJoin`): a stream record looks its key up in the table side's
  latest rows; table updates emit nothing.
- table-table (`TableTableJoin`): an update on either side emits the new joined row, or a
  tombstone, as Kafka Streams' KTable-KTable join processors forward them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

LEFT, RIGHT = 0, 1

DEFAULT_GRACE_MS = 24 * 3600 * 1000
"""Kafka Streams' grace for a join window declared without one (the legacy semantics)."""

Row = list[Any]
Joined = tuple[Any, Row | None, Row | None, int]


class JoinKey:
    """A join key usable in a dict: ARRAY, MAP and STRUCT keys compare by value."""

    __slots__ = ("frozen", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.frozen = _freeze(value)

    def __hash__(self) -> int:
        return hash(self.frozen)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JoinKey) and self.frozen == other.frozen


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return ("a", tuple(_freeze(x) for x in v))
    if isinstance(v, dict):
        return ("m", tuple(sorted((str(k), _freeze(x)) for k, x in v.items())))
    return v


def join_key(value: Any) -> Any:
    """`value` as an operator key: itself when hashable, else wrapped (None stays None)."""
    return JoinKey(value) if isinstance(value, (list, dict)) else value


def key_value(key: Any) -> Any:
    return key.value if isinstance(key, JoinKey) else key


def keeps_unmatched(kind: str, side: int) -> bool:
    """Whether a join of `kind` emits a row of `side` that matched nothing (with nulls)."""
    return (
        kind == "FULL" or (kind == "LEFT" and side == LEFT) or (kind == "RIGHT" and side == RIGHT)
    )


@dataclass
class _Buffered:
    ts: int
    seq: int
    row: Row
    matched: bool = False


@dataclass
class StreamStreamJoin:
    """`a [INNER|LEFT|RIGHT|FULL] JOIN b WITHIN (before, after) [GRACE PERIOD g]`."""

    kind: str
    before_ms: int
    after_ms: int
    grace_ms: int | None = None
    stream_time: int = -(2**63)
    _buffers: tuple[dict[Any, list[_Buffered]], dict[Any, list[_Buffered]]] = field(
        default_factory=lambda: ({}, {})
    )
    _pending: list[tuple[int, int, int, Any, _Buffered]] = field(default_factory=list)
    """Unmatched outer records waiting for their window to close: (close time, seq, side,
    key, record), kept sorted."""
    _seq: int = 0
    _side_time: list[int] = field(default_factory=lambda: [-(2**63), -(2**63)])

    @property
    def grace(self) -> int:
        return DEFAULT_GRACE_MS if self.grace_ms is None else self.grace_ms

    @property
    def eager(self) -> bool:
        """No GRACE PERIOD: outer results are emitted at once (ksqlDB's legacy semantics)."""
        return self.grace_ms is None

    def _outer(self, side: int) -> bool:
        return keeps_unmatched(self.kind, side)

    def _window(self, side: int, ts: int) -> tuple[int, int]:
        """The other side's timestamps a record of `side` at `ts` joins."""
        if side == LEFT:
            return ts - self.before_ms, ts + self.after_ms
        return ts - self.after_ms, ts + self.before_ms

    def _lookback(self, side: int) -> int:
        return self.after_ms if side == LEFT else self.before_ms

    @property
    def retention(self) -> int:
        """How long a side's window store keeps a record after its side's latest one."""
        return self.before_ms + self.after_ms + self.grace

    def process(self, side: int, key: Any, row: Row | None, ts: int) -> list[Joined]:
        """As Kafka Streams' KStreamJoinWindow + KStreamKStreamJoin: the record goes into its
        side's window store (unless already older than the store keeps), closed outer records
        are emitted when the record advances stream time, then it joins the other side."""
        if key is None or row is None:
            return []  # Kafka Streams drops null keys and null values in stream-stream joins
        record = _Buffered(ts, self._seq, row)
        self._seq += 1
        self._side_time[side] = max(self._side_time[side], ts)
        if ts >= self._side_time[side] - self.retention:
            self._buffers[side].setdefault(key, []).append(record)
        self.stream_time = max(self.stream_time, ts)
        out: list[Joined] = self._closed() if ts == self.stream_time else []
        lo, hi = self._window(side, ts)
        lo = max(lo, 0, self._side_time[1 - side] - self.retention)
        for other in self._matches(1 - side, key, lo, max(hi, 0)):
            record.matched = True
            other.matched = True
            pair = (row, other.row) if side == LEFT else (other.row, row)
            out.append((key, pair[0], pair[1], max(ts, other.ts)))
        if not record.matched and self._outer(side):
            if self.eager or max(hi, 0) < self.stream_time:
                out.append(self._padded(side, key, record))
            else:
                close = ts + self._lookback(side) + self.grace
                bisect.insort(self._pending, (close, record.seq, side, key, record))
        self._expire()
        return out

    def _padded(self, side: int, key: Any, record: _Buffered) -> Joined:
        if side == LEFT:
            return (key, record.row, None, record.ts)
        return (key, None, record.row, record.ts)

    def _matches(self, side: int, key: Any, lo: int, hi: int) -> Iterator[_Buffered]:
        found = [r for r in self._buffers[side].get(key, ()) if lo <= r.ts <= hi]
        found.sort(key=lambda r: (r.ts, r.seq))
        return iter(found)

    def _closed(self) -> list[Joined]:
        """Outer records whose window closed unmatched, with nulls for the other side."""
        out: list[Joined] = []
        while self._pending and self._pending[0][0] < self.stream_time:
            _close, _seq, side, key, record = self._pending.pop(0)
            if not record.matched:
                out.append(self._padded(side, key, record))
        return out

    def _expire(self) -> None:
        """Drop buffered records no later record can join any more (bounded state)."""
        for side, buffers in enumerate(self._buffers):
            horizon = self._side_time[side] - self.retention
            for key in [k for k, recs in buffers.items() if recs[0].ts < horizon]:
                kept = [r for r in buffers[key] if r.ts >= horizon]
                if kept:
                    buffers[key] = kept
                else:
                    del buffers[key]

    def buffered(self) -> int:
        return sum(len(v) for b in self._buffers for v in b.values())


@dataclass
class StreamTableJoin:
    """`stream [INNER|LEFT] JOIN table ON <table's primary key>`."""

    kind: str
    table: dict[Any, Row] = field(default_factory=dict)

    def process(self, side: int, key: Any, row: Row | None, ts: int) -> list[Joined]:
        if side == RIGHT:
            if key is not None:
                if row is None:
                    self.table.pop(key, None)
                else:
                    self.table[key] = row
            return []
        if row is None:
            return []
        other = self.table.get(key) if key is not None else None
        if other is None and self.kind == "INNER":
            return []
        return [(key, row, other, ts)]


@dataclass
class TableTableJoin:
    """`table [INNER|LEFT|RIGHT|FULL] JOIN table ON <primary keys>`: both sides materialised;
    results are upserts of the joined row or tombstones (`(key, None, None, ts)`)."""

    kind: str
    tables: tuple[dict[Any, tuple[Row, int]], dict[Any, tuple[Row, int]]] = field(
        default_factory=lambda: ({}, {})
    )

    def _keeps(self, side: int) -> bool:
        return keeps_unmatched(self.kind, side)

    def process(self, side: int, key: Any, row: Row | None, ts: int) -> list[Joined]:
        if key is None:
            return []
        mine, theirs = self.tables[side], self.tables[1 - side]
        had = key in mine
        if row is None:
            mine.pop(key, None)
        else:
            mine[key] = (row, ts)
        other = theirs.get(key)
        other_row, other_ts = other if other is not None else (None, ts)
        out_ts = max(ts, other_ts)
        if row is None:
            # the joined row goes if it existed: it needed this side, or it stays with nulls
            if other_row is not None and self._keeps(1 - side):
                return [self._pair(side, key, None, other_row, out_ts)]
            if had and (other_row is not None or self._keeps(side)):
                return [(key, None, None, out_ts)]
            return []
        if other_row is None and not self._keeps(side):
            return []
        return [self._pair(side, key, row, other_row, out_ts)]

    @staticmethod
    def _pair(side: int, key: Any, mine: Row | None, other: Row | None, ts: int) -> Joined:
        return (key, mine, other, ts) if side == LEFT else (key, other, mine, ts)


@dataclass
class ForeignKeyJoin:
    """`left_table [INNER|LEFT] JOIN right_table ON left.fk = right.pk`: result keyed by the
    left table's key; a right update re-joins every left row pointing at it."""

    kind: str
    lefts: dict[Any, tuple[Any, Row, int]] = field(default_factory=dict)
    """left key -> (foreign key, row, ts)"""
    rights: dict[Any, tuple[Row, int]] = field(default_factory=dict)

    def process(
        self, side: int, key: Any, row: Row | None, ts: int, fk: Any = None
    ) -> list[Joined]:
        """For the left side `key` is the left table's key and `fk` the foreign key."""
        if side == LEFT:
            return self._left(key, fk, row, ts)
        if key is None:
            return []
        if row is None:
            self.rights.pop(key, None)
        else:
            self.rights[key] = (row, ts)
        out: list[Joined] = []
        for lkey, (lfk, lrow, lts) in self.lefts.items():
            if lfk != key:
                continue
            if row is None and self.kind == "INNER":
                out.append((lkey, None, None, max(ts, lts)))
            else:
                out.append((lkey, lrow, row, max(ts, lts)))
        return out

    def _left(self, key: Any, fk: Any, row: Row | None, ts: int) -> list[Joined]:
        if key is None:
            return []
        had = self.lefts.pop(key, None)
        if row is None:
            return [(key, None, None, ts)] if had is not None else []
        self.lefts[key] = (fk, row, ts)
        right = self.rights.get(fk) if fk is not None else None
        if right is None:
            if self.kind == "INNER":
                return [(key, None, None, ts)] if had is not None else []
            return [(key, row, None, ts)]
        return [(key, row, right[0], max(ts, right[1]))]


__all__ = [
    "LEFT",
    "RIGHT",
    "ForeignKeyJoin",
    "JoinKey",
    "StreamStreamJoin",
    "StreamTableJoin",
    "TableTableJoin",
    "join_key",
    "key_value",
]
