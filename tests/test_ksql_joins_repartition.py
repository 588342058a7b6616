"""Repartition topics on the real broker: a stream grouped by a value column goes through
ksqlDB's `…-Aggregate-GroupBy-repartition` topic (written in the query's transaction, re-keyed
by the group, the WHERE applied first), and the aggregate read back from it is the one computed
here by hand; a restarted server continues from its committed offsets on both topics."""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.common.kafka import client_config
from services.ksql_server.engine import Engine
from services.ksql_server.runtime.repartition import SOURCE_KEY_HEADER
from services.ksql_server.state import decode

pytestmark = pytest.mark.slow

N = 60
STATEMENTS = [
    "CREATE STREAM TX (ID INT KEY, USERID STRING, AMOUNT INT) "
    "WITH (kafka_topic='tx', value_format='JSON', partitions=2);",
    "CREATE TABLE SPEND AS SELECT USERID, COUNT(*) AS N, SUM(AMOUNT) AS TOTAL FROM TX "
    "WHERE AMOUNT > 2 GROUP BY USERID;",
]


def _engine(bootstrap: str, registry: str, prefix: str) -> Engine:
    return Engine(
        bootstrap,
        registry,
        service_id=prefix,
        properties={
            "auto.offset.reset": "earliest",
            "processing.guarantee": "exactly_once_v2",
        },
        topic_prefix=prefix,
        command_topic=True,
        fast=True,
        processing_log=False,
    )


def _produce(bootstrap: str, topic: str, rows: list[tuple[int, dict[str, Any]]]) -> None:
    producer = Producer(client_config(bootstrap))
    for i, value in rows:
        producer.produce(topic, json.dumps(value).encode(), struct.pack(">i", i), partition=i % 2)
    assert producer.flush(30) == 0


def _read(bootstrap: str, topic: str) -> list[Any]:
    consumer = Consumer(
        {
            **client_config(bootstrap),
            "group.id": f"t-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    parts = AdminClient(client_config(bootstrap)).list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in parts.partitions])
    out: list[Any] = []
    quiet = time.monotonic() + 3
    try:
        while time.monotonic() < quiet:
            m = consumer.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m)
                quiet = time.monotonic() + 1
    finally:
        consumer.close()
    return out


def _rows(start: int, stop: int) -> list[tuple[int, dict[str, Any]]]:
    return [(i, {"USERID": f"u{i % 5}", "AMOUNT": i % 7}) for i in range(start, stop)]


def test_group_by_a_value_column_goes_through_the_repartition_topic(
    kafka_bootstrap: str, schema_registry_url: str
) -> None:
    prefix = f"regroup_{uuid.uuid4().hex[:8]}_"
    engine = _engine(kafka_bootstrap, schema_registry_url, prefix)
    try:
        for text in STATEMENTS:
            engine.execute(text)
        (query_id,) = list(engine.queries)
        _produce(kafka_bootstrap, prefix + "tx", _rows(0, N // 2))
        assert engine.wait_until_caught_up(60)
    finally:
        engine.close()
    # a restart (commands replayed) continues on both topics from the committed offsets
    engine = _engine(kafka_bootstrap, schema_registry_url, prefix)
    try:
        _produce(kafka_bootstrap, prefix + "tx", _rows(N // 2, N))
        time.sleep(1)
        assert engine.wait_until_caught_up(60)
    finally:
        engine.close()
    want: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _i, value in _rows(0, N):
        if value["AMOUNT"] > 2:
            want[value["USERID"]][0] += 1
            want[value["USERID"]][1] += value["AMOUNT"]
    latest = {
        m.key().decode(): json.loads(m.value()) for m in _read(kafka_bootstrap, prefix + "SPEND")
    }
    assert latest == {u: {"N": n, "TOTAL": t} for u, (n, t) in want.items()}
    rekeyed = _read(
        kafka_bootstrap,
        f"{prefix}_confluent-ksql-{prefix}query_{query_id}-Aggregate-GroupBy-repartition",
    )
    assert len(rekeyed) == sum(n for n, _t in want.values())  # filtered first, each once
    for m in rekeyed:  # keyed by the group, partitioned by it, the source key kept aside
        value = json.loads(m.value())
        assert decode(m.key()) == (value["USERID"],)
        assert dict(m.headers())[SOURCE_KEY_HEADER] is not None
    by_group = {decode(m.key()): m.partition() for m in rekeyed}
    assert all(by_group[decode(m.key())] == m.partition() for m in rekeyed)
