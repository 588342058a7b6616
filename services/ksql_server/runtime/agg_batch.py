"""Batch-wise aggregation under ksqlDB's record cache: work per group and batch, not per record.

ksqlDB caches aggregation results (`cache.max.bytes.buffering`, 10 MB by default in ksqlDB):
Kafka Streams' caching store forwards, when it flushes (each commit, or a full cache), the
latest value of every key changed since, so a table's output gets one record per key per flush
instead of one per input record. With caching on (a query property `cache.max.bytes.buffering`
or `ksql.streams.cache.max.bytes.buffering` above 0; this server's default is off, as in
ksqlDB's own tests), the aggregation operators emit, per consumed batch, the last update of
every group (window) in the order of those last updates: `last_per_key` of the exact
per-record path's updates. The state store and its changelog were already per key per commit
(the store's dirty set), so caching changes only how many sink records a batch makes.

That is what lets the work be done per group instead of per record (the fast path):
- `ColumnarPre`: when the pre-aggregation only copies source value columns (no WHERE, no
  computed group key or argument, no timestamp column), its tuples come straight from the
  format's column-wise decoder (numba, formats/columnar.py): no 38-object row per record. A
  batch the decoder declines (a tombstone, a malformed record, …) takes the row path, which
  logs exactly what it always logs;
- `group_indexes`: the batch's records grouped by key in one dict pass; each group's
  accumulators are then read from the store once, every record folded in (`fold_many`), written
  back once, and projected and serialised once.

The fast path serves stream aggregations without HAVING (a HAVING retraction depends on every
intermediate value), unwindowed or TUMBLING/HOPPING under EMIT CHANGES; everything else runs the
exact per-record path and keeps the last update per key. tests/test_ksql_state.py checks with
hypothesis that both give the same output, the same final table and the same changelog per
commit.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

from confluent_kafka import Message

from services.ksql_server.errors import KsqlFunctionException
from services.ksql_server.runtime.processor import (
    BatchProcessor,
    _kafka_string_key,
    without_errors,
)

CACHE_PROPERTIES = ("cache.max.bytes.buffering", "ksql.streams.cache.max.bytes.buffering")
_SECOND = operator.itemgetter(1)
T = TypeVar("T")

PreBatch = tuple[list[tuple[Any, ...]], list[int]]
"""(pre-aggregation tuple per record, record timestamp per record)"""


def caching(properties: Mapping[str, Any]) -> bool:
    """Whether the query's properties turn ksqlDB's record cache on (a size above 0)."""
    for name in CACHE_PROPERTIES:
        if name in properties:
            try:
                return int(properties[name]) > 0
            except (TypeError, ValueError):
                return False
    return False


def last_per_key(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """The last item of each key, in the order of those last items (a cache flush's output)."""
    last: dict[Hashable, tuple[int, T]] = {}
    for i, item in enumerate(items):
        last[key(item)] = (i, item)
    return [item for _i, item in sorted(last.values(), key=lambda pair: pair[0])]


def group_indexes(
    pres: list[tuple[Any, ...]], n_group: int, on_null: Callable[[], None]
) -> dict[tuple[Any, ...], list[int]]:
    """Record indexes per group key (first-seen order); a null in the key skips the record."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, pre in enumerate(pres):
        group = pre[:n_group]
        if None in group and any(g is None for g in group):
            on_null()
            continue
        found = groups.get(group)
        if found is None:
            groups[group] = [i]
        else:
            found.append(i)
    return groups


def arg_getters(slots: list[list[int]]) -> list[Callable[[tuple[Any, ...]], tuple[Any, ...]]]:
    """Per aggregate call, a function taking its argument tuple out of a pre-aggregation tuple."""

    def getter(positions: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
        if not positions:
            return lambda _pre: ()
        if len(positions) == 1:
            (p,) = positions
            return lambda pre: (pre[p],)
        pick = operator.itemgetter(*positions)
        return lambda pre: tuple(pick(pre))

    return [getter(list(s)) for s in slots]


def fold_many(
    functions: list[Any],
    getters: list[Callable[[tuple[Any, ...]], tuple[Any, ...]]],
    accs: list[Any],
    pres: Iterable[tuple[Any, ...]],
    log: Callable[[Any, str, BaseException], None],
) -> list[Any]:
    """`accs` with every record's arguments added in order (a failing add skips that record for
    that function, as the per-record `_fold` does)."""
    rows = pres if isinstance(pres, list) else list(pres)
    for i, (f, get) in enumerate(zip(functions, getters, strict=True)):
        acc, add = accs[i], f.add
        for pre in rows:
            try:
                acc = add(acc, get(pre))
            except KsqlFunctionException:  # the query stops, as in the per-record `_fold`
                raise
            except Exception as exc:  # a bad value: the row does not count, as in ksqlDB
                log(None, f.name, exc)
        accs[i] = acc
    return accs


class ColumnarPre:
    """Pre-aggregation tuples of a batch read column-wise (see the module docstring)."""

    def __init__(
        self, decode: Callable[[list[bytes | None]], Any], columns: list[int], key_check: bool
    ) -> None:
        self.decode = decode
        self.columns = columns
        self.key_check = key_check

    @classmethod
    def build(cls, pre: Any, processor: BatchProcessor) -> ColumnarPre | None:
        """None unless every pre-aggregation output copies a source value column unchanged."""
        shape = getattr(pre, "__columnar__", None)
        decode = getattr(processor.value_deser, "columns", None)
        if shape is None or decode is None or shape[0] is not None:
            return None
        if processor.ts_index is not None:
            return None
        src = processor.plan.source
        n_keys, n_values = len(src.key_columns), len(src.value_columns)
        if n_keys and not _kafka_string_key(src.key_format, src.key_columns):
            return None  # another key format may fail to deserialize: the row path logs it
        if getattr(src, "window", None) is not None:
            return None  # a windowed source's keys are framed: the row path checks them
        refs = shape[1]
        if any(r is None or not n_keys <= r < n_keys + n_values for r in refs):
            return None
        return cls(decode, [r - n_keys for r in refs], bool(n_keys))

    def __call__(self, messages: list[Message]) -> PreBatch | None:
        """The batch's (pre tuples, timestamps), or None: the row path must take this batch."""
        messages = without_errors(messages)
        if self.key_check and not _utf8_keys(messages):
            return None
        batch = self.decode(list(map(Message.value, messages)))
        if batch is None:
            return None
        columns = [batch.columns[c].to_list(batch.buf) for c in self.columns]
        pres: list[tuple[Any, ...]] = (
            list(zip(*columns, strict=True)) if columns else [()] * len(messages)
        )
        return pres, list(map(_SECOND, map(Message.timestamp, messages)))


def _utf8_keys(messages: list[Message]) -> bool:
    """Whether every KAFKA STRING key decodes (else the row path drops and logs the record)."""
    keys = b"".join(filter(None, map(Message.key, messages)))
    if keys.isascii():
        return True
    try:
        for m in messages:
            k = m.key()
            if k is not None:
                k.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


__all__ = [
    "CACHE_PROPERTIES",
    "ColumnarPre",
    "arg_getters",
    "caching",
    "fold_many",
    "group_indexes",
    "last_per_key",
]
