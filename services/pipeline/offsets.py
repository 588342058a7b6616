"""Where a run starts on each topic, and what it added: the pipeline's bookkeeping.

`fraudstream run` may be run again on the same topics, so every figure it reports is a difference
between the end offsets captured before it produced and the ones after, and every consumer it
starts (trainer, scorer) begins exactly at the run's first record of its topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services.common.errors import ServiceUnavailable
from services.common.kafka import end_offsets, make_consumer, quiet_logging


@dataclass(frozen=True)
class TopicMark:
    """End offset of every partition of a topic at one moment (empty: topic absent)."""

    topic: str
    ends: dict[int, int]

    def added_since(self, earlier: TopicMark) -> int:
        return sum(end - earlier.ends.get(p, 0) for p, end in self.ends.items())


def mark(topic: str, bootstrap: str | None = None) -> TopicMark:
    consumer = make_consumer("fraudstream-run-probe", bootstrap, **quiet_logging())
    try:
        return TopicMark(topic, end_offsets(consumer, topic))
    except (ServiceUnavailable, KafkaException):  # not created yet
        return TopicMark(topic, {})
    finally:
        consumer.close()


def start_group_at(group: str, start: TopicMark, bootstrap: str | None = None) -> None:
    """Commit `start` as the group's offsets, so a consumer of `group` reads exactly from there
    (partitions that did not exist yet start at 0)."""
    consumer: Consumer = make_consumer(group, bootstrap)
    try:
        meta = consumer.list_topics(start.topic, timeout=10).topics[start.topic]
        offsets = [
            TopicPartition(start.topic, p, start.ends.get(p, 0)) for p in sorted(meta.partitions)
        ]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()
