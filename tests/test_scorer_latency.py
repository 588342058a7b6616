"""Latency first, against the real broker (docs/latency.md): a caught-up scorer commits a batch
as soon as the consumer has nothing more, not after its batch timeout, and stays exactly-once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_scorer_support import (
    make_records,
    offline_alert_ids,
    produce_records,
    read_all,
    save_model,
)

from services.common.avro.codec import AvroDecoder
from services.common.avro.schemas import registry_client
from services.scorer.scorer import Scorer, ScorerConfig

IDLE_TIMEOUT_MS = 20_000
"""Far longer than the test waits: a batch that waited for it would fail the test."""


@pytest.mark.slow
def test_a_caught_up_scorer_commits_without_waiting_out_the_batch_timeout(
    kafka_bootstrap: str, schema_registry_url: str, unique: str, tmp_path: Path
) -> None:
    version = save_model(tmp_path, seed=5, alert_fraction=0.5)
    topic, alerts_topic = f"t_lat_in_{unique}", f"t_lat_alerts_{unique}"
    scorer = Scorer(
        ScorerConfig(
            topic=topic,
            alerts_topic=alerts_topic,
            dlq_topic=f"t_lat_dlq_{unique}",
            group=f"t-lat-{unique}",
            model=version,
            models_dir=tmp_path,
            models_topic=None,
            from_beginning=True,
            batch_timeout_ms=IDLE_TIMEOUT_MS,
            commit_interval_ms=600_000,
        )
    )
    first, rest = make_records(1, seed=7), make_records(20, seed=8, start_id=1000)
    produce_records(topic, first, schema_registry_url, kafka_bootstrap)
    thread = threading.Thread(target=scorer.run)
    thread.start()
    try:
        wait_scored(scorer, 1, 90)  # start-up, group join, the first batch
        produce_records(topic, rest, schema_registry_url, kafka_bootstrap)
        started = time.monotonic()
        wait_scored(scorer, 1 + len(rest), IDLE_TIMEOUT_MS / 2000)
        took = time.monotonic() - started
    finally:
        scorer.stop()
        thread.join(60)
    assert took < IDLE_TIMEOUT_MS / 2000, took
    decoder = AvroDecoder(registry_client(schema_registry_url))
    alerts = [decoder.decode(m.value())["ID"] for m in read_all(alerts_topic, kafka_bootstrap)]
    assert len(alerts) == len(set(alerts)), "an alert written twice"
    assert set(alerts) == offline_alert_ids(tmp_path, version, first + rest)


def wait_scored(scorer: Scorer, count: int, timeout_s: float) -> None:
    """Until `count` records are committed (the scorer counts a batch once it commits)."""
    deadline = time.monotonic() + timeout_s
    while scorer.result.scored < count:
        assert time.monotonic() < deadline, f"{scorer.result.scored} of {count} committed"
        time.sleep(0.01)
