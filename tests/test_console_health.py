"""The console's health sampler against the real broker: end offsets summed per topic, read in
one ListOffsets request for every partition instead of one request per partition."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from services.common.kafka import (
    delete_topics,
    ensure_topic,
    make_admin,
    make_consumer,
    quiet_logging,
    watermarks,
)
from services.console.config import ConsoleConfig
from services.console.health import HealthSampler

pytestmark = pytest.mark.slow


def test_end_offsets_are_summed_per_topic_over_every_partition(
    kafka_bootstrap: str, topic_name: str, unique: str
) -> None:
    busy, empty = f"{topic_name}_busy", f"{topic_name}_empty"
    ensure_topic(busy, partitions=3, bootstrap=kafka_bootstrap)
    ensure_topic(empty, partitions=2, bootstrap=kafka_bootstrap)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(30):  # unevenly over the partitions
        producer.produce(busy, b"x", partition=i % 3 if i < 20 else 0)
    producer.flush(10)
    config = ConsoleConfig(
        start_readers=False,
        source_topic=busy,
        preprocessed_topic=empty,
        scoring_topic=f"{topic_name}_missing",
        alerts_topic=f"{topic_name}_missing_too",
    )
    sampler = HealthSampler(config)
    admin = make_admin(kafka_bootstrap, quiet=True)
    consumer = make_consumer(f"health-{unique}", kafka_bootstrap, **quiet_logging())
    try:
        ends = sampler._ends(admin)
        per_partition = {p: high for p, (_low, high) in watermarks(consumer, busy).items()}
    finally:
        consumer.close()
        delete_topics([busy, empty], bootstrap=kafka_bootstrap)
    assert per_partition == {0: 17, 1: 7, 2: 6}
    # a topic that does not exist yet is left out, not reported as 0
    assert ends == {busy: 30, empty: 0}
