"""Running a windowed GROUP BY: the aggregation operator with runtime/windows.py's state machine.

`AggregateOperator` (runtime/aggregate.py) runs the pre-aggregation (WHERE, group key,
arguments) and the post-aggregation (HAVING, projection); this subclass puts the windowed state
machine between them: each record's group key goes to the windows its time falls in (or the
session it opens or extends), and every change the machine reports becomes one output record:

- the key is the group key in the sink's key format, framed as Kafka Streams frames windowed
  keys (formats/windowed.py: inner key + start, or inner key + end + start for sessions);
- the value is the projection of `[group…, aggregate results…, WINDOWSTART, WINDOWEND]`, or a
  tombstone for a session merged away or a window HAVING filters out;
- the timestamp is the window's largest record time (time windows) or the session's end.

Windowed aggregation is over streams only (ksqlDB refuses it over tables). The window's EMIT
FINAL interval comes from the query's properties (`processor.properties`).

With the record cache on, `process_messages` emits the last change per window per batch,
computed per window for TUMBLING/HOPPING under EMIT CHANGES (runtime/agg_window_batch.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from confluent_kafka import Message

from services.ksql_server.formats.windowed import frame
from services.ksql_server.planner.aggregate import WINDOW_COLUMNS, AggregationPlan
from services.ksql_server.planner.windowing import window_info
from services.ksql_server.runtime.agg_batch import last_per_key
from services.ksql_server.runtime.agg_window_batch import window_changes
from services.ksql_server.runtime.aggregate import (
    Accumulators,
    AggregateOperator,
    Update,
    forwarded,
)
from services.ksql_server.runtime.processor import BatchProcessor, OutRecord, ProcessingLog
from services.ksql_server.runtime.stateful import register_operator
from services.ksql_server.runtime.table import TableView
from services.ksql_server.runtime.windows import META_KEY, Change, WindowDef, WindowedAggregation
from services.ksql_server.state import QueryStores


def window_def(spec: AggregationPlan, emit_final: bool) -> WindowDef:
    assert spec.window is not None
    return WindowDef.from_spec(spec.window, emit_final)


class WindowedAggregateOperator(AggregateOperator):
    def __init__(
        self,
        spec: AggregationPlan,
        processor: BatchProcessor,
        stores: QueryStores,
        plog: ProcessingLog,
        query_id: str,
    ) -> None:
        super().__init__(spec, processor, stores, plog, query_id)
        self.window = window_def(spec, bool(processor.plan.select.emit_final))
        info = window_info(processor.plan)
        assert info is not None
        self.info = info
        self.machine = WindowedAggregation(
            self.window,
            self.store,
            initial=lambda: [f.initial() for f in self.functions],
            fold=lambda accs, pre: self._fold((accs, 0), pre, undo=False),
            merge=self._merge,
            encode=lambda accs: [f.to_state(a) for f, a in zip(self.functions, accs, strict=True)],
            decode=lambda st: [f.from_state(s) for f, s in zip(self.functions, st, strict=True)],
            properties=processor.properties,
            passes=self._passes if spec.has_having else None,
        )

        self.batch_wise = self.batch_wise and not (self.window.is_session or self.window.emit_final)

    def process_messages(self, messages: list[Message]) -> list[OutRecord]:
        if not self.cached:
            return self.process(self.processor.rows(messages))
        if self.batch_wise:
            changes = window_changes(self, *self.pre_batch(messages))
        else:
            changes = last_per_key(
                _batch_old(self._changes(self.processor.rows(messages))), _window_of
            )
        self.machine.expire()
        records = (self._change_record(c) for c in changes)
        return [r for r in records if r is not None]

    def _merge(self, a: Accumulators, b: Accumulators) -> Accumulators:
        return [f.merge(x, y) for f, x, y in zip(self.functions, a, b, strict=True)]

    def process(self, rows: list[list[Any]]) -> list[OutRecord]:
        """The sink records of a batch (persistent queries): each change's key framed."""
        out: list[OutRecord] = []
        for change in self._changes(rows):
            record = self._change_record(change)
            if record is not None:
                out.append(record)
        self.machine.expire()
        return out

    def updates(self, rows: list[list[Any]]) -> list[Update]:
        """(group key, projected row or None, timestamp) per change (push queries): the
        projection sees the change's WINDOWSTART/WINDOWEND."""
        out: list[Update] = []
        for c in self._changes(rows):
            values = self._values(c)
            if forwarded(values, c.old_passed):
                out.append((c.group, values, c.timestamp))
        self.machine.expire()
        return out

    def _changes(self, rows: list[list[Any]]) -> Iterator[Change]:
        """The state machine's changes for a batch of rows, record by record (the exact path;
        a generator: each change is serialised before the next record may mutate an
        accumulator in place)."""
        tombstones = self.processor.tombstones
        live = [r for r in rows if id(r) not in tombstones] if tombstones else rows
        for row, pre in self.spec.pre(live, self._log):
            group = tuple(pre[: self.n_group])
            if any(g is None for g in group):
                self._null_key(row)
                continue
            yield from self.machine.add(group, pre, row[self.ts_pos])

    def _windowed_result(
        self, group: tuple[Any, ...], accs: Accumulators, start: int, end: int
    ) -> tuple[Any, ...] | None:
        results = []
        for f, a in zip(self.functions, accs, strict=True):
            try:
                results.append(f.result(a))
            except Exception as exc:
                self._log(None, f.name, exc)
                results.append(None)
        rows = self.spec.post([[*group, *results, start, end]], self._log)
        return rows[0][1] if rows else None

    def _values(self, change: Change) -> tuple[Any, ...] | None:
        """A change's projected row (None: a retraction, or HAVING drops the window)."""
        if change.accs is None:
            return None
        return self._windowed_result(change.group, change.accs, change.start, change.end)

    def _passes(self, key: tuple[Any, ...], accs: Accumulators) -> bool:
        """Whether a window's value passes HAVING (the state machine asks of old values)."""
        return self._windowed_result(key[:-2], accs, key[-2], key[-1]) is not None

    def _change_record(self, change: Change) -> OutRecord | None:
        values = self._values(change)
        if not forwarded(values, change.old_passed):
            return None  # HAVING dropped a window that was not in the table
        return self._record(
            change.group,
            values,
            change.timestamp,
            lambda inner: frame(inner, self.info, change.start, change.end),
        )

    def view(self) -> TableView:
        """The windowed table: keys are (group key…, WINDOWSTART, WINDOWEND)."""

        def project(key: tuple[Any, ...], stored: Any) -> tuple[Any, ...] | None:
            if tuple(key) == META_KEY:
                return None
            accs = self.machine.decode(stored[0])
            values = self._windowed_result(tuple(key[:-2]), accs, key[-2], key[-1])
            return None if values is None else tuple(values[i] for i in self.value_idx)

        keys = [*self.plan.key_columns, *WINDOW_COLUMNS]
        # ROWTIME: the window's largest record time (a session's: its end), as in _put
        rowtime = lambda _key, stored: stored[1]  # noqa: E731
        return TableView(self.store, keys, self.plan.value_columns, project, rowtime)


def _window_of(change: Change) -> tuple[Any, ...]:
    return (change.group, change.start, change.end)


def _batch_old(changes: Iterator[Change]) -> Iterator[Change]:
    """Changes as a record cache flushes them: a window's old value is the one before the
    batch, so each change carries the `old_passed` of its window's first change."""
    first: dict[tuple[Any, ...], bool] = {}
    for change in changes:
        change.old_passed = first.setdefault(_window_of(change), change.old_passed)
        yield change


def _factory(
    spec: AggregationPlan,
    processor: BatchProcessor,
    stores: QueryStores,
    plog: ProcessingLog,
    query_id: str,
) -> AggregateOperator:
    for call in spec.calls:  # ksqlDB's Configurable UDAFs (COLLECT_LIST's limit, …)
        configure = getattr(call.function, "configure", None)
        if configure is not None:
            configure(processor.properties)
    if spec.window is None:
        return AggregateOperator(spec, processor, stores, plog, query_id)
    return WindowedAggregateOperator(spec, processor, stores, plog, query_id)


__all__ = ["WindowedAggregateOperator", "window_def"]


register_operator(AggregationPlan, _factory)
