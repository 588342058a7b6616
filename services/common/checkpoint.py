"""One checkpoint for every consume-transform-produce loop: the scorer and each KSQL query.

A loop under exactly-once follows confluent-kafka-python's `examples/eos_transactions.py`
(begin a transaction, produce the outputs of what was consumed, send the next offsets with
`send_offsets_to_transaction`, `commit_transaction`), so the outputs and the input offsets become
visible together or not at all, with one change of order: the offsets of a transaction's first
batch are sent as it begins, *before* its outputs, and the commit sends them again only if more
batches joined. A transaction that begins while the coordinator still writes the last one's
commit markers is refused (CONCURRENT_TRANSACTIONS); librdkafka retries a refused
`AddOffsetsToTxn` after `retry.backoff.ms` (2 ms here) but a refused `AddPartitionsToTxn`, which
the first produce triggers, after a fixed 20 ms. Sending the offsets first lets the short retry
wait out the markers, so the partitions register at the first try: one transaction in six paid
the 20 ms before (docs/latency.md, sixth pass). Like quix-streams'
`Checkpoint`, one object owns what that needs, so the loops only consume, transform and ask:

- the open transaction and the offsets it covers (`BatchOffsets`: the first offset of each
  partition, where to seek back to, and the next one, what to commit);
- when it is due (`due`: enough records, or open long enough; a commit costs two broker round
  trips, so while a loop is behind one transaction spans several batches, as Kafka Streams'
  `commit.interval.ms` does);
- the commit, and the callbacks that count what it made visible;
- what a Kafka error means. librdkafka (KIP-98/KIP-360) sorts them into *retriable* (a timeout
  while the broker restarts: call again), *abortable* (the transaction cannot commit, e.g. the
  coordinator aborted it after `transaction.timeout.ms`) and *fatal* (the producer is fenced or
  in an unknown state). A retriable error that retries did not resolve, or an abortable one,
  aborts the transaction and seeks the consumer back to the first uncommitted offset of every
  partition, so the loop reads exactly the uncommitted records again (`TransactionAborted`).
  Anything else is raised: the loop drops its clients and starts again from the committed
  offsets; `init_transactions` with the same transactional id aborts whatever the old producer
  left open (`transactional_producer`).

At-least-once uses the same object without a transaction: a commit flushes the producer, then
commits the offsets; a crash repeats what was produced since the last commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from services.common.errors import FraudstreamError
from services.common.kafka import Config, first_offsets, next_offsets

log = logging.getLogger("fraudstream.checkpoint")

TXN_CALL_TIMEOUT_S = 10.0
"""each transactional call's own timeout: short, since after a broker restart a new producer
(which fences a stuck one) is the way out rather than a longer wait"""
TXN_CALL_ATTEMPTS = 3
TRANSACTION_TIMEOUT_MS = 60_000
FLUSH_TIMEOUT_S = 60.0
TXN_RETRY_BACKOFF_MS = 2
"""A transactional producer's first retry backoff (librdkafka: 100 ms, doubling up to
`retry.backoff.max.ms`, 1 s). A loop that begins its next transaction as soon as the last one
committed sends `AddOffsetsToTxn` while the coordinator still writes the last one's commit
markers; the coordinator answers CONCURRENT_TRANSACTIONS and librdkafka retries after the
backoff, so with 100 ms nearly every transaction of a busy loop waited 100 ms (docs/latency.md).
The markers take a few ms on a quiet broker: 2 ms retries catch them (a transaction's
`send_offsets_to_transaction` p50 7.5 ms with 5, 4 ms with 2, docs/latency.md fourth pass)."""
TXN_RETRY_BACKOFF_MAX_MS = 10
"""The ceiling of the doubling (librdkafka: 1 s). Left at 1 s, a commit whose markers were slow
went 5, 10, 20, 40, 80 ms between retries and one transaction waited up to 240 ms; with a 10 ms
ceiling a retry comes every 10 ms at worst, a few more cheap requests to a broker in trouble."""

Partition = tuple[str, int]
"""(topic, partition)"""


class TransactionAborted(FraudstreamError):
    """The open transaction could not commit: it was aborted and the consumer sought back to the
    first uncommitted offsets, so the caller drops what it collected and reads again."""

    default_code = "transaction_aborted"

    def __init__(self, message: str, rewound: dict[Partition, int], records: int) -> None:
        super().__init__(message)
        self.rewound = rewound
        """the offsets the consumer was sought back to"""
        self.records = records
        """the records the aborted transaction covered (to be read again)"""


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The KafkaError inside a KafkaException, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def retry_retriable(call: Callable[[], Any], attempts: int = 5, backoff_s: float = 0.2) -> Any:
    """Call, again while librdkafka says the error is retriable (backing off a little more each
    time); the last error, or any other, is raised."""
    for attempt in range(attempts):
        try:
            return call()
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and err.retriable() and attempt < attempts - 1:
                time.sleep(backoff_s * (attempt + 1))
                continue
            raise
    raise AssertionError("unreachable")


def within(call: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Call on a helper thread and wait at most `timeout_s`: librdkafka's
    `send_offsets_to_transaction` can block past its own timeout when the group coordinator went
    away (confluentinc/librdkafka#5456). A call still running then raises a plain (neither
    retriable nor abortable) timeout, so the caller drops the producer and starts a new one,
    which fences the stuck one; the helper thread ends whenever librdkafka lets go."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"kafka-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise KafkaException(
            KafkaError(KafkaError._TIMED_OUT, f"{what} still blocked after {timeout_s:.0f} s")
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def requires_abort(exc: BaseException) -> bool:
    """An error after which the open transaction must be aborted (and can be)."""
    err = kafka_error(exc)
    return err is not None and err.txn_requires_abort()


def is_retriable(exc: BaseException) -> bool:
    err = kafka_error(exc)
    return err is not None and err.retriable()


def is_fenced(exc: BaseException) -> bool:
    """Another producer with the same transactional id took over: this one must stop."""
    err = kafka_error(exc)
    return err is not None and err.code() == KafkaError._FENCED


def transactional_producer(
    config: Config,
    transactional_id: str,
    transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS,
    init_timeout_s: float = 30.0,
) -> Producer:
    """A producer with this transactional id, initialised: `init_transactions` fences any
    earlier producer with the id and aborts whatever it left open. Its retry backoff is short
    (`TXN_RETRY_BACKOFF_MS`, at most `TXN_RETRY_BACKOFF_MAX_MS`) unless `config` sets one."""
    producer = Producer(
        {
            "retry.backoff.ms": TXN_RETRY_BACKOFF_MS,
            "retry.backoff.max.ms": TXN_RETRY_BACKOFF_MAX_MS,
            **config,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": transaction_timeout_ms,
        }
    )
    retry_retriable(lambda: producer.init_transactions(init_timeout_s))
    return producer


@dataclass
class BatchOffsets:
    """The consumed offsets a checkpoint covers, per (topic, partition): where to seek back to
    on an abort (`first`) and what to commit (`next`)."""

    first: dict[Partition, int] = field(default_factory=dict)
    next: dict[Partition, int] = field(default_factory=dict)
    records: int = 0

    def add(self, messages: Sequence[Message], topic: str, partitions: int) -> None:
        """A consumed batch of `topic` (of which `partitions` are assigned) joins."""
        for p, offset in first_offsets(messages, partitions).items():
            self.first.setdefault((topic, p), offset)
        for p, offset in next_offsets(messages, partitions).items():
            self.next[(topic, p)] = offset
        self.records += len(messages)

    def offsets(self, only: Collection[Partition] | None = None) -> list[TopicPartition]:
        """The offsets to commit (each partition's next record), of `only` these if given."""
        return [
            TopicPartition(t, p, o)
            for (t, p), o in sorted(self.next.items())
            if only is None or (t, p) in only
        ]

    def __bool__(self) -> bool:
        return bool(self.next)


class Checkpoint:
    """The open transaction of one consumer/producer pair (see the module docstring).

    `owned` (optional) says which partitions the consumer holds now: only those are sought
    back after an abort and committed under at-least-once (a subscribed consumer loses
    partitions in rebalances). `on_abort` is called with the error of an aborted transaction
    (what was sought back) before it is raised.
    """

    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        *,
        exactly_once: bool = True,
        commit_interval_s: float = 0.1,
        commit_records: int = 50_000,
        owned: Callable[[], Collection[Partition]] | None = None,
        on_abort: Callable[[TransactionAborted], None] | None = None,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.exactly_once = exactly_once
        self.commit_interval_s = commit_interval_s
        self.commit_records = commit_records
        self._owned = owned
        self._on_abort = on_abort
        self.offsets = BatchOffsets()
        self._after_commit: list[Callable[[], None]] = []
        self._opened_at = 0.0
        self._in_transaction = False
        self._sent: dict[Partition, int] = {}
        """the offsets the open transaction holds (a copy of `offsets.next` when last sent)"""
        self.commits = 0
        self.aborts = 0

    # ------------------------------------------------------------------ the open transaction
    def add(self, messages: Sequence[Message], topic: str, partitions: int) -> None:
        """A consumed batch joins, before its outputs are produced (so an abort rewinds it
        too); under exactly-once this begins a transaction if none is open and sends the
        batch's offsets into it before anything is produced (the module docstring says why)."""
        if not messages:
            return
        if not self.offsets:
            self._opened_at = time.monotonic()
        self.offsets.add(messages, topic, partitions)
        if self.exactly_once and not self._in_transaction:
            with self.aborting():
                self.producer.begin_transaction()
                self._in_transaction = True
                self._send_offsets()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once what is open now is committed (dropped if it aborts)."""
        self._after_commit.append(callback)

    @property
    def pending(self) -> int:
        """Records consumed and not committed yet."""
        return self.offsets.records

    def due(self, now: float | None = None) -> bool:
        """Something is open and it holds enough records or has been open long enough."""
        if not self.offsets:
            return False
        if self.offsets.records >= self.commit_records:
            return True
        return (now or time.monotonic()) - self._opened_at >= self.commit_interval_s

    # ------------------------------------------------------------------ commit / abort
    def commit(self, skip: Collection[Partition] = ()) -> BatchOffsets | None:
        """Commit what is open: outputs and next offsets together (exactly-once), or flush then
        commit the offsets (at-least-once); then run the `after_commit` callbacks. Returns the
        committed offsets (None when nothing was open). `skip`: partitions being revoked, not
        to be sought back if the commit aborts."""
        if not self.offsets:
            return None
        with self.aborting(skip):
            if self.exactly_once:
                self._commit_transaction()
            else:
                self._commit_at_least_once()
        done, callbacks = self.offsets, self._after_commit
        self._reset()
        self.commits += 1
        for callback in callbacks:
            callback()
        return done

    def aborting(self, skip: Collection[Partition] = ()) -> _Aborting:
        """A context in which a retriable (retries exhausted) or abortable Kafka error aborts
        the open transaction, rewinds the consumer and raises TransactionAborted; other errors
        pass through (the caller starts again with new clients)."""
        return _Aborting(self, skip)

    def abort(self, cause: BaseException, skip: Collection[Partition] = ()) -> TransactionAborted:
        """Abort the open transaction and seek back to its first offsets; the error to raise."""
        log.warning(
            "transaction aborted; re-reading its records", extra={"fields": {"error": str(cause)}}
        )
        if self._in_transaction:
            retry_retriable(
                lambda: self.producer.abort_transaction(TXN_CALL_TIMEOUT_S), TXN_CALL_ATTEMPTS
            )
        aborted = TransactionAborted(
            f"transaction aborted: {cause}", self._rewind(skip), self.offsets.records
        )
        self._reset()
        self.aborts += 1
        if self._on_abort is not None:
            self._on_abort(aborted)
        return aborted

    def _commit_transaction(self) -> None:
        """The offsets, unless the transaction already holds these (one batch), then
        `commit_transaction`, retried a few times while retriable."""
        self._send_offsets()
        retry_retriable(
            lambda: self.producer.commit_transaction(TXN_CALL_TIMEOUT_S), TXN_CALL_ATTEMPTS
        )

    def _send_offsets(self) -> None:
        """`send_offsets_to_transaction` of the offsets open now, on a helper thread (`within`),
        retried a few times while retriable; nothing when these were the last ones sent."""
        if self.offsets.next == self._sent:
            return
        offsets = self.offsets.offsets()
        metadata = self.consumer.consumer_group_metadata()
        send = self.producer.send_offsets_to_transaction
        retry_retriable(
            lambda: within(
                lambda: send(offsets, metadata, TXN_CALL_TIMEOUT_S),
                TXN_CALL_TIMEOUT_S + 5,
                "send_offsets_to_transaction",
            ),
            TXN_CALL_ATTEMPTS,
        )
        self._sent = dict(self.offsets.next)

    def _commit_at_least_once(self) -> None:
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        if remaining:  # a Kafka error like any other: the loop starts again with new clients
            raise KafkaException(
                KafkaError(
                    KafkaError._TIMED_OUT,
                    f"{remaining} records not delivered within {FLUSH_TIMEOUT_S:.0f} s; "
                    "offsets not committed",
                )
            )
        owned = self._owned() if self._owned is not None else None
        offsets = self.offsets.offsets(owned)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # the next commit covers these offsets too
            log.warning(
                "offset commit failed (records will be read again after a restart)",
                extra={"fields": {"error": str(exc)}},
            )

    def _rewind(self, skip: Collection[Partition]) -> dict[Partition, int]:
        owned = self._owned() if self._owned is not None else None
        rewound: dict[Partition, int] = {}
        for (topic, partition), offset in sorted(self.offsets.first.items()):
            if (topic, partition) in skip or (
                owned is not None and (topic, partition) not in owned
            ):
                continue
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning(
                    "seek failed", extra={"fields": {"partition": partition, "error": str(exc)}}
                )
                continue
            rewound[(topic, partition)] = offset
        return rewound

    def _reset(self) -> None:
        self.offsets = BatchOffsets()
        self._after_commit = []
        self._in_transaction = False
        self._sent = {}


class _Aborting:
    """The context manager of `Checkpoint.aborting`."""

    def __init__(self, checkpoint: Checkpoint, skip: Collection[Partition]) -> None:
        self._checkpoint = checkpoint
        self._skip = skip

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        checkpoint = self._checkpoint
        if exc is None or not checkpoint.exactly_once or not isinstance(exc, KafkaException):
            return
        if requires_abort(exc) or is_retriable(exc):
            raise checkpoint.abort(exc, self._skip) from exc


__all__ = [
    "TRANSACTION_TIMEOUT_MS",
    "TXN_CALL_ATTEMPTS",
    "TXN_CALL_TIMEOUT_S",
    "TXN_RETRY_BACKOFF_MAX_MS",
    "TXN_RETRY_BACKOFF_MS",
    "BatchOffsets",
    "Checkpoint",
    "TransactionAborted",
    "is_fenced",
    "is_retriable",
    "kafka_error",
    "requires_abort",
    "retry_retriable",
    "transactional_producer",
    "within",
]
