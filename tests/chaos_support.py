"""What the chaos tests share: their own embedded stack on free loopback ports (killable part
by part), the source stream produced at a pace, and waiting for a topic to fill.

Each test using `chaos_stack` starts its own broker, Schema Registry and KSQL server (the
stack's own components and `stack up`'s KSQL properties, so exactly-once queries) in its own
FRAUDSTREAM_HOME, since it kills parts of it; the broker's jars are shared with the session's
stack.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from test_scorer_support import read_all

from services.common.kafka import make_consumer, make_producer, produce
from services.common.process import ManagedProcess, free_port, free_port_pair
from services.common.settings import Settings, get_settings
from services.stack.components import BrokerComponent, Component, stack_components

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "creditcardfraud_source"
SCORING = "creditcardfraud_scoring_avro"
RECORDS = int(os.environ.get("FRAUDSTREAM_CHAOS_RECORDS", "9000"))
RATE = 1500  # records/s: the stream lasts ~8 s, so a kill lands in the middle of it
V_COLUMNS = [f"V{i}" for i in range(1, 29)]


@dataclass
class ChaosStack:
    settings: Settings
    components: list[Component]

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, open transactions stay open."""
        component = self.component(name)
        process: ManagedProcess = (
            component.broker.process
            if isinstance(component, BrokerComponent)
            else component.process
        )
        pid = process.pid()
        assert pid is not None, f"{name} is not running"
        os.kill(pid, signal.SIGKILL)
        while process.pid() is not None:
            time.sleep(0.05)

    def restart(self, name: str) -> None:
        self.component(name).start()


@pytest.fixture
def chaos_stack(tmp_path: Path) -> Iterator[ChaosStack]:
    from services.broker.launcher import KafkaBroker

    jars = KafkaBroker(get_settings()).resolve_jars()
    settings = Settings(
        bootstrap_servers=f"localhost:{free_port_pair()}",
        schema_registry_url=f"http://localhost:{free_port()}",
        ksql_url=f"http://localhost:{free_port()}",
        home=tmp_path / "home",
        models_dir=tmp_path / "models",
    )
    (settings.home / "kafka").mkdir(parents=True)
    (settings.home / "kafka" / "libs").symlink_to(jars)
    components = stack_components(settings)
    stack = ChaosStack(settings, components)
    try:
        for component in components:
            component.start()
        yield stack
    finally:
        for component in reversed(components):
            component.stop()


def delimited(record: dict[str, Any]) -> bytes:
    """The producer's DELIMITED line: Id,Timestamp,User,Time,V1..V28,Amount,"Class"."""
    fields = [
        str(record["ID"]),
        record["TIMESTAMP"],
        record["USER"],
        str(record["TIME"]),
        *(repr(record[v]) for v in V_COLUMNS),
        repr(record["AMOUNT"]),
        f'"{record["CLASS"]}"',
    ]
    return ",".join(fields).encode()


def produce_paced(
    bootstrap: str,
    records: list[dict[str, Any]],
    rate: int = RATE,
    release: threading.Event | None = None,
    held_back: int = 0,
) -> threading.Thread:
    """The source stream at `rate` records/s in the background, the last `held_back` records
    only once `release` is set; a broker outage is waited out (librdkafka keeps the records and
    retries)."""

    def run() -> None:
        producer = make_producer(bootstrap)
        chunk = max(rate // 20, 1)
        head = len(records) - held_back
        for start in range(0, head, chunk):
            for record in records[start : min(start + chunk, head)]:
                produce(producer, SOURCE, delimited(record), str(record["ID"]).encode())
            producer.poll(0)
            time.sleep(0.05)
        if release is not None:
            release.wait(timeout=600)
        for record in records[head:]:
            produce(producer, SOURCE, delimited(record), str(record["ID"]).encode())
        deadline = time.monotonic() + 120
        while producer.flush(5) > 0:
            assert time.monotonic() < deadline, "source records not delivered"

    thread = threading.Thread(target=run, name="chaos-producer", daemon=True)
    thread.start()
    return thread


def committed_records(topic: str, bootstrap: str) -> int:
    """Records readable under read_committed so far (0 while the topic does not exist)."""
    try:
        return len(read_all(topic, bootstrap, timeout=30))
    except Exception:
        return 0


def end_offsets_total(topic: str, bootstrap: str) -> int:
    consumer = make_consumer("chaos-probe", bootstrap)
    try:
        meta = consumer.list_topics(timeout=5).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
            for p in meta.partitions
        )
    except Exception:
        return 0
    finally:
        consumer.close()


def eventually(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    assert eventually(condition, timeout), f"timed out waiting for {what}"
