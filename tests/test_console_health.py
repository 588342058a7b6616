"""The console's health sampler against the real broker: end offsets summed per topic, read in
one ListOffsets request for every partition instead of one request per partition; groups that
read other topics asked once, not at every listing."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.common.kafka import (
    delete_topics,
    ensure_topic,
    make_admin,
    make_consumer,
    quiet_logging,
    watermarks,
)
from services.console import health
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


def test_a_group_reading_other_topics_is_asked_once_not_at_every_listing(
    kafka_bootstrap: str, topic_name: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scoring, other = f"{topic_name}_scoring", f"{topic_name}_other"
    for topic in (scoring, other):
        ensure_topic(topic, bootstrap=kafka_bootstrap)
    groups = {
        "scorer": f"scorer-{unique}",
        "other": f"other-{unique}",
        "new": f"new-{unique}",
        "query": f"_confluent-ksql-t{unique}query_CSAS_RUNNING_1",
        "stopped query": f"_confluent-ksql-t{unique}query_CSAS_STOPPED_2",
    }
    _commit(kafka_bootstrap, groups["scorer"], scoring)
    for name in ("other", "query", "stopped query"):
        _commit(kafka_bootstrap, groups[name], other)
    new = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": groups["new"]})
    new.subscribe([scoring])  # a member, no offsets committed yet
    new.poll(3)
    asked: list[str] = []
    real = health._committed

    def counting(admin: AdminClient, group: str, topics: set[str] | None) -> dict[str, int]:
        asked.append(group)
        return real(admin, group, topics)

    monkeypatch.setattr(health, "_committed", counting)
    monkeypatch.setattr(health, "MAX_GROUPS", 100_000)  # a shared broker holds many groups
    config = ConsoleConfig(start_readers=False, scoring_topic=scoring, source_topic=other + "_x")
    sampler = HealthSampler(config)
    admin = make_admin(kafka_bootstrap, quiet=True)
    try:
        running = [{"id": "CSAS_RUNNING_1", "group": groups["query"]}]
        first = sampler._classify(admin, running)
        second = sampler._classify(admin, running)
    finally:
        new.close()
        delete_topics([scoring, other], bootstrap=kafka_bootstrap)
    assert first[groups["scorer"]] == second[groups["scorer"]] == {scoring}
    assert groups["other"] not in first and groups["other"] not in second
    assert asked.count(groups["scorer"]) == 2
    assert asked.count(groups["other"]) == 1
    assert asked.count(groups["new"]) == 2  # no offsets yet: it may be the scorer starting
    # a running query's group is shown whatever it reads; another KSQL group is never asked
    assert first[groups["query"]] == second[groups["query"]] == set()
    assert asked.count(groups["query"]) == 2
    assert asked.count(groups["stopped query"]) == 0


def _commit(bootstrap: str, group: str, topic: str) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    consumer.close()
