"""Where a query starts reading: every partition of its input topics, and the offset of each.

Persistent queries, push queries and joins all start the same way: wait (bounded) for each
input topic to exist, then take every partition from the group's committed offset or, without
one, from `auto.offset.reset`. Kept in one place so the three cannot drift apart (they had: the
push query over a join did not wait for its topics, the others did).
"""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

TOPIC_WAIT_S = 15.0
"""How long a starting query waits for an input topic to appear (a sink another query is still
creating) before it fails."""


def partitions_of(
    consumer: Consumer, topic: str, wait_s: float = TOPIC_WAIT_S
) -> list[TopicPartition]:
    """Every partition of `topic` (no offsets), waiting up to `wait_s` for the topic to exist."""
    deadline = time.monotonic() + wait_s
    while True:
        # list every topic: asking for one by name would auto-create it on brokers that allow it
        meta = consumer.list_topics(timeout=10).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            return [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        if time.monotonic() > deadline:
            raise KafkaException(f"topic {topic} does not exist")
        time.sleep(0.1)


def start_positions(
    consumer: Consumer,
    partitions: list[TopicPartition],
    reset: str,
    use_committed: bool,
    resolve: bool = False,
) -> list[TopicPartition]:
    """The offset each partition starts from: the group's committed one (`use_committed`) when
    there is one, else the end `reset` names (`earliest` or `latest`): logical, or with
    `resolve` the offset that end is at now (for a query that tracks its positions)."""
    committed = consumer.committed(partitions, timeout=10) if use_committed else partitions
    starts = []
    for tp in committed:
        at = tp.offset if use_committed else -1
        if at < 0:
            at = _reset_offset(consumer, tp, reset, resolve)
        starts.append(TopicPartition(tp.topic, tp.partition, at))
    return starts


def _reset_offset(consumer: Consumer, tp: TopicPartition, reset: str, resolve: bool) -> int:
    if not resolve:
        return OFFSET_BEGINNING if reset == "earliest" else OFFSET_END
    low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
    return int(low if reset == "earliest" else high)
