"""A persistent join query: reads both sides' topics, merges them in time order, joins, produces.

Why its own loop: a join has two inputs whose records must meet in the order of their
timestamps (Kafka Streams picks the partition whose next record is oldest, and waits up to
`max.task.idle.ms` for an empty one), and state the single-source loop does not have.

Order: fetched records wait in one queue per side; the oldest head goes first while both sides
have records. When one side has none, the other's records wait until they have been fetched for
`max.task.idle.ms` (ksqlDB property, default here `IDLE_MS`), so a side whose records are still
on their way is not overtaken.

State and restarts: the operators (`runtime/join.py`) keep their state in the query's stores
(`QueryStores`: one per join side, named as ksqlDB names them, `join_stores`), flushed into
the query's transaction with its output and offsets and restored from their compacted
changelogs on start, before the first record; the inputs are then read from the committed
offsets only. Offsets are committed only for records that went through the join (never for
ones still waiting in a queue), so a kill -9 loses no input. An aborted transaction restarts the
loop: the stores roll back to the last commit and the operators are rebuilt from them.

Re-keying: a stream side joined on anything but its key goes through a repartition topic
(runtime/repartition.py, `join_repartitions`). `GROUP BY` over a join: the query's operator
(an aggregation over the joined rows) takes the joined rows instead of the projection.
`TransientJoinQuery` is the push-query form: the same chain of operators, in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import deque
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services.common.checkpoint import Checkpoint, TransactionAborted
from services.common.kafka import ProducerStuck, consume_available, produce
from services.ksql_server.formats.base import coercer
from services.ksql_server.formats.registry import uses_registry
from services.ksql_server.metastore import DataSource
from services.ksql_server.planner.join import (
    FOREIGN_KEY,
    STREAM_STREAM,
    STREAM_TABLE,
    JoinPlan,
    JoinStep,
)
from services.ksql_server.planner.plan import PSEUDO_COLUMNS, QueryPlan
from services.ksql_server.runtime.join import (
    LEFT,
    LEFT_STORE,
    RIGHT,
    RIGHT_STORE,
    SS_STORES,
    ForeignKeyJoin,
    Joined,
    StreamStreamJoin,
    StreamTableJoin,
    TableTableJoin,
    join_key,
    key_value,
)
from services.ksql_server.runtime.positions import partitions_of, start_positions
from services.ksql_server.runtime.processor import BatchProcessor
from services.ksql_server.runtime.query import (
    BATCH,
    COMMIT_INTERVAL_S,
    COMMIT_RECORDS,
    STOP_CHECK_S,
    TRANSIENT_BATCH_ROWS,
    PersistentQuery,
    QuerySetup,
    TransientQuery,
    transient_consumer_overrides,
)
from services.ksql_server.runtime.repartition import Repartition, repartition_topic
from services.ksql_server.runtime.table import reviver
from services.ksql_server.state import QueryStores

IDLE_MS = 250
"""How long fetched records of one side wait for the other side's (see the module docstring)."""


@dataclasses.dataclass
class _Pending:
    """One fetched record waiting in its side's queue."""

    message: Any
    row: list[Any] | None  # None: it failed to deserialize (logged), only its offset counts
    tombstone: bool
    ts: int
    fetched: float


def _side_plan(source: DataSource, plan: QueryPlan) -> QueryPlan:
    """A plan that only carries `source`: what a BatchProcessor needs to deserialize it."""
    return dataclasses.replace(plan, source=source, output=[], key_indexes=[], value_indexes=[])


def step_prefix(join: JoinPlan, step: int) -> str:
    """ksqlDB's name prefix of a step's internal stores and topics: a join that is the left
    input of the next one is named inside it, `L_` once per join above it."""
    return "L_" * (len(join.steps) - 1 - step)


def join_stores(join: JoinPlan, step: int) -> list[str]:
    """The names of a step's stores: left side's and right side's (a stream-table join keeps
    only its table side)."""
    info = join.steps[step]
    names = list(SS_STORES if info.join_type == STREAM_STREAM else (LEFT_STORE, RIGHT_STORE))
    if info.join_type == STREAM_TABLE:
        names = names[1:]
    prefix = step_prefix(join, step)
    return [prefix + name for name in names]


def join_repartitions(join: JoinPlan) -> dict[int, str]:
    """The sides read through a repartition topic, with ksqlDB's name of it: a stream whose
    join key is not its key (`Join-left`, `Join-right`; `L_` per join above in n-way joins)."""
    out: dict[int, str] = {}
    for i, side in enumerate(join.sides):
        if not side.stream or side.is_source_key:
            continue
        step = max(i - 1, 0)
        out[i] = step_prefix(join, step) + ("Join-left" if i == 0 else "Join-right")
    return out


def make_operator(
    step: JoinStep, join: JoinPlan | None = None, stores: QueryStores | None = None
) -> Any:
    """The operator of one join step; with `stores` (a QueryStores) its state lives in them."""
    kwargs: dict[str, Any] = {}
    if join is not None and stores is not None:
        n = join.steps.index(step)
        kwargs = _revivers(join, n)
        mine = [stores.store(name) for name in join_stores(join, n)]
        if step.join_type == STREAM_TABLE:
            return StreamTableJoin(step.kind, mine[0], kwargs["revive_rows"][1])
        kwargs["stores"] = (mine[0], mine[1])
    if step.join_type == STREAM_STREAM:
        before, after = step.within_ms or (0, 0)
        return StreamStreamJoin(step.kind, before, after, step.grace_ms, **kwargs)
    if step.join_type == STREAM_TABLE:
        return StreamTableJoin(step.kind)
    if step.join_type == FOREIGN_KEY:
        return ForeignKeyJoin(step.kind, **kwargs)
    kwargs.pop("revive_key", None)
    return TableTableJoin(step.kind, **kwargs)


def _revivers(join: JoinPlan, n: int) -> dict[str, Any]:
    """How a step's stored keys and rows come back from a changelog (JSON) as engine values:
    its left input is the list of the rows of sides 0..n, its right one side n+1's row."""
    step = join.steps[n]
    sides = [reviver(s.source.columns + PSEUDO_COLUMNS) for s in join.sides[: n + 2]]
    convert = coercer(step.key_type) if step.key_type is not None else None

    def revive_left(rows: Any) -> Any:
        return [None if r is None else sides[i](r) for i, r in enumerate(rows)]

    def revive_key(key: Any) -> Any:
        return key if key is None or convert is None else convert(key)

    if step.join_type == FOREIGN_KEY:  # a table's own row on either side, keyed by its key
        keys = join.sides[0].source.key_columns
        own = coercer(keys[0][1]) if len(keys) == 1 else _same
        return {"revive_key": own, "revive_rows": (sides[0], sides[1])}
    return {"revive_key": revive_key, "revive_rows": (revive_left, sides[n + 1])}


def _same(value: Any) -> Any:
    return value


Result = tuple[Any, list[list[Any] | None] | None, int]
"""(key, every side's row (None: absent) or None for a tombstone, timestamp)"""


class JoinRows:
    """Side rows in, joined rows out (the layout of planner/join.py)."""

    def __init__(self, join: JoinPlan) -> None:
        self.join = join
        self.nulls = [[None] * s.width for s in join.sides]

    def build(self, result: Result, trigger: list[Any]) -> tuple[list[Any], bool]:
        """The joined row of one result, and whether it is a tombstone."""
        key, rows, ts = result
        row = [key_value(key)]
        for i, nulls in enumerate(self.nulls):
            side = rows[i] if rows is not None else None
            row += side if side is not None else nulls
        row += [ts, trigger[-2], trigger[-1]]
        return row, rows is None


class JoinChain:
    """Feeding one side's record through the chain of join operators (`joiners`, one per
    step of `join`): shared by the persistent query and the push query."""

    join_plan: JoinPlan
    joiners: list[Any]

    def _operate(self, side: int, p: _Pending) -> list[Result]:
        """Feed one side's record into the chain of joins; the results of the last one."""
        assert p.row is not None
        join_side = self.join_plan.sides[side]
        value = None if p.tombstone else p.row
        if self.join_plan.join_type == FOREIGN_KEY:
            found = self._foreign(side, p, value)
            return [(k, None if a is None and b is None else [a, b], t) for k, a, b, t in found]
        key = join_key(join_side.key_fn(p.row))
        if value is None and join_side.source.kind == "TABLE" and join_side.is_source_key:
            key = join_key(p.row[0])  # a tombstone's key (its value columns are null)
        if side == 0:
            results = self.joiners[0].process(LEFT, key, None if value is None else [value], p.ts)
            step = 0
        else:
            step = side - 1
            results = self.joiners[step].process(RIGHT, key, value, p.ts)
        out = [self._combine(step, r) for r in results]
        for nxt in range(step + 1, len(self.joiners)):
            out = [r2 for r in out for r2 in self._next(nxt, r)]
        return out

    def _combine(self, step: int, result: Joined) -> Result:
        key, left, right, ts = result
        if left is None and right is None:
            return (key, None, ts)
        return (key, [*(left or [None] * (step + 1)), right], ts)

    def _next(self, step: int, result: Result) -> list[Result]:
        """A result of the joins before `step`, as the left input of `step`."""
        key, rows, ts = result
        info = self.join_plan.steps[step]
        if rows is not None:
            own = rows[info.left_side]
            key = join_key(self.join_plan.left_keys[step](own)) if own is not None else None
        joined = self.joiners[step].process(LEFT, key, rows, ts)
        return [self._combine(step, r) for r in joined]

    def _foreign(self, side: int, p: _Pending, value: list[Any] | None) -> list[Joined]:
        assert p.row is not None
        join_side = self.join_plan.sides[side]
        if side == LEFT:
            n_keys = len(join_side.source.key_columns)
            key = join_key(p.row[0] if n_keys == 1 else p.row[:n_keys])
            fk = None if value is None else join_key(join_side.key_fn(p.row))
            return self.joiners[0].process(side, key, value, p.ts, fk)  # type: ignore[no-any-return]
        return self.joiners[0].process(side, join_key(join_side.key_fn(p.row)), value, p.ts)  # type: ignore[no-any-return]


class JoinQuery(JoinChain, PersistentQuery):
    """CSAS / CTAS over a join (see the module docstring)."""

    def __init__(self, setup: QuerySetup) -> None:
        super().__init__(setup)
        query_id, plan, ctx, plog = setup.query_id, setup.plan, setup.ctx, setup.plog
        properties = setup.properties
        join: JoinPlan = plan.join
        self.join = self.join_plan = join
        self.topics = [ctx.physical(s.source.topic) for s in join.sides]
        formats = [f.name for s in join.sides for f in (s.source.key_format, s.source.value_format)]
        registry = ctx.registry_or_none() if any(uses_registry(f) for f in formats) else None
        self.side_processors = [
            BatchProcessor(query_id, _side_plan(s.source, plan), None, registry, plog)
            for s in join.sides
        ]
        self.rows = JoinRows(join)
        idle = properties.get("ksql.streams.max.task.idle.ms", properties.get("max.task.idle.ms"))
        if idle is None:  # the test harness (fast) paces its inputs itself
            idle = 0 if ctx.fast else IDLE_MS
        self.idle_s = int(idle) / 1000
        self.joiners: list[Any] = []
        self._queues: list[deque[_Pending]] = [deque() for _ in join.sides]
        for n in range(len(join.steps)):  # known before the loop restores them
            for name in join_stores(join, n):
                self.stores.store(name)
        self._assigned = 1
        """how many partitions the consumer holds (all inputs together)"""
        self._tp_positions: dict[tuple[str, int], int] = {}
        self.repartitions = {
            i: Repartition(
                name,
                ctx.physical(repartition_topic(setup.service_id, query_id, name)),
                self.topics[i],
                ctx.topic_partitions(self.topics[i]) or 1,
            )
            for i, name in join_repartitions(join).items()
        }
        """side → the repartition topic it is read through (its join key is not its key)"""
        self.read_topics = [
            self.repartitions[i].topic if i in self.repartitions else t
            for i, t in enumerate(self.topics)
        ]

    # ------------------------------------------------------------------ loop
    def _loop(self) -> None:
        consumer = Consumer(self.ctx.consumer_conf(self.group, **{"auto.offset.reset": self.reset}))
        self._consumer = consumer
        producer = self._producer()
        checkpoint = Checkpoint(
            consumer,
            producer,
            exactly_once=self.exactly_once,
            commit_interval_s=COMMIT_INTERVAL_S,
            commit_records=COMMIT_RECORDS,
            on_abort=self._aborted,
        )
        self._queues = [deque() for _ in self.join.sides]
        try:
            partitions = self._assign_all(consumer)
            self._prepare_stores(partitions)  # restored, or rolled back to the last commit
            self.joiners = [make_operator(step, self.join, self.stores) for step in self.join.steps]
            while not self._stop.is_set():
                self._step_join(consumer, checkpoint)
            with contextlib.suppress(TransactionAborted):
                self._commit(checkpoint)
        except TransactionAborted as exc:
            # the operators' state already holds the aborted records: start again from the
            # committed offsets and the stores as of the last commit
            raise KafkaException(f"transaction aborted, state rolled back: {exc}") from exc
        except (KafkaException, ProducerStuck):
            self.processed -= checkpoint.pending
            raise
        finally:
            if self.exactly_once:
                with contextlib.suppress(Exception):
                    producer.flush(5)
            consumer.close()
            self._consumer = None

    def _assign_all(self, consumer: Consumer) -> int:
        """Every partition of both inputs from the committed offsets (or, without any, from
        `auto.offset.reset`); returns the first input's partition count (its changelogs')."""
        tps: list[TopicPartition] = []
        counts: list[int] = []
        for rp in self.repartitions.values():
            rp.create(self.ctx.ensure_topic)
        for topic in dict.fromkeys(self.topics + self.read_topics):
            partitions = partitions_of(consumer, topic)
            tps += partitions
            counts.append(len(partitions))
        assigned = start_positions(consumer, tps, self.reset, use_committed=True, resolve=True)
        for tp in assigned:
            self._tp_positions[(tp.topic, tp.partition)] = tp.offset
        consumer.assign(assigned)
        self._assigned = len(assigned)
        return counts[0]

    def _step_join(self, consumer: Consumer, checkpoint: Checkpoint) -> None:
        messages = self._drop_errors(consumer.consume(BATCH, 0))
        if not messages:
            self._commit(checkpoint)
            messages = self._drop_errors(
                consume_available(consumer, BATCH, 0.05 if self.ctx.fast else 0.2)
            )
        if messages:
            self._enqueue(messages, checkpoint)
        done = self._drain(checkpoint)
        if not messages and not done and not any(self._queues):
            self._check_caught_up(consumer)
        if checkpoint.due():
            self._commit(checkpoint)

    def _enqueue(self, messages: list[Any], checkpoint: Checkpoint) -> None:
        now = time.monotonic()
        for side, topic in enumerate(self.topics):
            mine = [m for m in messages if m.topic() == topic]
            rp = self.repartitions.get(side)
            if rp is not None:
                if mine:
                    self._rekey(side, rp, mine, checkpoint)
                mine = rp.originals([m for m in messages if m.topic() == rp.topic])
            if not mine:
                continue
            proc = self.side_processors[side]
            rows = {(r[-2], r[-1]): r for r in proc.rows(mine)}
            tombs = {(r[-2], r[-1]) for r in rows.values() if id(r) in proc.tombstones}
            for m in mine:
                at = (m.partition(), m.offset())
                row = rows.get(at)
                ts = row[-3] if row is not None else (m.timestamp()[1] or 0)
                self._queues[side].append(_Pending(m, row, at in tombs, ts, now))

    def _rekey(
        self, side: int, rp: Repartition, messages: list[Any], checkpoint: Checkpoint
    ) -> None:
        """Source records of a side read through a repartition topic: each goes there keyed
        by its join key, in the open transaction that also commits its source offsets. A
        record that does not deserialize is logged here and goes no further; a null value
        joins nothing (Kafka Streams drops it from stream joins)."""
        proc = self.side_processors[side]
        rows = {(r[-2], r[-1]): r for r in proc.rows(messages) if id(r) not in proc.tombstones}
        key_fn = self.join.sides[side].key_fn
        checkpoint.add(messages, self.topics[side], self._assigned)
        self.processed += len(messages)
        with checkpoint.aborting():
            for m in messages:
                row = rows.get((m.partition(), m.offset()))
                if row is not None:
                    rp.send(checkpoint.producer, m, key_value(join_key(key_fn(row))), row[-3])
            checkpoint.producer.poll(0)

    def _drain(self, checkpoint: Checkpoint) -> int:
        """Join what may go now (see the module docstring); the number of records joined."""
        done: list[tuple[int, _Pending]] = []
        now = time.monotonic()
        queues = self._queues
        while any(queues):
            ready = [i for i, q in enumerate(queues) if q]
            if len(ready) < len(queues) and all(
                now - queues[i][0].fetched < self.idle_s for i in ready
            ):
                break  # wait for the empty sides a little (max.task.idle.ms)
            side = min(ready, key=lambda i: (queues[i][0].ts, i))
            done.append((side, queues[side].popleft()))
        if done:
            self._join(done, checkpoint)
        return len(done)

    def _join(self, done: list[tuple[int, _Pending]], checkpoint: Checkpoint) -> None:
        joined: list[list[Any]] = []
        tombstones: set[int] = set()
        for side, p in done:
            if p.row is None:
                continue
            for result in self._operate(side, p):
                row, tomb = self.rows.build(result, p.row)
                if tomb:
                    tombstones.add(id(row))
                joined.append(row)
        out = self._serialize(joined, tombstones)
        for side, topic in enumerate(self.read_topics):
            mine = [p.message for s, p in done if s == side]
            if mine:
                checkpoint.add(mine, topic, self._assigned)
        self.processed += len(done)
        producer, topic = checkpoint.producer, self.sink_topic
        with checkpoint.aborting():
            for rec in out:
                produce(producer, topic, rec.value, rec.key, timestamp=rec.timestamp)
            producer.poll(0)
        self.produced += len(out)

    def _serialize(self, rows: list[list[Any]], tombstones: set[int]) -> list[Any]:
        """Project the joined rows; a table join's tombstones pass the WHERE (they delete a
        row the result had)."""
        proc = self.processor
        if self.operator is not None:  # GROUP BY over the join: the aggregation's updates
            proc.tombstones = tombstones
            proc.null_keys = set()
            return list(self.operator.process(rows))
        proc.tombstones = set()
        proc.null_keys = set()
        results: list[Any] = []
        pending: list[list[Any]] = []
        for row in rows:
            if id(row) in tombstones:
                results += proc.evaluate(pending) if pending else []
                pending = []
                results.append((row, None))
            else:
                pending.append(row)
        results += proc.evaluate(pending) if pending else []
        return proc.serialize(results) if results else []

    def delete_state(self) -> None:
        """The changelogs and the repartition topics go with the query."""
        super().delete_state()
        for rp in self.repartitions.values():
            try:
                self.ctx.delete_topic(rp.topic)
            except Exception:  # the query is gone either way
                continue

    # ------------------------------------------------------------------ progress
    def _commit(self, checkpoint: Checkpoint) -> None:
        """The join's store changes join the open transaction, then it commits."""
        if self.stores and checkpoint.pending:
            with checkpoint.aborting():
                self.stores.flush(checkpoint.producer)
        committed = checkpoint.commit()
        if committed is None:
            return
        self.stores.committed()
        self._tp_positions.update(committed.next)
        self.commits += 1

    def _check_caught_up(self, consumer: Consumer) -> None:
        if (now := self._caught_up_check_due()) is None:
            return
        caught = True
        for (topic, p), pos in list(self._tp_positions.items()):
            tp = TopicPartition(topic, p)
            _lo, hi = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            if pos < hi and consumer.position([tp])[0].offset < hi:
                caught = False
                break
        self._caught = (now, caught)

    @property
    def positions(self) -> dict[int, int]:
        return {p: o for (t, p), o in self._tp_positions.items() if t == self.source_topic}


class TransientJoinQuery(JoinChain, TransientQuery):
    """A push query over a join (`SELECT … FROM a JOIN b … EMIT CHANGES`): both inputs read
    from `auto.offset.reset`, each consumed batch joined in time order in memory (a push query
    starts from scratch anyway: no stores, no repartition topics) and projected."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        join: JoinPlan = self.plan.join
        self.join_plan = join
        self.topics = [self.ctx.physical(s.source.topic) for s in join.sides]
        formats = [f.name for s in join.sides for f in (s.source.key_format, s.source.value_format)]
        registry = self.ctx.registry_or_none() if any(uses_registry(f) for f in formats) else None
        self.side_processors = [
            BatchProcessor(
                self.query_id, _side_plan(s.source, self.plan), None, registry, self.processor.plog
            )
            for s in join.sides
        ]
        self.joined = JoinRows(join)
        self.joiners = [make_operator(step) for step in join.steps]

    def _loop(self) -> None:
        if self.limit == 0:
            return
        consumer = Consumer(
            self.ctx.consumer_conf(self.group, **transient_consumer_overrides(self.reset))
        )
        try:
            tps = [
                tp for name in dict.fromkeys(self.topics) for tp in partitions_of(consumer, name)
            ]
            consumer.assign(start_positions(consumer, tps, self.reset, use_committed=False))
            while not self._stop.is_set():
                messages = consume_available(consumer, TRANSIENT_BATCH_ROWS, STOP_CHECK_S)
                messages = [m for m in messages if m.error() is None]
                if messages and not self._emit(messages):
                    return
        finally:
            consumer.close()

    def _input_rows(self, messages: list[Any]) -> list[list[Any]]:
        """The joined rows of a batch: each side's records deserialized, all of them in time
        order through the operators."""
        pending: list[tuple[int, _Pending]] = []
        for side, topic in enumerate(self.topics):
            mine = [m for m in messages if m.topic() == topic]
            if not mine:
                continue
            proc = self.side_processors[side]
            for row in proc.rows(mine):
                tomb = id(row) in proc.tombstones
                pending.append((side, _Pending(None, row, tomb, row[-3], 0.0)))
        pending.sort(key=lambda sp: (sp[1].ts, sp[0]))
        rows: list[list[Any]] = []
        tombstones: set[int] = set()
        for side, p in pending:
            for result in self._operate(side, p):
                row, tomb = self.joined.build(result, p.row or [])
                if tomb:
                    tombstones.add(id(row))
                rows.append(row)
        self.processor.tombstones = tombstones
        self.processor.null_keys = set()
        return rows


__all__ = ["IDLE_MS", "JoinQuery", "JoinRows", "TransientJoinQuery", "make_operator"]
