"""The model registry: complete versions only, LATEST replaced atomically, load → score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.common.errors import FraudstreamError
from services.model_registry.api import LATEST_FILE, MODEL_NAME, LoadedModel
from services.model_registry.preprocessing import Preprocessing
from services.model_registry.registry import (
    REQUIRED_FILES,
    STAGING_PREFIX,
    KerasLoadedModel,
    ModelRegistry,
    VersionNotFound,
    announcement_from_json,
    announcement_to_json,
)


def _raw_features(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 30)).astype(np.float32)
    x[:, 0] = rng.uniform(0, 172_800, n)
    x[:, -1] = rng.exponential(80.0, n)
    return x


def _tiny_model(seed: int = 0) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(30,))
    hidden = keras.layers.Dense(4, activation="tanh")(inputs)
    outputs = keras.layers.Dense(30)(hidden)
    return keras.Model(inputs, outputs)


def _save(registry: ModelRegistry, threshold: float = 1.5, **kwargs: Any) -> str:
    pre = Preprocessing.fit(_raw_features(200))
    return registry.save_version(
        _tiny_model(),
        pre,
        {"threshold": threshold, "rule": "best_f1"},
        {"test": {"autoencoder": {"roc_auc": 0.9, "pr_auc": 0.5}}},
        announce=False,
        **kwargs,
    )


def test_save_publishes_complete_version_and_latest(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)

    def extra(staging: Path, version: str) -> None:
        (staging / "report.md").write_text(f"# {version}\n")

    version = _save(registry, write_extra=extra)

    folder = tmp_path / version
    for name in (*REQUIRED_FILES, "report.md"):
        assert (folder / name).is_file(), name
    assert (tmp_path / LATEST_FILE).read_text().strip() == version
    assert registry.latest() == version
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["version"] == version and metrics["created_at"]


def test_load_scores_one_batch_like_the_model(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    version = _save(registry, threshold=0.75)
    loaded = registry.load("latest")
    as_contract: LoadedModel = loaded  # mypy checks that the contract is implemented
    assert as_contract.version == version
    assert loaded.version == version
    assert isinstance(loaded, KerasLoadedModel)
    assert loaded.threshold == pytest.approx(0.75)

    raw = _raw_features(64, seed=3)
    errors = loaded.score(raw)
    x = loaded.preprocessing.transform(raw)
    expected = np.mean((x - np.asarray(loaded.model(x))) ** 2, axis=1)
    assert errors.shape == (64,)
    np.testing.assert_allclose(errors, expected, rtol=1e-5)
    # different batch sizes reuse one traced graph and give row-wise identical results
    np.testing.assert_allclose(loaded.score(raw[:5]), errors[:5], rtol=1e-5)
    assert loaded.score(raw[:0]).shape == (0,)
    assert loaded.is_alert(np.array([0.5, 0.75, 1.0])).tolist() == [False, True, True]


def test_list_show_and_latest_moves(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    first = _save(registry, version="20260101-000000-aaaaaa")
    second = _save(registry, version="20260102-000000-bbbbbb", make_latest=False)
    assert registry.versions() == [first, second]
    assert registry.latest() == first
    registry.set_latest(second)
    summaries = registry.list()
    assert [s.latest for s in summaries] == [False, True]
    assert summaries[0].roc_auc == pytest.approx(0.9)
    shown = registry.show(second)
    assert set(REQUIRED_FILES) <= set(shown["files"])
    assert shown["threshold"]["rule"] == "best_f1"


def test_missing_versions_and_incomplete_staging(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(VersionNotFound):
        registry.load("latest")
    with pytest.raises(VersionNotFound):
        registry.set_latest("nope")
    version, staging = registry.stage()
    assert staging.name.startswith(STAGING_PREFIX)
    assert registry.versions() == []  # a staging directory is never a version
    with pytest.raises(FraudstreamError, match="missing"):
        registry.publish(version, staging)


def test_announcement_round_trip(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    version = _save(registry, threshold=2.0)
    event = registry.announcement(version)
    assert event.model == MODEL_NAME and event.threshold == 2.0
    assert announcement_from_json(announcement_to_json(event)) == event
    with pytest.raises(ValueError):
        announcement_from_json(b'{"model": "x"}')


def test_preprocessing_round_trip_and_transforms() -> None:
    raw = _raw_features(500)
    pre = Preprocessing.fit(raw)
    again = Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict())))
    np.testing.assert_allclose(again.transform(raw), pre.transform(raw), rtol=1e-6)
    x = pre.transform(raw)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=0), 1, atol=1e-3)
    shifted = raw.copy()
    shifted[:, 0] += 86_400  # the same time of day one day later
    np.testing.assert_allclose(pre.transform(shifted), x, atol=1e-4)


@pytest.mark.slow
def test_announce_on_real_broker(tmp_path: Path, kafka_bootstrap: str, topic_name: str) -> None:
    from services.common.kafka import make_consumer

    registry = ModelRegistry(tmp_path)
    version = _save(registry)
    registry.announce(version, bootstrap=kafka_bootstrap, topic=topic_name)
    consumer = make_consumer(f"test-{topic_name}", kafka_bootstrap)
    try:
        consumer.subscribe([topic_name])
        msg = None
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None
        assert msg.key() == MODEL_NAME.encode()
        assert announcement_from_json(msg.value() or b"").version == version
    finally:
        consumer.close()


def test_models_cli_list_and_show(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from services.cli import app

    registry = ModelRegistry(tmp_path)
    version = _save(registry, threshold=0.5)
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--models-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert f"* {version}" in listed.output and "roc_auc=0.9000" in listed.output
    assert listed.output.strip().splitlines()[-1] == f"1 versions in {tmp_path}"
    shown = runner.invoke(app, ["models", "show", "latest", "--models-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    assert "model.keras" in shown.output and "rule=best_f1" in shown.output
    as_json = runner.invoke(
        app, ["models", "show", version, "--json", "--models-dir", str(tmp_path)]
    )
    assert json.loads(as_json.output)["version"] == version
    missing = runner.invoke(app, ["models", "show", "nope", "--models-dir", str(tmp_path)])
    assert missing.exit_code != 0 and isinstance(missing.exception, VersionNotFound)
