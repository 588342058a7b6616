"""Running a GROUP BY: accumulators per group key in a state store, one update per input row.

Per consumed row (QTT and ksqlDB with caching off: every input emits its group's new value):

- over a stream: the pre-aggregation function (WHERE, group key, aggregate arguments) runs on
  the batch; a null-valued record or a null group key is skipped; the group's accumulators
  fold the arguments in;
- over a table: the source table's store (runtime/table.py) gives each key's old and new row;
  the old row's contribution is taken out of its group (`undo`) and the new one added. Same
  group: one update; different groups: the old group's update, then the new one's (Kafka
  Streams' table re-grouping sends the two halves separately).

Then the post-aggregation function (HAVING + projection) runs on the group's aggregate row. A
group that fails HAVING is retracted with a tombstone, but only when its previous value had
passed (ksqlDB's table filter with old values). The record's timestamp is the largest seen by
the group (Kafka Streams' timestamped aggregation). The store holds, per group key, the
accumulators' `to_state` forms and that timestamp.

With ksqlDB's record cache on (`cache.max.bytes.buffering` > 0), `process_messages` emits the
last update per group per batch instead, and where it can, computes it per group rather than
per record (runtime/agg_batch.py: the fast path, and why it equals this one deduplicated).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Message

from services.ksql_server.errors import KsqlFunctionException
from services.ksql_server.planner.aggregate import AggregationPlan
from services.ksql_server.planner.table import SOURCE_STORE
from services.ksql_server.runtime.agg_batch import (
    ColumnarPre,
    PreBatch,
    arg_getters,
    caching,
    fold_many,
    group_indexes,
    last_per_key,
)
from services.ksql_server.runtime.processor import BatchProcessor, OutRecord, ProcessingLog
from services.ksql_server.runtime.stateful import register_operator
from services.ksql_server.runtime.table import SourceTable, TableView
from services.ksql_server.state import QueryStores

Accumulators = list[Any]
Update = tuple[Any, tuple[Any, ...] | None, int]
"""(group key, projected row or None: retracted, record timestamp)"""


class AggregateOperator:
    def __init__(
        self,
        spec: AggregationPlan,
        processor: BatchProcessor,
        stores: QueryStores,
        plog: ProcessingLog,
        query_id: str,
    ) -> None:
        self.spec = spec
        self.processor = processor
        self.plan = processor.plan
        self.query_id = query_id
        self.plog = plog
        self.store = stores.store(spec.store_name)
        self.functions = [c.function for c in spec.calls]
        self.slots = [c.arg_slots for c in spec.calls]
        self.n_group = len(spec.group_types)
        self.ts_pos = len(self.plan.row_columns) - 3
        self.value_idx = self.plan.value_indexes
        self.key_idx = self.plan.key_indexes
        self.table: SourceTable | None = None
        if spec.table_source:
            self.table = SourceTable(spec.source, stores.store(SOURCE_STORE), processor)
        self.cached = caching(processor.properties)
        """ksqlDB's record cache: one update per group per batch (runtime/agg_batch.py)"""
        self.batch_wise = self.table is None and not spec.has_having
        self.columnar_pre = ColumnarPre.build(spec.pre, processor) if self.batch_wise else None
        self.getters = arg_getters(self.slots)
        self._batch_old: dict[Any, bool] | None = None
        """under the record cache, per group: whether its value before the batch passed HAVING"""

    # ------------------------------------------------------------------ per consumed batch
    def process_messages(self, messages: list[Message]) -> list[OutRecord]:
        """The output records of a consumed batch: `process` of its rows, or with the record
        cache on, the last update of each group (worked out per group where it can be)."""
        if not self.cached:
            return self.process(self.processor.rows(messages))
        if not self.batch_wise:
            return self._records(self._cached_updates(self.processor.rows(messages)))
        pre = self.pre_batch(messages)
        return self._records(self.batch_updates(*pre))

    def pre_batch(self, messages: list[Message]) -> PreBatch:
        """(pre-aggregation tuples, timestamps) of a batch: column-wise when the decoder takes
        it, else through the rows (WHERE applied, tombstones skipped as `updates` skips them)."""
        if self.columnar_pre is not None:
            self.processor.tombstones = set()
            found = self.columnar_pre(messages)
            if found is not None:
                return found
        rows = self.processor.rows(messages)
        tombstones = self.processor.tombstones
        live = [r for r in rows if id(r) not in tombstones] if tombstones else rows
        pairs = self.spec.pre(live, self._log)
        return [tuple(pre) for _row, pre in pairs], [row[self.ts_pos] for row, _pre in pairs]

    def batch_updates(self, pres: list[tuple[Any, ...]], stamps: list[int]) -> list[Update]:
        """`last_per_key(updates(...))` computed per group: one store read and write each."""
        groups = group_indexes(pres, self.n_group, lambda: self._null_key(None))
        out: list[Update] = []
        for group, indexes in sorted(groups.items(), key=lambda kv: kv[1][-1]):
            before = self._load(group)
            accs = list(before[0]) if before is not None else [f.initial() for f in self.functions]
            fold_many(self.functions, self.getters, accs, [pres[i] for i in indexes], self._log)
            self._update(group, before, accs, max(stamps[i] for i in indexes), out)
        return out

    def _cached_updates(self, rows: list[list[Any]]) -> list[Update]:
        """The last update per group, forwarded as the cache flushes it: its old value is the
        one before the batch, so a group fails HAVING with a tombstone only if that one passed."""
        self._batch_old = {}
        try:
            updates = last_per_key(self.updates(rows), _group_of)
        finally:
            batch_old, self._batch_old = self._batch_old, None
        return [u for u in updates if forwarded(u[1], batch_old[u[0]])]

    def _records(self, updates: list[Update]) -> list[OutRecord]:
        records = (self._record(group, values, ts) for group, values, ts in updates)
        return [r for r in records if r is not None]

    # ------------------------------------------------------------------ per batch
    def process(self, rows: list[list[Any]]) -> list[OutRecord]:
        """The output records of a batch (persistent queries)."""
        return self._records(self.updates(rows))

    def updates(self, rows: list[list[Any]]) -> list[Update]:
        """(group key, projected row or None for a retraction, timestamp) per update, in
        order (push queries take these as they are)."""
        out: list[Update] = []
        if self.table is not None:
            for change in self.table.changes(rows):
                self._table_change(change.old, change.new, change.record, out)
            return out
        tombstones = self.processor.tombstones
        live = [r for r in rows if id(r) not in tombstones] if tombstones else rows
        for row, pre in self.spec.pre(live, self._log):
            group = pre[: self.n_group]
            if any(g is None for g in group):
                self._null_key(row)
                continue
            old = self._load(group)
            new_accs = self._fold(old, pre, undo=False)
            self._update(group, old, new_accs, row[self.ts_pos], out)
        return out

    def _table_change(
        self, old: list[Any] | None, new: list[Any] | None, record: list[Any], out: list[Update]
    ) -> None:
        old_pre = self._pre(old)
        new_pre = self._pre(new)
        ts = record[self.ts_pos]
        if old_pre is not None and new_pre is not None and old_pre[0] == new_pre[0]:
            group = old_pre[0]
            before = self._load(group)
            accs = self._fold(before, old_pre[1], undo=True)
            accs = self._fold((accs, ts), new_pre[1], undo=False)
            self._update(group, before, accs, ts, out)
            return
        if old_pre is not None:
            before = self._load(old_pre[0])
            self._update(old_pre[0], before, self._fold(before, old_pre[1], undo=True), ts, out)
        if new_pre is not None:
            before = self._load(new_pre[0])
            self._update(new_pre[0], before, self._fold(before, new_pre[1], undo=False), ts, out)

    def _pre(self, row: list[Any] | None) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
        """(group key, pre-aggregation values) of a table row, None when filtered or keyless."""
        if row is None:
            return None
        result = self.spec.pre([row], self._log)
        if not result:
            return None
        pre = result[0][1]
        group = tuple(pre[: self.n_group])
        if any(g is None for g in group):
            self._null_key(row)
            return None
        return group, pre

    # ------------------------------------------------------------------ accumulators
    def _load(self, group: Any) -> tuple[Accumulators, int] | None:
        stored = self.store.get(group)
        if stored is None:
            return None
        states, ts = stored[:-1], stored[-1]
        return [f.from_state(s) for f, s in zip(self.functions, states, strict=True)], ts

    def _fold(
        self, current: tuple[Accumulators, int] | None, pre: tuple[Any, ...], undo: bool
    ) -> Accumulators:
        accs = list(current[0]) if current is not None else [f.initial() for f in self.functions]
        for i, (f, slots) in enumerate(zip(self.functions, self.slots, strict=True)):
            args = tuple(pre[s] for s in slots)
            try:
                accs[i] = f.undo(accs[i], args) if undo else f.add(accs[i], args)
            except KsqlFunctionException:  # the query stops, as ksqlDB's stream thread does
                raise
            except Exception as exc:  # a bad value: the row does not count, as in ksqlDB
                self._log(None, f.name, exc)
        return accs

    def _update(
        self,
        group: Any,
        before: tuple[Accumulators, int] | None,
        accs: Accumulators,
        ts: int,
        out: list[Update],
    ) -> None:
        ts = max(ts, before[1]) if before is not None else ts
        self.store.put(
            group, [*(f.to_state(a) for f, a in zip(self.functions, accs, strict=True)), ts]
        )
        values = self._result(group, accs)
        old_passed = lambda: before is not None and self._result(group, before[0]) is not None  # noqa: E731
        if self._batch_old is not None:  # under the cache: judged at the flush, on the batch's old
            if group not in self._batch_old:
                self._batch_old[group] = old_passed()
            out.append((group, values, ts))
        elif forwarded(values, old_passed):
            out.append((group, values, ts))

    def _result(self, group: Any, accs: Accumulators) -> tuple[Any, ...] | None:
        """The projected row of a group (None: HAVING drops it)."""
        results = []
        for f, a in zip(self.functions, accs, strict=True):
            try:
                results.append(f.result(a))
            except Exception as exc:
                self._log(None, f.name, exc)
                results.append(None)
        agg_row = [*group, *results, None, None]
        out = self.spec.post([agg_row], self._log)
        return out[0][1] if out else None

    def _record(
        self,
        group: Any,
        values: tuple[Any, ...] | None,
        ts: int,
        frame_key: Callable[[bytes], bytes] | None = None,
    ) -> OutRecord | None:
        """The sink record of one update; `frame_key` wraps the serialised group key (windows)."""
        ks, vs = self.processor.key_ser, self.processor.value_ser
        if ks is None or vs is None:  # a push query: no sink
            return None
        try:
            key = ks(list(group))
            if frame_key is not None:
                key = frame_key(key or b"")
            value = None if values is None else vs([values[i] for i in self.value_idx])
        except Exception as exc:
            self.plog(
                self.query_id,
                "KsqlTopic.Sink.serializer",
                f"Failed to serialize: {exc}",
                None,
                code="serialize",
            )
            return None
        return OutRecord(key, value, ts, values or ())

    # ------------------------------------------------------------------ read side
    def view(self) -> TableView:
        """The aggregated table: group key → the projected value columns."""

        def project(key: tuple[Any, ...], stored: Any) -> tuple[Any, ...] | None:
            accs = [f.from_state(s) for f, s in zip(self.functions, stored[:-1], strict=True)]
            values = self._result(key, accs)
            return None if values is None else tuple(values[i] for i in self.value_idx)

        return TableView(
            self.store,
            self.plan.key_columns,
            self.plan.value_columns,
            project,
            rowtime=lambda _key, stored: stored[-1],  # the group's largest record time
        )

    # ------------------------------------------------------------------ errors
    def _log(self, _row: Any, column: str, exc: BaseException) -> None:
        self.plog(
            self.query_id,
            "Aggregate",
            f"Error computing expression {column}: {exc}",
            None,
            code="expression",
        )

    def _null_key(self, _row: Any) -> None:
        self.plog(
            self.query_id,
            "Aggregate.GroupBy",
            "Group-by column with value null: the record is skipped",
            None,
            code="null_group_key",
        )


def forwarded(values: tuple[Any, ...] | None, old_passed: bool | Callable[[], bool]) -> bool:
    """ksqlDB's table filter with old values (HAVING): a row that fails it (None) goes out, as
    a tombstone, only when the key's old value had passed (a callable: judged only then); else
    neither value is in the table."""
    if values is not None:
        return True
    return old_passed() if callable(old_passed) else old_passed


def _group_of(update: Update) -> Any:
    return update[0]


register_operator(AggregationPlan, AggregateOperator)

__all__ = ["AggregateOperator", "forwarded"]
