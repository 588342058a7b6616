"""Training through the real broker and Schema Registry on generated data (marked slow).

A fresh topic is filled once with 100,000 generated transactions (fixed seed; about the Kaggle
file's ~490 frauds, at a higher fraud ratio, so the quality bars mean the same at a third of the
fill and fit time) serialised by confluent-kafka's AvroSerializer in KSQL's record layout, plus
two unusable records; then the trainer reads it, fits, evaluates and registers. Epochs stay
small to fit the test budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common.kafka import delete_topics, make_consumer
from services.model_registry.api import MODEL_NAME
from services.model_registry.registry import REQUIRED_FILES, ModelRegistry, announcement_from_json
from services.trainer.api import ModelVersion, make_config, train
from services.trainer.errors import TrainingDataError
from services.trainer.report import PLOTS
from services.trainer.synthetic import fill_topic

pytestmark = pytest.mark.slow

ROWS = 100_000
FRAUD_RATIO = 0.005
SEED = 2019
EPOCHS = 6
BATCH = 512
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def filled_topic(schema_registry_url: str, kafka_bootstrap: str) -> Iterator[str]:
    topic = f"t_trainer_it_{uuid.uuid4().hex[:8]}"
    broken: list[dict[str, Any] | None] = [{"TIME": 5, "CLASS": "0"}, None]
    fill_topic(
        topic, ROWS, seed=SEED, bootstrap=kafka_bootstrap, extra=broken, fraud_ratio=FRAUD_RATIO
    )
    yield topic
    delete_topics([topic], kafka_bootstrap)


@pytest.fixture(scope="module")
def trained(
    filled_topic: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    models_dir = tmp_path_factory.mktemp("models")
    group = f"test-train-{uuid.uuid4().hex[:8]}"
    events_topic = f"t_trainer_models_{uuid.uuid4().hex[:8]}"
    mv = train(
        topic=filled_topic,
        from_beginning=True,
        group=group,
        config=make_config(epochs=EPOCHS, batch_size=BATCH),
        models_dir=models_dir,
        models_topic=events_topic,
    )
    yield {"mv": mv, "dir": models_dir, "group": group, "events": events_topic}
    delete_topics([events_topic])


def test_version_registered_with_every_file(trained: dict[str, Any], kafka_bootstrap: str) -> None:
    mv: ModelVersion = trained["mv"]
    files = {p.name for p in mv.path.iterdir()}
    assert set(REQUIRED_FILES) | set(PLOTS) | {"report.md"} <= files
    assert ModelRegistry(trained["dir"]).latest() == mv.version
    source = mv.metrics["source"]
    assert source["consumed"] == ROWS + 2
    assert source["rejected"] == {"missing feature V1": 1, "record is null": 1}
    assert mv.metrics["data"]["rows"] == ROWS

    consumer = make_consumer(f"test-{uuid.uuid4().hex[:8]}", kafka_bootstrap)
    try:
        consumer.subscribe([trained["events"]])
        msg = None
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None
        assert msg.key() == MODEL_NAME.encode()
        event = announcement_from_json(msg.value() or b"")
        assert event.version == mv.version and event.threshold == pytest.approx(mv.threshold)
    finally:
        consumer.close()


def test_quality_against_baselines(trained: dict[str, Any]) -> None:
    test = trained["mv"].metrics["test"]
    ae, forest = test["autoencoder"], test["isolation_forest"]
    print({k: (round(v["roc_auc"], 4), round(v["pr_auc"], 4)) for k, v in test.items()})
    assert ae["roc_auc"] >= 0.95
    assert ae["pr_auc"] > test["pca_reconstruction"]["pr_auc"]
    assert ae["pr_auc"] >= forest["pr_auc"]


def test_no_test_row_fits_preprocessing_or_threshold(trained: dict[str, Any]) -> None:
    """Recorded split boundaries: the test split starts after everything that was fitted."""
    metrics = trained["mv"].metrics
    splits = metrics["data"]["splits"]
    assert splits["train"]["time_max"] <= splits["validation"]["time_min"]
    assert splits["validation"]["time_max"] <= splits["test"]["time_min"]
    assert metrics["data"]["preprocessing_fitted_rows"] == splits["train"]["rows"]
    assert metrics["threshold"]["split"] == "validation"
    assert metrics["threshold"]["rows"] == splits["validation"]["rows"]
    assert splits["test"]["rows"] == metrics["test"]["autoencoder"]["rows"]


def test_offsets_committed_after_registering(trained: dict[str, Any], filled_topic: str) -> None:
    with pytest.raises(TrainingDataError, match="only 0 labelled rows"):
        train(topic=filled_topic, group=trained["group"], models_dir=trained["dir"], epochs=1)


def test_cli_trains_registers_and_lists(trained: dict[str, Any], filled_topic: str) -> None:
    """The command's last line and `models list`. The autoencoder alone on the first 40,000 rows:
    same-seed determinism is test_trainer_core's (a full second training here cost CI 80 s)."""
    env = {**os.environ, "MODELS_DIR": str(trained["dir"])}
    cmd = [
        sys.executable, "-m", "services.cli", "train", "--topic", filled_topic,
        "--from-beginning", "--group", f"test-cli-{uuid.uuid4().hex[:8]}", "--no-baselines",
        "--max-records", "40000", "--epochs", "2", "--batch-size", str(BATCH),
        "--models-topic", trained["events"],
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("model ") and " roc_auc=" in last and " pr_auc=" in last
    threshold = float(last.rsplit("threshold=", 1)[1])
    assert threshold > 0
    version = last.split()[1]
    listed = subprocess.run(
        [sys.executable, "-m", "services.cli", "models", "list"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0 and f"* {version}" in listed.stdout


def test_watch_retrains_and_records_the_decision(
    schema_registry_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Two rounds of `train --watch`: the first is promoted (no champion yet); the second waits
    for new records, then is judged against the first on the same recent test rows."""
    import threading
    import time

    from services.common.feedback import (
        CONFIRMED_FRAUD,
        FALSE_POSITIVE,
        FeedbackWriter,
        make_feedback,
    )
    from services.trainer.watch import WatchOptions, watch

    topic = f"t_trainer_watch_{uuid.uuid4().hex[:8]}"
    feedback_topic = f"{topic}_feedback"
    fill_topic(topic, 8_000, seed=1, bootstrap=kafka_bootstrap, fraud_ratio=0.02)
    writer = FeedbackWriter(feedback_topic)
    for ident in range(0, 8_000, 800):  # ten verdicts on rows of the first fill
        verdict = CONFIRMED_FRAUD if ident % 1_600 == 0 else FALSE_POSITIVE
        writer.write(make_feedback(ident, verdict, "ana"))
    registry = ModelRegistry(tmp_path)
    results: list[Any] = []
    # The second round starts only once all 6,000 new records are there, so it reads exactly
    # 14,000 (with a lower trigger it could start while the fill is still arriving); the third
    # has no new record: three new verdicts start it.
    options = WatchOptions(
        every_records=6_000, window=20_000, max_rounds=3, poll_s=0.5,
        feedback_topic=feedback_topic, feedback_min=3,
    )  # fmt: skip
    # the autoencoder alone: the rounds' decisions are what this checks, and candidates would
    # triple the CI time of three rounds
    config = make_config(epochs=2, batch_size=512, baselines=False)

    def run() -> None:
        try:
            watch(topic, f"test-watch-{uuid.uuid4().hex[:8]}", config, registry, options,
                  bootstrap=kafka_bootstrap, models_topic=f"{topic}_models",
                  on_round=results.append)  # fmt: skip
        except BaseException as exc:  # surfaced below
            results.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 240
        while not registry.versions() and time.monotonic() < deadline and worker.is_alive():
            time.sleep(0.5)
        assert len(registry.versions()) == 1, results
        first = registry.versions()[0]
        assert registry.metrics(first)["promotion"]["decision"] == "promoted"
        fill_topic(topic, 6_000, seed=2, bootstrap=kafka_bootstrap, fraud_ratio=0.02,
                   first_key=8_000)  # fmt: skip
        deadline = time.monotonic() + 180
        while len(results) < 2 and time.monotonic() < deadline and worker.is_alive():
            time.sleep(0.2)
        assert len(results) == 2 and all(isinstance(r, ModelVersion) for r in results), results
        second = results[1]
        promotion = second.metrics["promotion"]
        assert promotion["champion"]["version"] == first
        assert second.metrics["source"]["consumed"] == 14_000
        expected_latest = second.version if promotion["decision"] == "promoted" else first
        assert registry.latest() == expected_latest
        assert promotion["reason"] in second.report()
        reviewed = registry.metrics(first)["feedback"]
        assert reviewed["reviewed_rows"] == 10 and reviewed["confirmed_fraud"] == 5
        assert reviewed["round_trigger"] == "first round"
        assert "precision on reviewed alerts" in (tmp_path / first / "report.md").read_text()
        assert second.metrics["feedback"]["round_trigger"] == "records"
        for ident in (8_100, 8_200, 8_300):
            writer.write(make_feedback(ident, CONFIRMED_FRAUD, "bo"))
        worker.join(180)
        assert not worker.is_alive()
        assert len(results) == 3 and isinstance(results[2], ModelVersion), results
        third = results[2].metrics["feedback"]
        assert third["round_trigger"] == "feedback" and third["reviewed_rows"] == 13
        assert third["confirmed_fraud"] == 8
    finally:
        delete_topics([topic, f"{topic}_models", feedback_topic], kafka_bootstrap)


def test_ingest_bounds_and_partitions(schema_registry_url: str, kafka_bootstrap: str) -> None:
    """Three partitions: every row arrives once, in (partition, offset) order; --max-records
    caps the read, and a group resumes where its committed offsets say."""
    import numpy as np

    from services.trainer.ingest import commit, ingest

    topic = f"t_trainer_parts_{uuid.uuid4().hex[:8]}"
    features, _labels = fill_topic(topic, 3_000, seed=4, bootstrap=kafka_bootstrap, partitions=3)
    group = f"test-parts-{uuid.uuid4().hex[:8]}"
    try:
        whole = ingest(topic, group, from_beginning=True, bootstrap=kafka_bootstrap)
        assert len(whole) == 3_000 and set(whole.partitions.tolist()) == {0, 1, 2}
        order = np.lexsort((whole.offsets, whole.partitions))
        assert (order == np.arange(3_000)).all()
        sent = features.astype(np.float32)  # same values, whatever the interleaving
        np.testing.assert_array_equal(np.sort(whole.features, axis=0), np.sort(sent, axis=0))

        part = ingest(topic, group, max_records=1_000, bootstrap=kafka_bootstrap)
        assert part.consumed == 1_000 and len(part) == 1_000
        commit(part, group, kafka_bootstrap)
        rest = ingest(topic, group, bootstrap=kafka_bootstrap)
        assert len(rest) == 2_000
        seen = {(p, o) for p, o in zip(part.partitions, part.offsets, strict=True)}
        assert seen.isdisjoint(zip(rest.partitions, rest.offsets, strict=True))
    finally:
        delete_topics([topic], kafka_bootstrap)
