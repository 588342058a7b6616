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

State lives in `KeyValueStore`s (state/store.py), one per side as Kafka Streams keeps one per
join side, so a persistent query flushes it to changelog topics in its transaction and restores
it on start (runtime/join_query.py); without a store given, an operator keeps a store of its own
in memory (push queries, unit tests). Store keys are join keys in their changelog form
(`store_key`): a key read back from a changelog must find the same entry as the live one. The
values keep the original key where a result needs it (`revive_key` turns it back).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from services.ksql_server.state import KeyValueStore, decode, encode

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


_PLAIN = (str, int, float, bool)


def store_key(key: Any) -> Any:
    """A join key as a store key: what its changelog JSON reads back as (a DECIMAL as its
    text, an ARRAY as a tuple), so a restored entry and a live key meet."""
    value = key_value(key)
    if value is None or type(value) in _PLAIN:
        return value
    return _hashable(decode(encode(value)))


def _hashable(v: Any) -> Any:
    if isinstance(v, tuple):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):  # a STRUCT compares by value, whatever its fields' order
        return ("m", tuple(sorted(((k, _hashable(x)) for k, x in v.items()), key=_first)))
    return v


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


Revive = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _timed(revive_row: Revive) -> Revive:
    """The reviver of a `[row, ts]` value."""

    def revive(value: Any) -> Any:
        return [revive_row(value[0]), value[1]]

    return revive


def _memory_store(name: str) -> KeyValueStore:
    return KeyValueStore(name, "")


def _with_revive(store: KeyValueStore, revive: Revive) -> KeyValueStore:
    store.revive = revive
    return store


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
    key: Any = None
    """the join key as the record had it (a result padded with nulls carries it)"""
    matched: bool = False


SS_STORES = ("KSTREAM-JOINTHIS-store", "KSTREAM-JOINOTHER-store")
"""Store names of a stream-stream join's two window stores (Kafka Streams numbers its nodes:
`KSTREAM-JOINTHIS-0000000016-store`; a query here has no node numbers to give)."""


@dataclass
class StreamStreamJoin:
    """`a [INNER|LEFT|RIGHT|FULL] JOIN b WITHIN (before, after) [GRACE PERIOD g]`.

    Each side's buffered records are kept in its store (`stores`, this and other) under their
    sequence number, as `[key, ts, row, matched]`; the index by key, the pending outer records
    and stream time are rebuilt from the stores on construction (a restored query)."""

    kind: str
    before_ms: int
    after_ms: int
    grace_ms: int | None = None
    stores: tuple[KeyValueStore, KeyValueStore] | None = None
    revive_key: Revive = _same
    revive_rows: tuple[Revive, Revive] = (_same, _same)
    stream_time: int = -(2**63)
    _buffers: tuple[dict[Any, list[_Buffered]], dict[Any, list[_Buffered]]] = field(
        default_factory=lambda: ({}, {})
    )
    _pending: list[tuple[int, int, int, Any, _Buffered]] = field(default_factory=list)
    """Unmatched outer records waiting for their window to close: (close time, seq, side,
    key, record), kept sorted."""
    _seq: int = 0
    _side_time: list[int] = field(default_factory=lambda: [-(2**63), -(2**63)])

    def __post_init__(self) -> None:
        if self.stores is None:
            self.stores = (_memory_store(SS_STORES[0]), _memory_store(SS_STORES[1]))
        for side, store in enumerate(self.stores):
            revive_row = self.revive_rows[side]
            store.revive = lambda v, r=revive_row: [
                self.revive_key(v[0]),
                v[1],
                r(v[2]),
                bool(v[3]),
            ]
        self._rebuild()

    def _rebuild(self) -> None:
        """The in-memory index (by key, in time order) of what the stores hold."""
        assert self.stores is not None
        for side, store in enumerate(self.stores):
            for seq, (key, ts, row, matched) in store.items():
                record = _Buffered(ts, seq, row, key, matched)
                self._buffers[side].setdefault(store_key(key), []).append(record)
                self._side_time[side] = max(self._side_time[side], ts)
                self._seq = max(self._seq, seq + 1)
        for buffers in self._buffers:
            for records in buffers.values():
                records.sort(key=lambda r: (r.ts, r.seq))
        self.stream_time = max(self._side_time)
        if self.eager:
            return
        for side, buffers in enumerate(self._buffers):
            if not self._outer(side):
                continue
            for records in buffers.values():
                for r in records:
                    close = r.ts + self._lookback(side) + self.grace
                    if not r.matched and close >= self.stream_time:
                        bisect.insort(self._pending, (close, r.seq, side, r.key, r))

    def _keep(self, side: int, record: _Buffered) -> None:
        assert self.stores is not None
        self.stores[side].put(
            record.seq, [key_value(record.key), record.ts, record.row, record.matched]
        )

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
        record = _Buffered(ts, self._seq, row, key)
        skey = store_key(key)
        self._seq += 1
        self._side_time[side] = max(self._side_time[side], ts)
        buffered = ts >= self._side_time[side] - self.retention
        if buffered:
            self._buffers[side].setdefault(skey, []).append(record)
        self.stream_time = max(self.stream_time, ts)
        out: list[Joined] = self._closed() if ts == self.stream_time else []
        lo, hi = self._window(side, ts)
        lo = max(lo, 0, self._side_time[1 - side] - self.retention)
        for other in self._matches(1 - side, skey, lo, max(hi, 0)):
            record.matched = True
            if not other.matched:
                other.matched = True
                self._keep(1 - side, other)
            pair = (row, other.row) if side == LEFT else (other.row, row)
            out.append((key, pair[0], pair[1], max(ts, other.ts)))
        if buffered:
            self._keep(side, record)
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
        assert self.stores is not None
        for side, buffers in enumerate(self._buffers):
            horizon = self._side_time[side] - self.retention
            store = self.stores[side]
            for key in [k for k, recs in buffers.items() if recs[0].ts < horizon]:
                kept = []
                for r in buffers[key]:
                    if r.ts >= horizon:
                        kept.append(r)
                    else:
                        store.delete(r.seq)
                if kept:
                    buffers[key] = kept
                else:
                    del buffers[key]

    def buffered(self) -> int:
        return sum(len(v) for b in self._buffers for v in b.values())


LEFT_STORE, RIGHT_STORE = "KafkaTopic_Left-Reduce", "KafkaTopic_Right-Reduce"
"""ksqlDB's names of the stores that materialise a join's table sides."""


@dataclass
class StreamTableJoin:
    """`stream [INNER|LEFT] JOIN table ON <table's primary key>`: the table side's rows by
    key in `store`."""

    kind: str
    store: KeyValueStore | None = None
    revive_row: Revive = _same

    def __post_init__(self) -> None:
        store = _memory_store(RIGHT_STORE) if self.store is None else self.store
        self.table = _with_revive(store, self.revive_row)

    def process(self, side: int, key: Any, row: Row | None, ts: int) -> list[Joined]:
        if side == RIGHT:
            if key is not None:
                self.table.put(store_key(key), row)  # None deletes
            return []
        if row is None:
            return []
        other = self.table.get(store_key(key)) if key is not None else None
        if other is None and self.kind == "INNER":
            return []
        return [(key, row, other, ts)]


@dataclass
class TableTableJoin:
    """`table [INNER|LEFT|RIGHT|FULL] JOIN table ON <primary keys>`: both sides materialised
    (`stores`: left, right; `[row, ts]` by key); results are upserts of the joined row or
    tombstones (`(key, None, None, ts)`)."""

    kind: str
    stores: tuple[KeyValueStore, KeyValueStore] | None = None
    revive_rows: tuple[Revive, Revive] = (_same, _same)

    def __post_init__(self) -> None:
        stores = self.stores or (_memory_store(LEFT_STORE), _memory_store(RIGHT_STORE))
        self.tables = tuple(
            _with_revive(store, _timed(revive))
            for store, revive in zip(stores, self.revive_rows, strict=True)
        )

    def _keeps(self, side: int) -> bool:
        return keeps_unmatched(self.kind, side)

    def process(self, side: int, key: Any, row: Row | None, ts: int) -> list[Joined]:
        if key is None:
            return []
        skey = store_key(key)
        mine, theirs = self.tables[side], self.tables[1 - side]
        had = skey in mine
        mine.put(skey, None if row is None else [row, ts])
        other = theirs.get(skey)
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
    left table's key; a right update re-joins every left row pointing at it.

    Stores: left key → `[left key, foreign key (store form), row, ts]`, right key →
    `[row, ts]`."""

    kind: str
    stores: tuple[KeyValueStore, KeyValueStore] | None = None
    revive_key: Revive = _same
    revive_rows: tuple[Revive, Revive] = (_same, _same)

    def __post_init__(self) -> None:
        lefts, rights = self.stores or (_memory_store(LEFT_STORE), _memory_store(RIGHT_STORE))
        revive_left, revive_right = self.revive_rows
        self.lefts = _with_revive(
            lefts, lambda v: [self.revive_key(v[0]), v[1], revive_left(v[2]), v[3]]
        )
        self.rights = _with_revive(rights, _timed(revive_right))

    def process(
        self, side: int, key: Any, row: Row | None, ts: int, fk: Any = None
    ) -> list[Joined]:
        """For the left side `key` is the left table's key and `fk` the foreign key."""
        if side == LEFT:
            return self._left(key, fk, row, ts)
        if key is None:
            return []
        skey = store_key(key)
        self.rights.put(skey, None if row is None else [row, ts])
        out: list[Joined] = []
        for _k, (lkey, lfk, lrow, lts) in self.lefts.items():
            if lfk != skey:
                continue
            if row is None and self.kind == "INNER":
                out.append((lkey, None, None, max(ts, lts)))
            else:
                out.append((lkey, lrow, row, max(ts, lts)))
        return out

    def _left(self, key: Any, fk: Any, row: Row | None, ts: int) -> list[Joined]:
        if key is None:
            return []
        skey = store_key(key)
        had = self.lefts.get(skey)
        self.lefts.delete(skey)
        if row is None:
            return [(key, None, None, ts)] if had is not None else []
        sfk = store_key(fk) if fk is not None else None
        self.lefts.put(skey, [key_value(key), sfk, row, ts])
        right = self.rights.get(sfk) if sfk is not None else None
        if right is None:
            if self.kind == "INNER":
                return [(key, None, None, ts)] if had is not None else []
            return [(key, row, None, ts)]
        return [(key, row, right[0], max(ts, right[1]))]


__all__ = [
    "LEFT",
    "LEFT_STORE",
    "RIGHT",
    "RIGHT_STORE",
    "SS_STORES",
    "ForeignKeyJoin",
    "JoinKey",
    "StreamStreamJoin",
    "StreamTableJoin",
    "TableTableJoin",
    "join_key",
    "key_value",
    "store_key",
]
