"""Repartition topics: a query's input re-keyed by what its stateful stage groups or joins on.

Why: a join or GROUP BY meets the records of one key in one task only if they sit in one
partition, and a source partitioned by another key does not put them there. ksqlDB (Kafka
Streams) then writes each record, keyed by the new key, to an internal topic
`_confluent-ksql-<service id>query_<query id>-<name>-repartition` (`Join-left`,
`Aggregate-GroupBy`, ...) and the stateful stage reads that topic instead of the source. Here the
same: the query writes the re-keyed record in its own transaction (with the offsets of the
source record), and reads it back from the repartition topic (read_committed) in a later batch.

What a repartition record holds: the new key (its compact JSON, `state.encode`: equal keys,
equal bytes, so one partition), the source record's value bytes and timestamp unchanged, and
the source record's key bytes and time in headers. The stateful stage turns it back into the source
record (`Repartition.originals`) and deserializes it with the source's own deserializers, so
no value changes type on the way; only ROWPARTITION and ROWOFFSET are now the repartition
topic's, as they are in ksqlDB after a repartition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from services.common.checkpoint import Checkpoint
from services.ksql_server.runtime.positions import start_positions
from services.ksql_server.runtime.query import PersistentQuery, QuerySetup
from services.ksql_server.state import encode

SOURCE_KEY_HEADER = "ksql.source.key"
"""The header that carries a re-keyed record's original key bytes (absent: a null key)."""

SOURCE_TIME_HEADER = "ksql.source.time"
"""The header that carries the record's time (8 bytes, big-endian): librdkafka stamps a record
produced with timestamp 0 with the current time, so the record's own timestamp cannot carry it."""

REPARTITION_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1"}
"""Kept until read: records keep their source timestamps, however old (Kafka Streams sets the
same retention on its repartition topics and purges what its commits passed)."""


def repartition_topic(service_id: str, query_id: str, name: str) -> str:
    """ksqlDB's name of a query's repartition topic (before the server's topic prefix)."""
    return f"_confluent-ksql-{service_id}query_{query_id}-{name}-repartition"


def key_bytes(key: Any) -> bytes | None:
    """The repartition key of a new key value (None: a null key, any partition)."""
    return None if key is None else encode(key)


@dataclass
class Repartition:
    """One repartition topic of a query: `topic` (physical), fed from `source_topic`."""

    name: str
    topic: str
    source_topic: str
    partitions: int

    def create(self, ensure_topic: Callable[..., Any]) -> None:
        """The topic, as many partitions as the source (ksqlDB's default)."""
        ensure_topic(self.topic, self.partitions, 1, dict(REPARTITION_CONFIG))

    def send(self, producer: Producer, message: Message, key: Any, timestamp: int) -> None:
        """Write one source record re-keyed by `key` (the caller's transaction is open)."""
        original = message.key()
        headers: list[tuple[str, str | bytes | None]] = [
            (SOURCE_TIME_HEADER, timestamp.to_bytes(8, "big", signed=True))
        ]
        if original is not None:
            headers.append((SOURCE_KEY_HEADER, original))
        producer.produce(
            self.topic,
            message.value(),
            key_bytes(key),
            timestamp=timestamp,
            headers=headers,
        )

    def originals(self, messages: Sequence[Message]) -> list[Message]:
        """Records read from the repartition topic, as the source records they were (their
        own topic, partition and offset: what the consumer commits)."""
        out: list[Message] = []
        for m in messages:
            key: bytes | None = None
            timestamp = m.timestamp()
            for header in m.headers() or []:
                name, value = header[0], header[1]
                if not isinstance(value, bytes):
                    continue
                if name == SOURCE_KEY_HEADER:
                    key = value
                elif name == SOURCE_TIME_HEADER:
                    timestamp = (timestamp[0], int.from_bytes(value, "big", signed=True))
            out.append(
                Message(
                    topic=m.topic(),
                    partition=m.partition(),
                    offset=m.offset(),
                    key=key,
                    value=m.value(),
                    timestamp=timestamp,
                )
            )
        return out


class RepartitionedQuery(PersistentQuery):
    """A persistent GROUP BY over a stream grouped by something else than its key
    (`AggregationPlan.repartition`): source records go to the repartition topic keyed by their
    group, and the aggregation reads them from there (`read_topic`)."""

    def __init__(self, setup: QuerySetup) -> None:
        super().__init__(setup)
        name = setup.plan.stateful.repartition
        physical = self.ctx.physical(repartition_topic(setup.service_id, self.query_id, name))
        partitions = self.ctx.topic_partitions(self.source_topic) or 1
        self.repartition = Repartition(name, physical, self.source_topic, partitions)
        self.read_topic = physical
        self._internal: list[TopicPartition] = []

    def _assign_internal(self, consumer: Consumer) -> None:
        """The repartition topic joins the assignment, from its committed offsets."""
        rp = self.repartition
        rp.create(self.ctx.ensure_topic)
        tps = [TopicPartition(rp.topic, p) for p in range(rp.partitions)]
        # nothing committed: all of it (it only holds what this query wrote)
        start = start_positions(consumer, tps, "earliest", use_committed=True, resolve=True)
        consumer.incremental_assign(start)
        self._internal = tps

    def _process(self, messages: list[Any], checkpoint: Checkpoint) -> None:
        source = [m for m in messages if m.topic() == self.source_topic]
        if source:
            self._rekey(source, checkpoint)
        again = [m for m in messages if m.topic() == self.read_topic]
        if again:
            super()._process(self.repartition.originals(again), checkpoint)

    def _rekey(self, messages: list[Any], checkpoint: Checkpoint) -> None:
        """Source records to the repartition topic, keyed by their group (WHERE applied
        first, as ksqlDB filters before it groups), in the open transaction that commits
        their offsets. A null value goes no further (the aggregation skips it); a null group
        goes on with no key (the aggregation logs and skips it)."""
        proc = self.processor
        spec = self.plan.stateful
        n_group = len(spec.group_types)
        rows = proc.rows(messages)
        live = [r for r in rows if id(r) not in proc.tombstones]
        errors: dict[int, list[tuple[str, BaseException]]] = {}

        def log(row: Any, column: str, exc: BaseException) -> None:
            errors.setdefault(id(row), []).append((column, exc))

        kept = spec.pre(live, log)
        checkpoint.add(messages, self.source_topic, len(self._positions))
        self.processed += len(messages)
        by_offset = {(m.partition(), m.offset()): m for m in messages}
        with checkpoint.aborting():
            for row, pre in kept:
                group = list(pre[:n_group])
                key = None if any(g is None for g in group) else group
                message = by_offset[(row[-2], row[-1])]
                self.repartition.send(checkpoint.producer, message, key, row[-3])
            checkpoint.producer.poll(0)
        dropped = {id(row) for row in live} - {id(row) for row, _pre in kept}
        for rid in dropped & errors.keys():  # the aggregation never sees these: log here
            for column, exc in errors[rid]:
                self._log_error(column, exc)

    def _log_error(self, column: str, exc: BaseException) -> None:
        self.processor.plog(
            self.query_id,
            "Aggregate",
            f"Error computing expression {column}: {exc}",
            None,
            code="expression",
        )

    def _check_caught_up(self, consumer: Consumer) -> None:
        before = self._caught[0]
        super()._check_caught_up(consumer)
        checked_at, caught = self._caught
        if checked_at == before or not caught:  # not looked at now, or the source is behind
            return
        for tp in consumer.position(self._internal):
            _lo, hi = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            if tp.offset < hi:
                self._caught = (checked_at, False)
                return

    def delete_state(self) -> None:
        super().delete_state()
        try:
            self.ctx.delete_topic(self.repartition.topic)
        except Exception:  # the query is gone either way
            return


__all__ = [
    "REPARTITION_CONFIG",
    "SOURCE_KEY_HEADER",
    "SOURCE_TIME_HEADER",
    "Repartition",
    "RepartitionedQuery",
    "key_bytes",
    "repartition_topic",
]
