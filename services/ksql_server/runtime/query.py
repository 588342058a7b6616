"""Running queries: persistent consume-transform-produce loops and transient push/pull queries.

Persistent queries own a consumer group (`_confluent-ksql-<service id>query_<query id>`) and
resume from its committed offsets, so a restarted server continues where it stopped. The
consumer is *assigned* every partition of the source instead of subscribing: a single server
owns all partitions anyway, and assignment avoids the seconds-long group rebalance on every
start. Commits still go to the group (the broker accepts them from a non-member).

At-least-once: produce the batch, flush, then commit the consumed offsets.
Exactly-once (`processing.guarantee=exactly_once_v2`): one Kafka transaction per batch holds
the output records and the consumed offsets (`send_offsets_to_transaction`), and downstream
readers use read_committed.

The transaction, its offsets, when it is due and what a Kafka error means belong to the shared
`Checkpoint` (services/common/checkpoint.py, as in the scorer): a retriable error is retried, an
abortable one (or a retriable one retries did not resolve) aborts the transaction and seeks
back to the first uncommitted offsets, so the query reads them again instead of failing; anything
else from Kafka restarts the loop with new clients from the committed offsets after a growing
pause. Under exactly-once none of these can duplicate or lose an output record; under
at-least-once a restart re-reads what was produced but not yet committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from services.common.checkpoint import (
    TRANSACTION_TIMEOUT_MS,
    Checkpoint,
    TransactionAborted,
    is_fenced,
    transactional_producer,
)
from services.common.kafka import ProducerStuck, consume_available, produce, produce_many
from services.common.process import release_free_heap
from services.ksql_server.metastore import DataSource
from services.ksql_server.planner.plan import QueryPlan
from services.ksql_server.runtime.kafka_context import KafkaContext
from services.ksql_server.runtime.positions import partitions_of, start_positions
from services.ksql_server.runtime.processor import BatchProcessor, ProcessingLog
from services.ksql_server.runtime.stateful import run_operator
from services.ksql_server.state import QueryStores
from services.ksql_server.values import to_json

LOG = logging.getLogger("fraudstream.ksql.runtime")
CLOSE_WAIT_S = 1.0
"""How long closing a push query waits for its thread to end (it checks every 0.1 s)."""

BATCH = 5000
COMMIT_INTERVAL_S = 0.5
COMMIT_RECORDS = 50_000
RESTART_BACKOFF_S = 0.5
RESTART_BACKOFF_MAX_S = 10.0
CAUGHT_UP_INTEREST_S = 2.0
"""How long after a `caught_up` question an idle loop keeps checking its end offsets. Only the
conformance runner and tests ask; an unasked check cost a ListOffsets request per partition at
every idle look (five a second per partition and query), as many as its idle fetches."""
CAUGHT_UP_RECHECK_S = 0.03


def _assign(
    consumer: Consumer, topic: str, reset: str, use_committed: bool
) -> list[TopicPartition]:
    """Assign every partition of `topic`, from the group's committed offsets when there are any."""
    tps = partitions_of(consumer, topic)
    consumer.assign(start_positions(consumer, tps, reset, use_committed))
    return tps


@dataclass(frozen=True)
class QuerySetup:
    """What a persistent query is made from: its statement, plan and sink, and the engine's
    Kafka context, processing log, service id and the statement's properties. One argument, so
    each kind of query (plain, re-grouped, join) takes the same and adds only what is its own."""

    query_id: str
    sql: str
    plan: QueryPlan
    sink: DataSource
    ctx: KafkaContext
    plog: ProcessingLog
    service_id: str
    properties: dict[str, Any]


class PersistentQuery:
    """CSAS / INSERT INTO … SELECT: a thread that consumes, transforms and produces in batches."""

    def __init__(self, setup: QuerySetup) -> None:
        query_id, plan, sink, ctx = setup.query_id, setup.plan, setup.sink, setup.ctx
        plog, service_id, properties = setup.plog, setup.service_id, setup.properties
        self.query_id = query_id
        self.sql = setup.sql
        self.plan = plan
        self.sink = sink
        self.ctx = ctx
        self.properties = properties
        self.group = f"_confluent-ksql-{service_id}query_{query_id}"
        self.exactly_once = str(properties.get("processing.guarantee", "")).startswith(
            "exactly_once"
        )
        self.reset = str(properties.get("auto.offset.reset", "latest"))
        self.source_topic = ctx.physical(plan.source.topic)
        self.read_topic = self.source_topic
        """what `_process` hands to the operator: the source, or a repartition topic"""
        self.sink_topic = ctx.physical(sink.topic)
        self.processor = BatchProcessor(
            query_id,
            plan,
            sink,
            ctx.registry_or_none() if _needs_registry(plan, sink) else None,
            plog,
            self.sink_topic,
        )
        self.processor.properties = properties
        self.stores = QueryStores(service_id, query_id, ctx.physical)
        self.operator: Any = None
        """a stateful query's operator (runtime/stateful.py); None: filter and projection"""
        if plan.stateful is not None:
            from services.ksql_server.runtime.stateful import build_operator

            self.operator = build_operator(
                plan.stateful, self.processor, self.stores, plog, query_id
            )
        self.state = "RUNNING"
        self.error: str | None = None
        self.processed = 0
        self.produced = 0
        self.commits = 0
        self.aborts = 0
        self.restarts = 0
        self._stop = threading.Event()
        self._positions: dict[int, int] = {}
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ksql-{query_id}", daemon=True)
        self._transactional_id = f"{service_id}-{query_id}-{ctx.topic_prefix}"
        self._consumer: Consumer | None = None
        self._caught: tuple[float, bool] = (0.0, False)
        """(when the loop thread last looked, whether every partition was consumed to its end)"""
        self._caught_asked = float("-inf")
        """when `caught_up` was last called (time.monotonic)"""

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self.state = "TERMINATED" if self.error is None else "ERROR"

    @property
    def positions(self) -> dict[int, int]:
        return dict(self._positions)

    def caught_up(self, since: float) -> bool:
        """True when the loop thread, at a moment after `since` (time.monotonic), found every
        source partition consumed to its end. The check runs on the loop thread itself (a
        consumer is not shared across threads), and only while somebody asks."""
        self._caught_asked = time.monotonic()
        if self.error is not None or self._stop.is_set():
            return True
        checked_at, caught = self._caught
        return checked_at > since and caught

    def _caught_up_check_due(self) -> float | None:
        """The time now when an idle loop should look at its end offsets: `caught_up` was
        asked lately and the last look is older than CAUGHT_UP_RECHECK_S; else None."""
        now = time.monotonic()
        if now - self._caught_asked > CAUGHT_UP_INTEREST_S:
            return None
        return None if now - self._caught[0] < CAUGHT_UP_RECHECK_S else now

    def _check_caught_up(self, consumer: Consumer) -> None:
        if (now := self._caught_up_check_due()) is None:
            return
        caught = True
        for p, pos in list(self._positions.items()):
            _lo, hi = consumer.get_watermark_offsets(
                TopicPartition(self.source_topic, p), timeout=5, cached=False
            )
            if pos < hi:
                tp = consumer.position([TopicPartition(self.source_topic, p)])[0]
                if tp.offset < hi:
                    caught = False
                    break
        self._caught = (now, caught)

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        """Run the loop; after a Kafka error start it again (new clients, from the committed
        offsets) with a growing pause, as ksqlDB restarts a failed query. Only a fenced
        producer (another server runs this query) or a non-Kafka error ends the query."""
        failures = 0
        while not self._stop.is_set():
            commits = self.commits
            try:
                self._loop()
                return
            except (KafkaException, ProducerStuck) as exc:  # the broker went away
                if is_fenced(exc):
                    self._fail(exc)
                    return
                failures = 1 if self.commits > commits else failures + 1
                self.restarts += 1
                pause = min(RESTART_BACKOFF_S * 2 ** (failures - 1), RESTART_BACKOFF_MAX_S)
                LOG.warning(
                    "query %s restarts in %.1f s after a Kafka error: %s",
                    self.query_id,
                    pause,
                    exc,
                )
                self._stop.wait(pause)
            except Exception as exc:
                self._fail(exc)
                return

    def _fail(self, exc: BaseException) -> None:
        LOG.error("query %s failed", self.query_id, exc_info=exc)
        self.error = str(exc)
        self.state = "ERROR"

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
        try:
            tps = _assign(consumer, self.source_topic, self.reset, True)
            for tp in tps:
                self._positions.setdefault(tp.partition, -1)
            self._prepare_stores(len(tps))
            self._init_positions(consumer, tps)
            self._assign_internal(consumer)
            while not self._stop.is_set():
                with contextlib.suppress(TransactionAborted):  # rewound: read again
                    self._step(consumer, checkpoint)
            with contextlib.suppress(TransactionAborted):  # read again by the next start
                self._commit(checkpoint)
        except (KafkaException, ProducerStuck):
            self.processed -= checkpoint.pending  # read again by the next run
            raise
        finally:
            if self.exactly_once:
                with contextlib.suppress(Exception):
                    producer.flush(5)
            consumer.close()
            self._consumer = None

    def _assign_internal(self, consumer: Consumer) -> None:
        """Hook: a query that also reads an internal topic adds it to the assignment."""

    def delete_state(self) -> None:
        """After the query ended for good (DROP, TERMINATE): its changelog topics go, as
        ksqlDB cleans up a terminated query's internal topics."""
        for store in self.stores.stores.values():
            try:
                self.ctx.delete_topic(store.changelog)
            except Exception as exc:  # the query is gone either way
                LOG.warning(
                    "query %s: changelog %s not deleted: %s", self.query_id, store.changelog, exc
                )

    def _prepare_stores(self, partitions: int) -> None:
        """Before the first record: the stores as of the committed offsets (restored from
        their changelogs on the first run, rolled back to the last commit on a restart)."""
        if not self.stores:
            return
        self.stores.rollback()
        if not self.stores.restored:
            self.stores.create_topics(self.ctx, partitions)
            self.stores.restore(self.ctx.consumer_conf(f"{self.group}-restore"))

    def _producer(self) -> Producer:
        """The engine's shared producer (at-least-once), or this query's own transactional one:
        `init_transactions` aborts whatever an earlier run (or a killed server) left open."""
        if not self.exactly_once:
            return self.ctx.producer
        return transactional_producer(
            self.ctx.producer_conf(**{"linger.ms": 5}),
            self._transactional_id,
            TRANSACTION_TIMEOUT_MS,
        )

    def _step(self, consumer: Consumer, checkpoint: Checkpoint) -> None:
        """One look at the consumer: process what it has fetched. Latency first
        (docs/latency.md): a batch that drained the consumer's queue (fewer than BATCH
        records) means the loop is caught up, so what is open commits at once; only full
        batches (behind) let one transaction span several of them until it is due.

        The rule is "the batch was not full", not "a look found nothing": at a steady rate a
        record arrives while each batch is processed, so a look is seldom empty and the
        transaction would wait for COMMIT_INTERVAL_S (the KSQL stage's p50 of ~100 ms at
        2,000 records/s and p99 of ~0.9 s at 20,000 came from that wait)."""
        messages = self._drop_errors(consumer.consume(BATCH, 0))
        if not messages:
            self._commit(checkpoint)
            messages = self._drop_errors(
                consume_available(consumer, BATCH, 0.05 if self.ctx.fast else 0.2)
            )
            if not messages:
                self._check_caught_up(consumer)
                return
        self._process(messages, checkpoint)
        if len(messages) < BATCH or checkpoint.due():
            self._commit(checkpoint)

    def _drop_errors(self, messages: list[Any]) -> list[Any]:
        """Error events in a consumed batch (a broker going away) are not records: dropped,
        but a fatal one ends this run of the loop."""
        if not any(map(Message.error, messages)):  # one C-level pass: no frame per record
            return messages
        for m in messages:
            err = m.error()
            if err is not None and err.fatal():
                raise KafkaException(err)
        return [m for m in messages if m.error() is None]

    def _aborted(self, aborted: TransactionAborted) -> None:
        """The checkpoint aborted a transaction and sought back: its records count again."""
        LOG.warning("query %s: %s; re-reading its input", self.query_id, aborted)
        self.aborts += 1
        self.processed -= aborted.records
        self.stores.rollback()

    def _init_positions(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        for tp in consumer.position(tps):
            lo, hi = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            if tp.offset == OFFSET_END or tp.offset < 0:
                self._positions[tp.partition] = hi if self.reset != "earliest" else lo
            else:
                self._positions[tp.partition] = tp.offset
        committed = consumer.committed(tps, timeout=10)
        for tp in committed:
            if tp.offset >= 0:
                self._positions[tp.partition] = tp.offset
            elif self.reset == "earliest":
                self._positions[tp.partition] = consumer.get_watermark_offsets(
                    tp, timeout=10, cached=False
                )[0]

    def _process(self, messages: list[Any], checkpoint: Checkpoint) -> None:
        """Transform one consumed batch and hand its output to the producer, inside the
        checkpoint's open transaction. Offsets are committed by `_commit`, batching several
        consume calls per commit: a commit is a broker round trip."""
        proc = self.processor
        columnar = None if self.operator is not None else proc.columnar_batch(messages)
        out: list[Any] = []
        if self.operator is not None:
            out = run_operator(self.operator, proc, messages)
        elif columnar is None:
            rows = proc.rows(messages)
            out = proc.serialize(proc.evaluate(rows)) if rows else []
        # the batch joins the checkpoint before its output is produced: an abort rewinds it
        checkpoint.add(messages, self.read_topic, len(self._positions))
        self.processed += len(messages)
        producer, topic = checkpoint.producer, self.sink_topic
        with checkpoint.aborting():
            if columnar is not None:
                values, timestamps, keys = columnar
                produced = produce_many(producer, topic, values, keys, timestamps=timestamps)
            else:
                for rec in out:
                    produce(producer, topic, rec.value, rec.key, timestamp=rec.timestamp)
                produced = len(out)
            producer.poll(0)
        self.produced += produced

    def _commit(self, checkpoint: Checkpoint) -> None:
        """Commit what the checkpoint holds (a few short tries: a call the broker's restart left
        hanging is not resumed by librdkafka, a new producer, the loop's restart, fences and
        aborts it instead)."""
        if self.stores and checkpoint.pending:
            with checkpoint.aborting():  # the changes join the open transaction
                self.stores.flush(checkpoint.producer)
        committed = checkpoint.commit()
        if committed is None:
            return
        self.stores.committed()
        self._positions.update(
            {p: o for (t, p), o in committed.next.items() if t == self.source_topic}
        )
        self.commits += 1


def _needs_registry(plan: QueryPlan, sink: DataSource | None) -> bool:
    fmts = [plan.source.key_format.name, plan.source.value_format.name]
    if sink is not None:
        fmts += [sink.key_format.name, sink.value_format.name]
    from services.ksql_server.formats.registry import uses_registry

    return any(uses_registry(f) for f in fmts)


TRANSIENT_BATCH_ROWS = 250
"""Rows a push query hands to the event loop at once."""
TRANSIENT_PENDING_BATCHES = 4
"""Batches a push query may have waiting for its client: with the batch being written and the one
being built, at most 6 x 250 rows sit between a client that stopped reading and its consumer."""
TRANSIENT_FETCH_BYTES = 128 * 1024
"""One fetch of a push query's consumer. librdkafka runs ahead of an application that stops
polling by about 17 fetches even with `queued.max.messages.kbytes` set (measured with
librdkafka 2.16: the whole topic without the queue limits, ~2.2 MB of records with them, ~6 MB
resident with its per-message overhead for 200-byte records), so the fetch size is what bounds
a stuck query's prefetch. Larger records still come through (a fetch returns at least one)."""
STOP_CHECK_S = 0.1
"""How often a push query's thread looks at its stop flag while it waits (for records or for its
client); a closed query's thread has ended, consumer closed, within about this."""


TRIM_INTERVAL_S = 2.0
_trim_lock = threading.Lock()
_trimmed_at = 0.0
_live_threads = 0


def _thread_started() -> None:
    global _live_threads
    with _trim_lock:
        _live_threads += 1


def _thread_ended() -> None:
    """After a push query's thread ended, give the memory it freed back to the system: when it
    was the last one, else at most every TRIM_INTERVAL_S (a trim walks the heap, and clients
    may come and go by the hundred)."""
    global _trimmed_at, _live_threads
    with _trim_lock:
        _live_threads -= 1
        if _live_threads > 0 and time.monotonic() - _trimmed_at < TRIM_INTERVAL_S:
            return
        _trimmed_at = time.monotonic()
    release_free_heap()


def transient_consumer_overrides(reset: str) -> dict[str, Any]:
    """Consumer settings for a push query: a small prefetch, so a client that stops reading pins
    a few megabytes of fetched records rather than all of its topic's backlog."""
    return {
        "auto.offset.reset": reset,
        "queued.max.messages.kbytes": TRANSIENT_FETCH_BYTES // 1024,
        "queued.min.messages": TRANSIENT_BATCH_ROWS,
        "fetch.max.bytes": TRANSIENT_FETCH_BYTES,
        "max.partition.fetch.bytes": TRANSIENT_FETCH_BYTES,
        "message.max.bytes": TRANSIENT_FETCH_BYTES,  # librdkafka: fetch.max.bytes >= this
    }


class TransientQuery:
    """A push query (`EMIT CHANGES`) or a pull query over a stream (reads to the current end).

    One thread per query consumes and evaluates (a librdkafka consumer blocks its caller; the
    number of such threads is capped by the engine's `ksql.max.push.queries`). Rows cross to the
    event loop in batches through an asyncio queue; the thread takes a slot of a semaphore before
    it hands a batch over and the reader gives it back once it took the batch, so a client that
    stops reading stops its query's thread, which stops polling, and librdkafka stops fetching
    once its small queue is full: backpressure from the socket to the broker.

    `stop()` makes the thread end within `STOP_CHECK_S`; `wait_closed()` awaits that end.
    """

    def __init__(
        self,
        query_id: str,
        plan: QueryPlan,
        ctx: KafkaContext,
        plog: ProcessingLog,
        service_id: str,
        properties: dict[str, Any],
        pull: bool,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.query_id = query_id
        self.plan = plan
        self.ctx = ctx
        self.pull = pull
        self.limit = plan.select.limit
        self.reset = "earliest" if pull else str(properties.get("auto.offset.reset", "latest"))
        self.topic = ctx.physical(plan.source.topic)
        self.group = f"_confluent-ksql-{service_id}transient_{query_id}"
        self.processor = BatchProcessor(
            query_id,
            plan,
            None,
            ctx.registry_or_none() if _needs_registry(plan, None) else None,
            plog,
        )
        self.loop = loop
        self.queue: asyncio.Queue[list[list[Any]] | BaseException | None] = asyncio.Queue()
        self._slots = threading.Semaphore(TRANSIENT_PENDING_BATCHES)
        self._stop = threading.Event()
        self._ended = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name=f"ksql-{query_id}", daemon=True)
        self.types = [t for _, t in plan.output]
        self.stores = QueryStores(service_id, query_id)
        """a push query's state: in memory only (it starts again from scratch anyway)"""
        self.operator: Any = None
        if plan.stateful is not None:
            from services.ksql_server.runtime.stateful import build_operator

            self.operator = build_operator(
                plan.stateful, self.processor, self.stores, plog, query_id
            )
        self.on_close: Callable[[], None] | None = None
        """Called once, on the query's thread, when it has ended (the engine forgets it)."""
        self.sent = 0

    def start(self) -> None:
        _thread_started()
        try:
            self._thread.start()
        except BaseException:
            _thread_ended()
            raise

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> bool:
        """Block until the thread ended (for shutdown, off the event loop); True when it did."""
        if self._thread.ident is not None and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    async def wait_closed(self, timeout: float) -> bool:
        """Await the end of the thread (consumer closed) for at most `timeout` seconds."""
        if self._thread.ident is None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), timeout)
        return self._ended.is_set()

    async def close(self, timeout: float = CLOSE_WAIT_S) -> None:
        """Stop and await the thread's end (a served query's `on_close`)."""
        self.stop()
        if not await self.wait_closed(timeout):
            LOG.warning("push query %s still running %.1f s after close", self.query_id, timeout)

    def _call_on_loop(self, callback: Callable[..., None], *args: Any) -> bool:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self._stop.set()
            return False
        return True

    def _put(self, batch: list[list[Any]]) -> bool:
        """Hand a batch of rows to the event loop once a slot is free (the reader keeps up);
        False when the query was stopped while waiting."""
        while not self._stop.is_set():
            if self._slots.acquire(timeout=STOP_CHECK_S):
                return self._call_on_loop(self.queue.put_nowait, batch)
        return False

    def _run(self) -> None:
        end: BaseException | None = None
        try:
            self._loop()
        except Exception as exc:
            LOG.exception("transient query %s failed", self.query_id)
            end = exc
        finally:
            # The end marker needs no slot: it is one small item, and the reader must see it.
            self._call_on_loop(self.queue.put_nowait, end)
            if self.on_close is not None:
                self.on_close()
            self._call_on_loop(self._ended.set)
            _thread_ended()

    def _loop(self) -> None:
        if self.limit == 0:
            return
        consumer = Consumer(
            self.ctx.consumer_conf(self.group, **transient_consumer_overrides(self.reset))
        )
        try:
            tps = _assign(consumer, self.topic, self.reset, False)
            ends = self._pull_ends(consumer, tps) if self.pull else {}
            if self.pull and not ends:
                return
            while not self._stop.is_set():
                messages = consume_available(consumer, TRANSIENT_BATCH_ROWS, STOP_CHECK_S)
                if self.pull:
                    messages = [
                        m
                        for m in messages
                        if m.error() is None and (m.offset() or 0) < ends.get(m.partition() or 0, 0)
                    ]
                if messages and not self._emit(messages):
                    return
                if self.pull and self._pull_done(consumer, ends):
                    return
        finally:
            consumer.close()

    @staticmethod
    def _pull_ends(consumer: Consumer, tps: list[TopicPartition]) -> dict[int, int]:
        """For a pull query: the end offset of every non-empty partition when it started."""
        ends: dict[int, int] = {}
        for tp in tps:
            lo, hi = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            if hi > lo:
                ends[tp.partition] = hi
        return ends

    def _pull_done(self, consumer: Consumer, ends: dict[int, int]) -> bool:
        for tp in consumer.position([TopicPartition(self.topic, p) for p in ends]):
            if tp.offset >= ends[tp.partition]:
                ends.pop(tp.partition, None)
        return not ends

    @property
    def limit_reached(self) -> bool:
        """Whether the query stopped because its LIMIT was reached (LIMIT 0 included)."""
        return self.limit is not None and self.sent >= self.limit

    def _emit(self, messages: list[Any]) -> bool:
        """Evaluate and hand over one consumed batch; False when the query is done (LIMIT
        reached, or stopped while its client was not reading)."""
        rows = self._input_rows(messages)
        batch: list[list[Any]] = []
        for values in self._results(rows):
            if values is None:
                continue
            batch.append([to_json(v, t) for v, t in zip(values, self.types, strict=True)])
            if self.limit is not None and self.sent + len(batch) >= self.limit:
                break
        if batch:
            self.sent += len(batch)
            if not self._put(batch):
                return False
        return self.limit is None or self.sent < self.limit

    def _input_rows(self, messages: list[Any]) -> list[list[Any]]:
        """The rows a consumed batch gives the projection (a join: runtime/join_query.py)."""
        return self.processor.rows(messages)

    def _results(self, rows: list[list[Any]]) -> list[tuple[Any, ...] | None]:
        """The projected rows of a batch: filter and projection, or a stateful operator's
        updates (a retraction is None and is not sent)."""
        if self.operator is None:
            if self.plan.source.kind == "TABLE":
                rows = self._table_rows(rows)
            return [values for _row, values in self.processor.evaluate(rows)]
        updates = [values for _group, values, _ts in self.operator.updates(rows)]
        self.stores.committed()  # no changelog: the undo log has nothing to wait for
        return updates

    def _table_rows(self, rows: list[list[Any]]) -> list[list[Any]]:
        """A push query over a table: a null key is no row of it (dropped), a tombstone is the
        key's row with null values (ksqlDB sends it with `tombstone: true`)."""
        null_keys = self.processor.null_keys
        self.processor.tombstones = set()
        return [r for r in rows if id(r) not in null_keys] if null_keys else rows

    async def rows(self) -> AsyncIterator[list[Any]]:
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                self._slots.release()
                for row in item:
                    yield row
        finally:
            self.stop()


__all__ = ["PersistentQuery", "QuerySetup", "TransientQuery", "time"]
