"""Kafka transactions that outlive broker trouble: retry, abort-and-rewind, start over.

A consume-transform-produce loop under exactly-once meets three kinds of error (KIP-98/KIP-360
and librdkafka's classification): *retriable* ones (a timeout while the broker restarts: call
again), *abortable* ones (the transaction cannot commit, e.g. the coordinator aborted it after
`transaction.timeout.ms`: abort, seek the consumer back to where the transaction began, read
again) and *fatal* ones (the producer is fenced or in an unknown state: drop the clients and
start again from the committed offsets; `init_transactions` with the same transactional id
aborts whatever the old producer left open).

The KSQL server's persistent queries and the scorer use this module: `commit_transaction` and
`abort_transaction` are the bounded, retried calls both make, and a caller that gets any other
error from them drops its clients and starts again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

TXN_CALL_TIMEOUT_S = 10.0
"""each transactional call's own timeout: short, since after a broker restart a new producer
(which fences a stuck one) is the way out rather than a longer wait"""
TXN_CALL_ATTEMPTS = 3


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


def commit_transaction(
    producer: Producer,
    offsets: list[TopicPartition],
    group_metadata: Any,
    timeout_s: float = TXN_CALL_TIMEOUT_S,
    attempts: int = TXN_CALL_ATTEMPTS,
) -> None:
    """Commit the open transaction with these consumed offsets: `send_offsets_to_transaction`
    on a helper thread (`within`), then `commit_transaction`, each retried a few times while
    retriable. An abortable error means abort-and-rewind; any other (a fatal producer, a call
    still blocked) means new clients."""
    retry_retriable(
        lambda: within(
            lambda: producer.send_offsets_to_transaction(offsets, group_metadata, timeout_s),
            timeout_s + 5,
            "send_offsets_to_transaction",
        ),
        attempts,
    )
    retry_retriable(lambda: producer.commit_transaction(timeout_s), attempts)


def abort_transaction(
    producer: Producer, timeout_s: float = TXN_CALL_TIMEOUT_S, attempts: int = TXN_CALL_ATTEMPTS
) -> None:
    """Abort the open transaction, retried a few times while retriable."""
    retry_retriable(lambda: producer.abort_transaction(timeout_s), attempts)


def requires_abort(exc: BaseException) -> bool:
    """An error after which the open transaction must be aborted (and can be)."""
    err = kafka_error(exc)
    return err is not None and err.txn_requires_abort()


def is_fenced(exc: BaseException) -> bool:
    """Another producer with the same transactional id took over: this one must stop."""
    err = kafka_error(exc)
    return err is not None and err.code() == KafkaError._FENCED


@dataclass
class OpenTransaction:
    """The consumed offsets an open transaction covers: where to seek back to on an abort
    (`first`) and what to commit with it (`next`), per partition of one source topic."""

    topic: str
    first: dict[int, int] = field(default_factory=dict)
    next: dict[int, int] = field(default_factory=dict)
    records: int = 0

    def add(self, first: dict[int, int], following: dict[int, int], records: int) -> None:
        """A consumed batch joins the transaction (before its output is produced, so an abort
        rewinds it too)."""
        for partition, offset in first.items():
            self.first.setdefault(partition, offset)
        self.next.update(following)
        self.records += records

    def offsets(self) -> list[TopicPartition]:
        """The offsets to commit: each partition's next record."""
        return [TopicPartition(self.topic, p, o) for p, o in sorted(self.next.items())]

    def rewind(self, consumer: Consumer) -> None:
        """Seek the consumer back to the first record of each partition the transaction read."""
        for partition, offset in sorted(self.first.items()):
            consumer.seek(TopicPartition(self.topic, partition, offset))

    def clear(self) -> None:
        self.first, self.next, self.records = {}, {}, 0

    def __bool__(self) -> bool:
        return bool(self.next)


__all__ = [
    "TXN_CALL_ATTEMPTS",
    "TXN_CALL_TIMEOUT_S",
    "OpenTransaction",
    "abort_transaction",
    "commit_transaction",
    "is_fenced",
    "kafka_error",
    "requires_abort",
    "retry_retriable",
    "within",
]
