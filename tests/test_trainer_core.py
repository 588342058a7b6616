"""Training on arrays: honest splits, repeatable fits, complete versions, champion/challenger."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.model_registry.registry import REQUIRED_FILES, ModelRegistry
from services.trainer.api import make_config, register, train_arrays
from services.trainer.core import TrainOutcome, fit_and_evaluate
from services.trainer.errors import TrainingDataError
from services.trainer.report import PLOTS
from services.trainer.synthetic import generated_arrays
from services.trainer.watch import decide

CONFIG = make_config(epochs=3, batch_size=256, seed=7)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    features, labels = generated_arrays(6_000, seed=3, fraud_ratio=0.02)
    return features.astype(np.float32), labels


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, ...]) -> TrainOutcome:
    """One fit of `data` with CONFIG, read (never changed) by the tests that need exactly that
    fit; a test that compares two fits makes the second itself (each fit costs CI ~12 s)."""
    features, labels = data
    return fit_and_evaluate(features, labels, CONFIG)


def test_test_rows_never_fit_preprocessing_or_threshold(
    data: tuple[np.ndarray, ...], fitted: TrainOutcome
) -> None:
    """Rewrite every test-split row (features and labels, not TIME, so the split stays put):
    preprocessing, model weights and threshold must not move; the test metrics must."""
    features, labels = data
    first = fitted
    test = first.split.test
    tampered, tampered_labels = features.copy(), labels.copy()
    rng = np.random.default_rng(99)
    tampered[test, 1:] = rng.normal(50.0, 30.0, size=(len(test), 29))
    tampered_labels[test] = 1 - tampered_labels[test]
    second = fit_and_evaluate(tampered, tampered_labels, CONFIG)

    np.testing.assert_array_equal(second.split.test, test)
    np.testing.assert_array_equal(first.preprocessing.mean, second.preprocessing.mean)
    np.testing.assert_array_equal(first.preprocessing.scale, second.preprocessing.scale)
    for w1, w2 in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)
    assert first.threshold == second.threshold
    assert first.metrics["test"] != second.metrics["test"]  # the test rows did change
    assert first.preprocessing.fitted_rows == len(first.split.train)


def test_same_seed_same_threshold(data: tuple[np.ndarray, ...], fitted: TrainOutcome) -> None:
    """The shared fit and a fresh one: two fits with the same seed."""
    features, labels = data
    a = fitted
    b = fit_and_evaluate(features, labels, CONFIG)
    assert a.threshold_value == pytest.approx(b.threshold_value, rel=1e-6)
    other = fit_and_evaluate(features, labels, make_config(epochs=3, batch_size=256, seed=8))
    assert other.threshold_value != a.threshold_value  # the seed matters, so the check can fail


def test_learns_better_than_chance(fitted: TrainOutcome) -> None:
    outcome = fitted
    test = outcome.metrics["test"]
    assert set(test) >= {"autoencoder", "isolation_forest", "ensemble", "pca_reconstruction"}
    assert outcome.metrics["champion"]["name"] in test
    assert test["autoencoder"]["pr_auc_ci"][0] <= test["autoencoder"]["pr_auc"]
    assert test["autoencoder"]["roc_auc"] > 0.8
    assert outcome.metrics["model"]["layers"] == [30, 14, 7, 7, 14, 30]
    assert outcome.threshold["error"]["chosen_by"] == "validation PR-AUC"


def test_train_arrays_registers_every_file(tmp_path: Path, data: tuple[np.ndarray, ...]) -> None:
    features, labels = data
    unlabelled = labels.copy()
    unlabelled[:10] = -1
    mv = train_arrays(features, unlabelled, CONFIG, models_dir=tmp_path)
    files = {p.name for p in mv.path.iterdir()}
    assert set(REQUIRED_FILES) | set(PLOTS) | {"report.md"} <= files
    for png in PLOTS:
        assert (mv.path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = mv.report()
    assert all(f"]({png})" in report for png in PLOTS)
    metrics = json.loads((mv.path / "metrics.json").read_text())
    assert metrics["data"]["unlabelled_dropped"] == 10
    assert mv.summary_line().startswith(f"model {mv.version} roc_auc=")
    loaded = mv.load()
    outcome = mv.outcome
    assert outcome is not None
    raw_test = features[unlabelled >= 0][outcome.split.test]
    np.testing.assert_allclose(
        loaded.score(raw_test), outcome.test_scores[mv.champion], rtol=1e-5, atol=1e-6
    )
    assert ModelRegistry(tmp_path).latest() == mv.version


def test_too_little_data_is_a_clear_error() -> None:
    features, labels = generated_arrays(50, seed=1)
    with pytest.raises(TrainingDataError, match="at least"):
        fit_and_evaluate(features.astype(np.float32), labels, CONFIG)


def test_champion_challenger_promotes_only_a_better_model(
    tmp_path: Path, data: tuple[np.ndarray, ...]
) -> None:
    features, labels = data
    registry = ModelRegistry(tmp_path)
    # the autoencoder forced: the candidates would not care how long the network trained
    good = fit_and_evaluate(features, labels, make_config(epochs=3, seed=7, model="autoencoder"))
    first = decide(good, features, labels, registry)
    assert first["decision"] == "promoted" and first["champion"] is None
    champion = register(good, registry, promotion=first, announce=False)
    assert "Champion / challenger" in champion.report()

    # a challenger that barely trained (1 epoch, other seed) must not replace it
    weak = fit_and_evaluate(
        features,
        labels,
        make_config(epochs=1, batch_size=4096, seed=1, learning_rate=1e-5, model="autoencoder"),
    )
    verdict = decide(weak, features, labels, registry)
    assert verdict["champion"]["version"] == champion.version
    assert verdict["window"]["rows"] == len(weak.split.test)
    assert verdict["decision"] == "kept champion", verdict["reason"]
    loser = register(weak, registry, promotion=verdict, make_latest=False, announce=False)
    assert registry.latest() == champion.version
    assert registry.metrics(loser.version)["promotion"]["decision"] == "kept champion"
