"""Latency first in a persistent query (docs/latency.md): a batch that drained the consumer's
queue commits in the same step, without waiting for the commit interval or for an empty look."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from services.common.kafka import delete_topics, make_admin
from services.ksql_server.engine import Engine
from services.ksql_server.runtime import query
from services.ksql_server.runtime.query import PersistentQuery

pytestmark = pytest.mark.slow


@pytest.fixture
def engine(kafka_bootstrap: str, unique: str) -> Iterator[Engine]:
    eng = Engine(
        kafka_bootstrap,
        None,
        service_id=f"t{unique}_",
        topic_prefix=f"cr_{unique}_",
        command_topic=False,
        properties={
            "auto.offset.reset": "earliest",
            "processing.guarantee": "exactly_once_v2",
        },
    )
    yield eng
    eng.close()
    admin = make_admin(kafka_bootstrap)
    delete_topics([t for t in admin.list_topics(timeout=10).topics if t.startswith("cr_" + unique)])


def test_a_batch_that_drained_the_queue_commits_in_its_own_step(
    engine: Engine, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query, "COMMIT_INTERVAL_S", 3600.0)  # the interval never commits here
    left_open: list[int] = []
    step = PersistentQuery._step

    def noting_step(self: PersistentQuery, consumer: Consumer, checkpoint: object) -> None:
        step(self, consumer, checkpoint)  # type: ignore[arg-type]
        left_open.append(checkpoint.pending)  # type: ignore[attr-defined]

    monkeypatch.setattr(PersistentQuery, "_step", noting_step)
    engine.execute(
        "CREATE STREAM src (K STRING KEY, ID BIGINT) "
        "WITH (kafka_topic='src', value_format='DELIMITED', partitions=1);"
        "CREATE STREAM out AS SELECT K, ID FROM src;"
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):
        producer.produce(engine.ctx.physical("src"), str(i).encode(), str(i).encode())
    producer.flush(10)
    assert engine.wait_until_caught_up(30)
    [q] = engine.queries.values()
    assert q.processed == q.produced == 10
    assert q.commits >= 1
    # every step that processed records committed them before it returned
    assert left_open and all(pending == 0 for pending in left_open)


def test_an_idle_query_looks_at_its_end_offsets_only_while_asked(
    engine: Engine, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each look costs a ListOffsets request per partition; unasked, an idle server sent them
    five times a second per query and partition."""
    monkeypatch.setattr(query, "CAUGHT_UP_INTEREST_S", 0.5)
    engine.execute(
        "CREATE STREAM src (K STRING KEY, ID BIGINT) "
        "WITH (kafka_topic='src', value_format='DELIMITED', partitions=2);"
        "CREATE STREAM out AS SELECT K, ID FROM src;"
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(engine.ctx.physical("src"), b"1", b"k")
    producer.flush(10)
    assert engine.wait_until_caught_up(30)
    [q] = engine.queries.values()
    time.sleep(0.8)  # the question's interest runs out
    looked_at = q._caught[0]
    time.sleep(1.5)  # several idle looks (0.2 s each), nobody asking
    assert q._caught[0] == looked_at
    assert engine.wait_until_caught_up(10)  # asking starts the looks again
    assert q._caught[0] > looked_at
