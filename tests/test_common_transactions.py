"""services/common/transactions.py: which Kafka errors are retried or aborted, the bounded call,
and the offsets an open transaction commits and rewinds to (no broker: the decisions only)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from services.common.transactions import (
    OpenTransaction,
    is_fenced,
    requires_abort,
    retry_retriable,
    within,
)


def _failing(errors: list[KafkaError]) -> tuple[list[int], Any]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise KafkaException(errors[len(calls) - 1])
        return "done"

    return calls, call


def test_retriable_errors_are_retried_then_the_call_succeeds() -> None:
    timeout = KafkaError(KafkaError._TIMED_OUT, "coordinator away", retriable=True)
    calls, call = _failing([timeout, timeout])
    assert retry_retriable(call, attempts=3, backoff_s=0) == "done"
    assert len(calls) == 3


def test_retries_are_bounded_and_other_errors_are_not_retried() -> None:
    timeout = KafkaError(KafkaError._TIMED_OUT, "still away", retriable=True)
    calls, call = _failing([timeout] * 5)
    with pytest.raises(KafkaException):
        retry_retriable(call, attempts=3, backoff_s=0)
    assert len(calls) == 3
    abortable = KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "aborted", txn_requires_abort=True)
    calls, call = _failing([abortable])
    with pytest.raises(KafkaException) as raised:
        retry_retriable(call, attempts=3, backoff_s=0)
    assert len(calls) == 1 and requires_abort(raised.value)


def test_error_kinds() -> None:
    assert requires_abort(KafkaException(KafkaError(1, "x", txn_requires_abort=True)))
    assert not requires_abort(KafkaException(KafkaError(1, "x", retriable=True)))
    assert not requires_abort(KafkaException("a message, no KafkaError"))
    assert not requires_abort(ValueError("not Kafka"))
    assert is_fenced(KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True)))
    assert not is_fenced(KafkaException(KafkaError(KafkaError._TIMED_OUT)))


def test_within_returns_raises_or_gives_up_on_a_blocked_call() -> None:
    assert within(lambda: 42, 1.0, "quick") == 42
    with pytest.raises(ZeroDivisionError):
        within(lambda: 1 / 0, 1.0, "failing")
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        within(lambda: release.wait(10), 0.2, "blocked")
    release.set()
    err = raised.value.args[0]
    assert err.code() == KafkaError._TIMED_OUT and not err.retriable()
    assert not err.txn_requires_abort() and "blocked" in err.str()
    assert time.monotonic() - started < 2


class _SeekRecorder:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def test_open_transaction_commits_the_next_offsets_and_rewinds_to_the_first() -> None:
    txn = OpenTransaction("src")
    assert not txn
    txn.add({0: 10, 1: 4}, {0: 15, 1: 5}, 6)
    txn.add({0: 15, 2: 7}, {0: 20, 2: 9}, 7)
    assert txn and txn.records == 13
    assert [(tp.partition, tp.offset) for tp in txn.offsets()] == [(0, 20), (1, 5), (2, 9)]
    consumer = _SeekRecorder()
    txn.rewind(consumer)  # type: ignore[arg-type]
    assert consumer.seeks == [("src", 0, 10), ("src", 1, 4), ("src", 2, 7)]
    txn.clear()
    assert not txn and txn.records == 0 and txn.first == {}
