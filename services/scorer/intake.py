"""The scorer's batch intake: what the consumer has fetched, up to `batch_size` records, and
what it knows about the partitions it reads (assigned, at their end, revoked).

Latency first (docs/latency.md): an idle scorer waits up to `batch_timeout_ms` for the first
record of a batch, then takes only what the consumer has already fetched; the batch closes as
soon as a look finds nothing more, not after a fixed timeout, and the scorer commits it at once.
While the scorer is behind, the consumer's queue holds more than a batch, batches come full and
the scorer lets one transaction span several (services/common/checkpoint.py).

Records collected before a rebalance revoked their partition are dropped (neither produced nor
committed: the next owner reads them from the committed offset), and so is everything collected
before the checkpoint rewound the consumer after an abort (it will be read again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from services.common.checkpoint import Partition
from services.common.kafka import consume_available, end_offsets, next_offsets

log = logging.getLogger("fraudstream.scorer")


@dataclass
class Batch:
    messages: list[Message]
    full: bool
    """batch_size records came: the scorer is behind"""


def closes_batch(collected: int, came: int) -> bool:
    """The batch-closing rule: a batch that holds records closes when a look at the consumer
    (without waiting) brings nothing more. An empty batch keeps waiting for its first record
    (up to the idle timeout); a full one closes on its size."""
    return collected > 0 and came == 0


class Intake:
    """Collects batches and tracks the partitions of one consumer (reset with new clients)."""

    def __init__(self, topic: str, batch_size: int, batch_timeout_ms: int) -> None:
        self.topic = topic
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_ms / 1000
        self.assigned: set[Partition] = set()
        self._at_end: set[Partition] = set()
        self._revoked: set[Partition] = set()
        self._ends: dict[int, int] = {}
        self._rewound: dict[Partition, int] = {}
        self.seen = 0

    def reset(self) -> None:
        """New clients: nothing is assigned, at its end or rewound."""
        self.assigned.clear()
        self._at_end.clear()
        self._revoked.clear()
        self._rewound = {}

    def read_ends(self, consumer: Consumer) -> None:
        """Remember the end offsets now (`--stop-at-end`)."""
        self._ends = end_offsets(consumer, self.topic)

    # ------------------------------------------------------------------ partitions
    def assign(self, keys: set[Partition]) -> None:
        self.assigned |= keys
        self._at_end -= keys

    def revoke(self, keys: set[Partition]) -> None:
        self.assigned -= keys
        self._revoked |= keys

    def rewound(self, offsets: dict[Partition, int]) -> None:
        """The checkpoint sought these partitions back (inside a rebalance callback, during a
        `consume`): what was collected of them is read again."""
        self._at_end -= set(offsets)
        self._rewound.update(offsets)

    def reached_end(self) -> bool:
        return bool(self.assigned) and self.assigned <= self._at_end

    # ------------------------------------------------------------------ collecting
    def collect(self, consumer: Consumer, stopping: Callable[[], bool], stop_at_end: bool) -> Batch:
        """Up to batch_size records, minus any of revoked partitions: the first one waited for
        (at most batch_timeout_ms), the rest only if already fetched."""
        messages: list[Message] = []
        deadline = time.monotonic() + self.batch_timeout_s
        self._revoked.clear()
        self._rewound = {}
        while len(messages) < self.batch_size and not stopping():
            wait = 0.0 if messages else deadline - time.monotonic()
            if wait < 0:
                break
            got = consume_available(consumer, self.batch_size - len(messages), wait)
            if self._rewound:
                messages, got = self._drop_rewound(consumer, messages, got)
            if self._revoked:
                # Collected before the revocation: not ours to commit any more.
                messages = [m for m in messages if (m.topic(), m.partition()) not in self._revoked]
                self._revoked.clear()
            errors = [m for m in got if m.error() is not None]
            if errors:
                got = [m for m in got if m.error() is None]
                self._handle_errors(errors)
            if closes_batch(len(messages), len(got)):
                break
            messages.extend(got)
            if stop_at_end and not got and self.reached_end():
                break
        self._mark_ends(messages)
        self.seen += len(messages)
        return Batch(messages, len(messages) >= self.batch_size)

    def lag(self, consumer: Consumer) -> dict[int, int]:
        """Records behind the end, per assigned partition ({} when the broker does not say).
        From the high watermarks of the last fetch responses (cached): a look at the broker would
        hold the loop, and the records waiting behind it, for a round trip per partition."""
        lags: dict[int, int] = {}
        try:
            tps = [TopicPartition(t, p) for t, p in sorted(self.assigned)]
            for tp in consumer.position(tps):
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
                unknown = tp.offset in (OFFSET_INVALID, OFFSET_BEGINNING, OFFSET_END)
                lags[tp.partition] = max(0, high - (high if unknown else tp.offset))
        except KafkaException as exc:
            log.debug("lag not updated", extra={"fields": {"error": str(exc)}})
        return lags

    def _drop_rewound(
        self, consumer: Consumer, messages: list[Message], got: list[Message]
    ) -> tuple[list[Message], list[Message]]:
        """A commit failed during a rebalance and the checkpoint sought some partitions back:
        what was collected of them is dropped and they are sought there again, now that
        `consume` has returned (records it fetched after the first seek would otherwise be
        dropped unread). Other partitions' records stay: nothing rewinds them."""
        rewound, self._rewound = self._rewound, {}

        def keep(batch: list[Message]) -> list[Message]:
            return [m for m in batch if (m.topic() or "", m.partition() or 0) not in rewound]

        for (topic, partition), offset in rewound.items():
            if (topic, partition) in self.assigned:
                consumer.seek(TopicPartition(topic, partition, offset))
        return keep(messages), keep(got)

    def _mark_ends(self, messages: list[Message]) -> None:
        if not self._ends:
            return
        for partition, offset in next_offsets(messages, len(self.assigned)).items():
            if partition in self._ends and offset >= self._ends[partition]:
                self._at_end.add((self.topic, partition))

    def _handle_errors(self, errors: list[Message]) -> None:
        for msg in errors:
            err = msg.error()
            if err is None:
                continue
            if err.code() == KafkaError._PARTITION_EOF:
                self._at_end.add((msg.topic() or "", msg.partition() or 0))
            elif err.fatal() or err.code() == KafkaError._FATAL:
                raise KafkaException(err)
            else:
                log.warning("consumer error", extra={"fields": {"error": str(err)}})
