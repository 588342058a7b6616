"""Chaos: the pipeline (producer → KSQL's `ksql/` queries, exactly-once → scorer → alerts) while
one component is killed and restarted mid-stream ends with exactly the alerts of an undisturbed
run, and the scoring topic holds every source record exactly once (read_committed).

Each test starts its own embedded stack (broker, Schema Registry, KSQL server: the stack's own
components and `stack up`'s KSQL properties) on free loopback ports in its own FRAUDSTREAM_HOME,
since it kills parts of it; the broker's jars are shared with the session's stack.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from test_scorer_support import make_records, offline_alert_ids, read_all, save_model

from services.common.avro.codec import AvroDecoder
from services.common.avro.schemas import registry_client
from services.common.kafka import make_consumer, make_producer
from services.common.process import ManagedProcess
from services.common.settings import Settings, get_settings
from services.common.topics import ALERTS_TOPIC
from services.ksql_server.rest.client import KsqlClient, statement_files
from services.stack.components import (
    BrokerComponent,
    Component,
    HttpServerComponent,
    settings_env,
    stack_components,
)

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "creditcardfraud_source"
SCORING = "creditcardfraud_scoring_avro"
RECORDS = int(os.environ.get("FRAUDSTREAM_CHAOS_RECORDS", "9000"))
RATE = 1500  # records/s: the stream lasts ~8 s, so a kill lands in the middle of it
V_COLUMNS = [f"V{i}" for i in range(1, 29)]


def _free_port(pair: bool = False) -> int:
    """A free loopback port (and, with `pair`, the next one free too: the broker's controller)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not pair:
            return port
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


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
        bootstrap_servers=f"localhost:{_free_port(pair=True)}",
        schema_registry_url=f"http://localhost:{_free_port()}",
        ksql_url=f"http://localhost:{_free_port()}",
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


def _delimited(record: dict[str, Any]) -> bytes:
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


def _produce_paced(bootstrap: str, records: list[dict[str, Any]]) -> threading.Thread:
    """The source stream at RATE records/s in the background; a broker outage is waited out
    (librdkafka keeps the records and retries)."""

    def run() -> None:
        producer = make_producer(bootstrap)
        chunk = RATE // 20
        for start in range(0, len(records), chunk):
            for record in records[start : start + chunk]:
                while True:
                    try:
                        producer.produce(SOURCE, _delimited(record), str(record["ID"]).encode())
                        break
                    except BufferError:
                        producer.poll(0.1)
            producer.poll(0)
            time.sleep(0.05)
        deadline = time.monotonic() + 120
        while producer.flush(5) > 0:
            assert time.monotonic() < deadline, "source records not delivered"

    thread = threading.Thread(target=run, name="chaos-producer", daemon=True)
    thread.start()
    return thread


def _scorer(settings: Settings, version: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`fraudstream score` on the chaos stack; its output goes to `log` (a pipe nobody reads
    would fill up and stall it)."""
    cmd = [
        sys.executable,
        "-m",
        "services.cli",
        "score",
        "--model",
        version,
        "--group",
        "chaos-scorer",
        "--from-beginning",
        "--metrics-port",
        "0",
        *extra,
    ]
    env = {**os.environ, **settings_env(settings), "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _committed_records(topic: str, bootstrap: str) -> int:
    """Records readable under read_committed so far (0 while the topic does not exist)."""
    try:
        return len(read_all(topic, bootstrap, timeout=30))
    except Exception:
        return 0


def _end_offsets_total(topic: str, bootstrap: str) -> int:
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


def _eventually(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    assert _eventually(condition, timeout), f"timed out waiting for {what}"


def _run_with_chaos(
    stack: ChaosStack, tmp_path: Path, victim: str, down_s: float, scorer_survives: bool = False
) -> None:
    """The whole pipeline, with `victim` SIGKILLed once the scoring topic has a quarter to a half
    of the stream and restarted `down_s` later; then the checks. A scorer that exits is
    restarted, as a supervisor would, unless `scorer_survives`: then the one scorer process must
    ride the chaos out and deliver every alert itself (no restart, no replacement)."""
    settings = stack.settings
    bootstrap = settings.bootstrap_servers
    version = save_model(settings.models_dir, seed=3)
    records = make_records(RECORDS, seed=31)
    client = KsqlClient(settings.ksql_url)
    assert client.apply_files(statement_files([ROOT / "ksql"])) >= 4
    scorer_log = tmp_path / "scorer.log"
    scorer = _scorer(settings, version, scorer_log)
    try:
        # TensorFlow takes a while to load: the stream starts once the scorer is reading
        _wait_for(lambda: "partitions assigned" in scorer_log.read_text(), 120, "the scorer")
        producer = _produce_paced(bootstrap, records)
        target = random.Random().uniform(0.25, 0.45) * RECORDS
        _wait_for(lambda: _end_offsets_total(SCORING, bootstrap) >= target, 120, "KSQL output")
        assert producer.is_alive(), "the kill must land mid-stream"
        stack.kill(victim)
        time.sleep(down_s)
        stack.restart(victim)
        producer.join(timeout=180)
        assert not producer.is_alive()
        # KSQL has written the whole stream (a duplicate would show as more than RECORDS)
        _wait_for(
            lambda: _committed_records(SCORING, bootstrap) >= RECORDS, 180, "the scoring stream"
        )
        expected = offline_alert_ids(settings.models_dir, version, records)
        decoder = AvroDecoder(registry_client(settings.schema_registry_url))

        def alert_ids() -> set[int]:
            nonlocal scorer
            if scorer.poll() is not None:  # died in the chaos: restarted, as a supervisor would
                assert not scorer_survives, (
                    f"the scorer exited with {scorer.returncode}: " + scorer_log.read_text()[-3000:]
                )
                print(f"scorer exited with {scorer.returncode}; restarting it")
                scorer = _scorer(settings, version, scorer_log)
            return {decoder.decode(m.value())["ID"] for m in read_all(ALERTS_TOPIC, bootstrap)}

        assert _eventually(lambda: alert_ids() >= expected, 150), (
            "the scorer did not deliver every alert: " + scorer_log.read_text()[-3000:]
        )
        scorer.send_signal(signal.SIGTERM)
        assert scorer.wait(timeout=120) == 0, scorer_log.read_text()[-3000:]

        scored = Counter(decoder.decode(m.value())["ID"] for m in read_all(SCORING, bootstrap))
        assert [i for i, c in scored.items() if c > 1] == []  # no duplicate
        assert set(scored) == {r["ID"] for r in records}  # no loss
        alerts = Counter(decoder.decode(m.value())["ID"] for m in read_all(ALERTS_TOPIC, bootstrap))
        assert [i for i, c in alerts.items() if c > 1] == []
        assert set(alerts) == expected
        assert alerts, "the model flags some records"

    finally:  # a failed check must not leave a scorer behind
        if scorer.poll() is None:
            scorer.kill()
            scorer.wait()


@pytest.mark.slow
def test_ksql_server_sigkill_mid_stream(chaos_stack: ChaosStack, tmp_path: Path) -> None:
    _run_with_chaos(chaos_stack, tmp_path, "ksql-server", 0.5)


@pytest.mark.slow
def test_broker_sigkill_and_restart_mid_pipeline(chaos_stack: ChaosStack, tmp_path: Path) -> None:
    # The one scorer process rides the broker's restart out (services/common/transactions.py,
    # as the KSQL queries do): it is neither restarted nor replaced.
    _run_with_chaos(chaos_stack, tmp_path, "kafka", 2.0, scorer_survives=True)


@pytest.mark.slow
def test_schema_registry_sigkill_and_restart_mid_pipeline(
    chaos_stack: ChaosStack, tmp_path: Path
) -> None:
    _run_with_chaos(chaos_stack, tmp_path, "schema-registry", 2.0)


def test_stack_ksql_server_runs_exactly_once() -> None:
    """`stack up` (and so `fraudstream run`) starts the KSQL server with exactly-once queries."""
    ksql = next(
        c
        for c in stack_components(get_settings())
        if isinstance(c, HttpServerComponent) and c.name == "ksql-server"
    )
    assert "--property=ksql.streams.processing.guarantee=exactly_once_v2" in ksql.serve_args
