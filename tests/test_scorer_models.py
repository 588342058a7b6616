"""Unit tests of model following: LATEST changes load in the background and swap only when the
scoring loop asks (between batches); a pinned version never changes; failures keep the old."""

from __future__ import annotations

import time

import numpy as np
from test_scorer_support import StubModel

from services.scorer.models import ModelManager
from services.scorer.records import alert_mask, alert_schema


class Store:
    def __init__(self) -> None:
        self.latest = "v1"
        self.loads: list[str] = []

    def load(self, version: str, digest: str | None = None, pinned: bool = False) -> StubModel:
        version = self.latest if version == "latest" else version
        self.loads.append(version)
        if version == "broken":
            raise OSError("model.keras is corrupt")
        return StubModel(version)


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_latest_change_swaps_only_between_batches() -> None:
    store = Store()
    manager = ModelManager(
        store.load, lambda: store.latest, "latest", models_topic=None, poll_interval_s=0.02
    )
    manager.start()
    try:
        assert manager.version == "v1"
        store.latest = "v2"
        assert wait_for(lambda: "v2" in store.loads)
        assert manager.version == "v1"  # still v1 until the loop swaps
        swapped = manager.swap_if_ready()
        assert swapped is not None and swapped.version == "v2" and manager.version == "v2"
        assert manager.swap_if_ready() is None
        store.latest = "broken"
        assert wait_for(lambda: "broken" in store.loads)
        time.sleep(0.1)
        assert manager.swap_if_ready() is None and manager.version == "v2"
        assert store.loads.count("broken") == 1  # retried with backoff, not in a tight loop
    finally:
        manager.stop()


def test_pinned_version_ignores_latest() -> None:
    store = Store()
    manager = ModelManager(
        store.load, lambda: store.latest, "v0", models_topic=None, poll_interval_s=0.02
    )
    manager.start()
    store.latest = "v9"
    time.sleep(0.2)
    assert manager.swap_if_ready() is None and manager.version == "v0"
    assert store.loads == ["v0"]
    manager.stop()


def test_alert_rule_is_score_at_or_above_threshold() -> None:
    assert alert_mask(np.array([0.5, 1.0, 1.5]), 1.0).tolist() == [False, True, True]


def test_alert_schema_has_the_design_fields() -> None:
    names = [f["name"] for f in alert_schema()["fields"]]
    assert names == [
        "ID",
        "USER",
        "TIMESTAMP",
        "AMOUNT",
        "SCORE",
        "THRESHOLD",
        "MODEL_VERSION",
        "SCORED_AT",
        "CLASS",
        "EXPLANATION",
    ]


def test_metrics_endpoint_serves_the_scorer_metrics() -> None:
    import socket

    import httpx

    from services.scorer.metrics import ScorerMetrics

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics = ScorerMetrics()
    metrics.set_model("v1", 0.5)
    metrics.set_model("v2", 0.7)
    metrics.records_in.inc(5)
    metrics.batch_size.observe(5)
    metrics.serve(port)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "fraudstream_scorer_records_total 5.0" in text
    assert 'fraudstream_scorer_model_info{version="v2"} 1.0' in text
    assert 'version="v1"' not in text
    assert "fraudstream_scorer_model_threshold 0.7" in text
    assert "fraudstream_scorer_batch_size_bucket" in text
