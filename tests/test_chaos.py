"""Chaos: the pipeline (producer → KSQL's `ksql/` queries, exactly-once → scorer → alerts) while
one component is killed and restarted mid-stream ends with exactly the alerts of an undisturbed
run, and the scoring topic holds every source record exactly once (read_committed).

Each test starts its own embedded stack (chaos_support.py), since it kills parts of it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from chaos_support import (
    RECORDS,
    ROOT,
    SCORING,
    ChaosStack,
    chaos_stack,
    committed_records,
    end_offsets_total,
    eventually,
    produce_paced,
    wait_for,
)
from test_scorer_support import make_records, offline_alert_ids, read_all, save_model

from services.common.avro.codec import AvroDecoder
from services.common.avro.schemas import registry_client
from services.common.settings import Settings, get_settings
from services.common.topics import ALERTS_TOPIC
from services.ksql_server.rest.client import KsqlClient, statement_files
from services.stack.components import HttpServerComponent, settings_env, stack_components

pytestmark = pytest.mark.own_stack  # its own broker/stack: runs beside the shared-stack tests

__all__ = ["chaos_stack"]  # the fixture, shared with test_ksql_chaos


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
        wait_for(lambda: "partitions assigned" in scorer_log.read_text(), 120, "the scorer")
        producer = produce_paced(bootstrap, records)
        target = random.Random().uniform(0.25, 0.45) * RECORDS
        wait_for(lambda: end_offsets_total(SCORING, bootstrap) >= target, 120, "KSQL output")
        assert producer.is_alive(), "the kill must land mid-stream"
        stack.kill(victim)
        time.sleep(down_s)
        stack.restart(victim)
        producer.join(timeout=180)
        assert not producer.is_alive()
        # KSQL has written the whole stream (a duplicate would show as more than RECORDS)
        wait_for(
            lambda: committed_records(SCORING, bootstrap) >= RECORDS, 180, "the scoring stream"
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

        assert eventually(lambda: alert_ids() >= expected, 150), (
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
    # The one scorer process rides the broker's restart out (services/common/checkpoint.py,
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
