"""Windowed aggregations on the real broker: the sink's windowed keys as Kafka Streams frames
them, one update per record, and the window state surviving an engine restart.

The expected rows are computed here from the produced records (tumbling windows of 10 s)."""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from services.ksql_server.engine import Engine
from services.ksql_server.formats.windowed import WindowInfo, split_windowed

pytestmark = pytest.mark.slow

BASE = 1_700_000_000_000  # a record time librdkafka writes as given (0 would mean "now")


def _engine(bootstrap: str, service: str, prefix: str) -> Engine:
    return Engine(
        bootstrap,
        None,
        service_id=service,
        topic_prefix=prefix,
        command_topic=False,
        properties={"auto.offset.reset": "earliest"},
    )


def _read(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"win-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < expect:
            m = consumer.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m)
    finally:
        consumer.close()
    return out


def _produce(bootstrap: str, topic: str, rows: list[tuple[str, float, int]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for user, amount, ts in rows:
        producer.produce(
            topic, json.dumps({"AMOUNT": amount}).encode(), user.encode(), timestamp=ts
        )
    producer.flush(10)


def _expected(rows: list[tuple[str, float, int]]) -> list[tuple[str, int, int, float]]:
    """(user, window start, count, sum) after each record, tumbling 10 s windows."""
    state: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0])
    out = []
    for user, amount, ts in rows:
        start = ts - ts % 10_000
        acc = state[(user, start)]
        acc[0] += 1
        acc[1] += amount
        out.append((user, start, int(acc[0]), acc[1]))
    return out


@pytest.fixture
def names(unique: str) -> Iterator[tuple[str, str]]:
    yield f"win{unique}_", f"win_{unique}_"


def test_tumbling_counts_survive_a_restart(kafka_bootstrap: str, names: tuple[str, str]) -> None:
    service, prefix = names
    first = [
        ("alice", 10.0, BASE + 1_000),
        ("bob", 5.0, BASE + 2_000),
        ("alice", 2.5, BASE + 9_000),
    ]
    second = [("alice", 1.0, BASE + 9_500), ("alice", 4.0, BASE + 12_000)]
    ddl = (
        "CREATE STREAM tx (USERID STRING KEY, AMOUNT DOUBLE) "
        "WITH (kafka_topic='tx', value_format='JSON', partitions=1);"
        "CREATE TABLE velocity AS SELECT USERID, COUNT(*) AS N, SUM(AMOUNT) AS TOTAL, "
        "WINDOWSTART AS WS FROM tx WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY USERID;"
    )
    engine = _engine(kafka_bootstrap, service, prefix)
    try:
        engine.execute(ddl)
        _produce(kafka_bootstrap, prefix + "tx", first)
        assert engine.wait_until_caught_up(30)
        sink = engine.metastore.get("VELOCITY")
        assert sink is not None and sink.window == WindowInfo("TUMBLING", 10_000)
    finally:
        engine.close()
    again = _engine(kafka_bootstrap, service, prefix)  # the same query id: state restored
    try:
        again.execute(ddl)
        _produce(kafka_bootstrap, prefix + "tx", second)
        assert again.wait_until_caught_up(30)
        records = _read(kafka_bootstrap, prefix + "VELOCITY", len(first) + len(second))
    finally:
        again.close()
    got = []
    for m in records:
        inner, start, end = split_windowed(m.key(), WindowInfo("TUMBLING", 10_000))
        value = json.loads(m.value())
        assert end - start == 10_000 and value["WS"] == start
        got.append((inner.decode(), start, value["N"], value["TOTAL"]))
    assert got == _expected(first + second)


def test_stream_over_a_windowed_topic(kafka_bootstrap: str, names: tuple[str, str]) -> None:
    """`CREATE STREAM ... WITH (WINDOW_TYPE=...)` over the windowed table's topic reads its keys
    as (key, WINDOWSTART, WINDOWEND), filters on the bounds, and writes a windowed sink."""
    service, prefix = names
    rows = [
        ("alice", 10.0, BASE + 1_000),
        ("bob", 5.0, BASE + 12_000),
        ("alice", 1.0, BASE + 13_000),
    ]
    engine = _engine(kafka_bootstrap, service + "s", prefix + "s")
    try:
        engine.execute(
            "CREATE STREAM tx (USERID STRING KEY, AMOUNT DOUBLE) "
            "WITH (kafka_topic='tx', value_format='JSON', partitions=1);"
            "CREATE TABLE velocity AS SELECT USERID, COUNT(*) AS N FROM tx "
            "WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY USERID;"
            "CREATE STREAM updates (USERID STRING KEY, N BIGINT) WITH (kafka_topic='VELOCITY', "
            "value_format='JSON', WINDOW_TYPE='Tumbling', WINDOW_SIZE='10 SECONDS');"
            f"CREATE STREAM late AS SELECT * FROM updates WHERE WINDOWSTART >= {BASE + 10_000};"
        )
        _produce(kafka_bootstrap, prefix + "stx", rows)
        assert engine.wait_until_caught_up(30)
        records = _read(kafka_bootstrap, prefix + "sLATE", 2)
    finally:
        engine.close()
    got = []
    for m in records:
        inner, start, _end = split_windowed(m.key(), WindowInfo("TUMBLING", 10_000))
        got.append((inner.decode(), start, json.loads(m.value())))
    assert got == [("bob", BASE + 10_000, {"N": 1}), ("alice", BASE + 10_000, {"N": 1})]
