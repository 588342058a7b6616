"""The latency-first batch-closing rule (services/scorer/intake.py, docs/latency.md), fast.

A scripted consumer stands in for librdkafka's local queue: each `consume` call takes what has
"arrived" by then, and, like librdkafka, a call with a timeout waits for `num_messages` records
or the timeout. What is under test is when the intake stops asking: a batch that holds records
closes at the first look that brings nothing more, not after the batch timeout; a scorer that is
behind (more fetched than a batch) gets full batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.common.kafka import consume_available
from services.scorer.intake import Intake, closes_batch

TOPIC = "scoring"


@dataclass
class Record:
    """The part of confluent_kafka.Message the intake reads."""

    _offset: int
    _partition: int = 0

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


class ScriptedConsumer:
    """Records become available at given times (seconds after creation)."""

    def __init__(self, arrivals: list[float]) -> None:
        self._start = time.monotonic()
        self._arrivals = sorted(arrivals)
        self._next = 0
        self.calls: list[tuple[int, float]] = []

    def _available(self) -> int:
        now = time.monotonic() - self._start
        return sum(1 for t in self._arrivals[self._next :] if t <= now)

    def consume(self, num_messages: int, timeout: float) -> list[Record]:
        self.calls.append((num_messages, timeout))
        deadline = time.monotonic() + timeout
        while self._available() < num_messages and time.monotonic() < deadline:
            time.sleep(0.001)
        take = min(num_messages, self._available())
        out = [Record(self._next + i) for i in range(take)]
        self._next += take
        return out


def collect(
    consumer: ScriptedConsumer, batch_size: int, timeout_ms: int
) -> tuple[int, bool, float]:
    intake = Intake(TOPIC, batch_size, timeout_ms)
    intake.assign({(TOPIC, 0)})
    started = time.monotonic()
    batch = intake.collect(consumer, lambda: False, stop_at_end=False)  # type: ignore[arg-type]
    return len(batch.messages), batch.full, time.monotonic() - started


def test_the_rule() -> None:
    assert not closes_batch(0, 0), "an empty batch waits for its first record"
    assert closes_batch(3, 0), "nothing more came: close"
    assert not closes_batch(3, 2), "more came: keep taking"


def test_caught_up_batch_closes_at_once_not_after_the_timeout() -> None:
    consumer = ScriptedConsumer([0.0, 0.0, 0.0])
    size, full, took = collect(consumer, batch_size=100, timeout_ms=2000)
    assert (size, full) == (3, False)
    assert took < 0.5, f"waited {took:.2f} s for a batch the consumer had already fetched"


def test_idle_scorer_takes_the_first_record_as_it_comes() -> None:
    consumer = ScriptedConsumer([0.2])
    size, full, took = collect(consumer, batch_size=100, timeout_ms=3000)
    assert (size, full) == (1, False)
    assert 0.15 <= took < 1.0, took


def test_idle_scorer_gives_up_after_the_timeout() -> None:
    consumer = ScriptedConsumer([])
    size, _full, took = collect(consumer, batch_size=100, timeout_ms=100)
    assert size == 0
    assert 0.09 <= took < 1.0, took


def test_behind_scorer_gets_full_batches() -> None:
    consumer = ScriptedConsumer([0.0] * 250)
    assert collect(consumer, batch_size=100, timeout_ms=1000)[:2] == (100, True)
    assert collect(consumer, batch_size=100, timeout_ms=1000)[:2] == (100, True)
    assert collect(consumer, batch_size=100, timeout_ms=1000)[:2] == (50, False)


def test_consume_available_never_waits_when_records_are_there() -> None:
    consumer = ScriptedConsumer([0.0, 0.0])
    assert len(consume_available(consumer, 10, 5.0)) == 2  # type: ignore[arg-type]
    assert consumer.calls == [(10, 0)]
    assert consume_available(consumer, 10, 0) == []  # type: ignore[arg-type]
