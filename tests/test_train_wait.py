"""`fraudstream train --wait-rows N`: the wait docker compose's trainer (and `run`) relies on,
against a real broker: it returns once N records are there to read, counts from the group's
offsets, and fails with one line naming how far it got when they do not come."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import TopicPartition

from services.common.errors import FraudstreamError
from services.common.kafka import ensure_topic, make_consumer, make_producer
from services.trainer.ingest import available_records, wait_for_records

pytestmark = pytest.mark.slow


def produce(topic: str, n: int, delay_s: float = 0.0) -> None:
    time.sleep(delay_s)
    producer = make_producer()
    for i in range(n):
        producer.produce(topic, value=f"r{i}".encode())
    producer.flush(10)


def test_waits_until_the_rows_arrive(kafka_bootstrap: str, topic_name: str, unique: str) -> None:
    ensure_topic(topic_name, partitions=2)
    said: list[str] = []
    late = threading.Thread(target=produce, args=(topic_name, 40, 1.5))
    late.start()
    started = time.monotonic()
    reached = wait_for_records(topic_name, f"g-{unique}", 40, 60, said.append)
    late.join()
    assert reached >= 40 and time.monotonic() - started >= 1.4


def test_counts_from_the_groups_offsets(kafka_bootstrap: str, topic_name: str, unique: str) -> None:
    ensure_topic(topic_name, partitions=1)
    produce(topic_name, 30)
    group = f"g-{unique}"
    consumer = make_consumer(group)
    consumer.commit(offsets=[TopicPartition(topic_name, 0, 25)], asynchronous=False)
    consumer.close()
    assert available_records(topic_name, group) == 5
    assert available_records(topic_name, group, from_beginning=True) == 30
    with pytest.raises(FraudstreamError, match=r"only 5 of 6 records within 1s"):
        wait_for_records(topic_name, group, 6, 1.0, lambda _m: None)


def test_a_missing_topic_is_zero_then_a_one_line_error(kafka_bootstrap: str, unique: str) -> None:
    missing = f"t_missing_{unique}"
    assert available_records(missing, f"g-{unique}") == 0
    with pytest.raises(FraudstreamError) as caught:
        wait_for_records(missing, f"g-{unique}", 10, 1.0, lambda _m: None)
    assert "\n" not in str(caught.value) and "only 0 of 10" in str(caught.value)
