"""The embedded Apache Kafka broker: configuration, clear errors, and a real restart."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from services.broker.coordinator_logs import SEGMENT_BYTES
from services.broker.coordinator_logs import TOPICS as COORDINATOR_TOPICS
from services.broker.launcher import (
    KafkaBroker,
    _cluster_id,
    _server_properties,
    _split_bootstrap,
)
from services.common.errors import FraudstreamError
from services.common.kafka import ensure_topic, make_admin, make_producer
from services.common.process import free_port_pair
from services.common.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _broker(tmp_path: Path, port: int = 19092) -> KafkaBroker:
    settings = Settings(bootstrap_servers=f"127.0.0.1:{port}", home=tmp_path)
    return KafkaBroker(settings)


def test_server_properties_are_kraft_single_node_on_loopback(tmp_path: Path) -> None:
    props = _server_properties(9092, tmp_path)
    assert "process.roles=broker,controller" in props
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in props
    assert f"log.dirs={tmp_path}" in props
    assert _split_bootstrap("localhost:9092,other:9094") == ("localhost", 9092)


def test_cluster_ids_never_look_like_an_option() -> None:
    """An id starting with '-' made the storage tool refuse it as a missing argument."""
    ids = {_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_corrupt_data_directory_is_refused(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.data_dir.mkdir(parents=True)
    (broker.data_dir / "junk.log").write_text("not kafka")
    with pytest.raises(FraudstreamError, match="corrupt Kafka data directory"):
        broker.format_storage()
    (broker.data_dir / "meta.properties").write_text("version=1\n")
    with pytest.raises(FraudstreamError, match=r"no cluster\.id"):
        broker.format_storage()


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FraudstreamError, match="Java not found"):
        _broker(tmp_path).java()


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FraudstreamError, match="Maven not found"):
        _broker(tmp_path).resolve_jars()


def test_port_taken_by_something_else_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(FraudstreamError, match=f"port {port} is taken"):
            _broker(tmp_path, port).start()


@pytest.mark.slow
def test_restart_keeps_topics_and_records(tmp_path: Path, kafka_bootstrap: str) -> None:
    """A second broker of our own (on free ports: a fixed one may be another run's broker,
    which `start` would then use instead) is stopped and started; its data survives."""
    shared_libs = KafkaBroker.from_env().libs
    broker = _broker(tmp_path, free_port_pair())
    broker.root.mkdir(parents=True)
    broker.libs.symlink_to(shared_libs, target_is_directory=True)
    try:
        broker.start()
        rss = broker.rss_bytes()
        assert rss is not None and rss < 800 * 2**20, f"broker RSS {rss} over 800 MB"
        ensure_topic("restart_probe", partitions=2, bootstrap=broker.address)
        producer = make_producer(broker.address)
        for i in range(100):
            producer.produce("restart_probe", key=str(i).encode(), value=f"v{i}".encode())
        assert producer.flush(30) == 0
        assert broker.stop()
        assert not broker.healthy()

        broker.start()
        values = _consume_all(broker.address, "restart_probe", expected=100)
        assert sorted(values) == sorted(f"v{i}" for i in range(100))
    finally:
        broker.stop()


@pytest.mark.slow
def test_coordinator_logs_get_small_segments_fresh_and_after_a_restart(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """A fresh broker creates its coordinator topics with 4 MiB segments; one whose topics were
    made with Kafka's 100 MB default (an older data directory) has them set at its next start,
    so the log cleaner compacts what a restart replays."""
    broker = _broker(tmp_path, free_port_pair())
    broker.root.mkdir(parents=True)
    broker.libs.symlink_to(KafkaBroker.from_env().libs, target_is_directory=True)
    try:
        broker.start()
        _use_both_coordinators(broker.address)
        assert _segment_bytes(broker.address) == {t: SEGMENT_BYTES for t in COORDINATOR_TOPICS}
        _set_segment_bytes(broker.address, 100 * 2**20)
        assert set(_segment_bytes(broker.address).values()) == {100 * 2**20}
        assert broker.stop()

        broker.start()
        assert _segment_bytes(broker.address) == {t: SEGMENT_BYTES for t in COORDINATOR_TOPICS}
    finally:
        broker.stop()


def test_server_properties_create_small_coordinator_segments(tmp_path: Path) -> None:
    props = _server_properties(9092, tmp_path)
    assert f"offsets.topic.segment.bytes={SEGMENT_BYTES}" in props
    assert f"transaction.state.log.segment.bytes={SEGMENT_BYTES}" in props


def _use_both_coordinators(bootstrap: str) -> None:
    """Creates `__consumer_offsets` (an offset commit) and `__transaction_state` (a transaction)."""
    ensure_topic("coordinator_probe", bootstrap=bootstrap)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "coordinator-probe"})
    consumer.commit(offsets=[TopicPartition("coordinator_probe", 0, 0)], asynchronous=False)
    consumer.close()
    producer = make_producer(bootstrap, **{"transactional.id": "coordinator-probe"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce("coordinator_probe", b"x")
    producer.commit_transaction(30)


def _segment_bytes(bootstrap: str) -> dict[str, int]:
    admin = make_admin(bootstrap)
    resources = [ConfigResource(ResourceType.TOPIC, topic) for topic in COORDINATOR_TOPICS]
    return {
        resource.name: int(future.result()["segment.bytes"].value)
        for resource, future in admin.describe_configs(resources).items()
    }


def _set_segment_bytes(bootstrap: str, size: int) -> None:
    entry = ConfigEntry("segment.bytes", str(size), incremental_operation=AlterConfigOpType.SET)
    resources = [
        ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
        for topic in COORDINATOR_TOPICS
    ]
    admin = make_admin(bootstrap)  # kept: a collected client cancels its requests
    for future in admin.incremental_alter_configs(resources).values():
        future.result()


def _consume_all(bootstrap: str, topic: str, expected: int) -> list[str]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "restart-check",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    values: list[str] = []
    try:
        for _ in range(200):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                values.append((msg.value() or b"").decode())
            if len(values) >= expected:
                break
    finally:
        consumer.close()
    return values


def test_a_side_brokers_ports_lie_below_the_ephemeral_range() -> None:
    """A restarted side broker keeps its pair; no outgoing connection or bind(0) may take p + 1
    in between, so the pair comes from below the range the kernel hands those out from."""
    start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        port = free_port_pair()
        assert port + 1 < start
        for taken in (port, port + 1):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", taken))
