"""Candidates and the champion: the rule, the compiled forest against scikit-learn, the ensemble
against a slow exact path, and versions that save and load every kind of champion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from services.model_registry.registry import IntegrityError, ModelRegistry
from services.model_registry.scoring import (
    FOREST_FILE,
    SCORING_FILE,
    CandidateLoadedModel,
    CompactForest,
    ensemble_exact,
)
from services.trainer.api import make_config, train_arrays
from services.trainer.candidates import choose_champion
from services.trainer.synthetic import generated_arrays


@pytest.fixture(scope="module")
def forest() -> tuple[object, CompactForest]:
    from sklearn.ensemble import IsolationForest

    x = np.random.default_rng(0).standard_normal((2_000, 30)).astype(np.float32)
    fitted = IsolationForest(n_estimators=24, max_samples=128, random_state=1).fit(x)
    return fitted, CompactForest.from_sklearn(fitted)


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 40), st.just(30)), elements=finite))
def test_compiled_forest_equals_sklearn_and_the_slow_walk(
    forest: tuple[object, CompactForest], x: np.ndarray
) -> None:
    from services.model_registry.scoring import forest_batch_scores

    fitted, compact = forest
    exact = compact.scores_exact(x)
    # leaf path lengths are stored as float32: the same leaves, rounded at 1e-7
    np.testing.assert_allclose(exact, -fitted.score_samples(x), rtol=1e-6, atol=1e-9)  # type: ignore[attr-defined]
    np.testing.assert_allclose(forest_batch_scores(compact, x), exact, rtol=1e-6, atol=1e-7)


def test_forest_bytes_round_trip_and_refuse_garbage(forest: tuple[object, CompactForest]) -> None:
    _, compact = forest
    again = CompactForest.from_bytes(compact.to_bytes())
    np.testing.assert_array_equal(again.threshold, compact.threshold)
    assert again.normaliser == compact.normaliser
    broken = CompactForest(compact.feature + 40, compact.threshold, compact.leaf_value,
                           compact.depth, compact.normaliser)  # fmt: skip
    with pytest.raises(ValueError, match="malformed"):
        CompactForest.from_bytes(broken.to_bytes())


class _Errors:
    """A stand-in autoencoder part: the error is a fixed function of the row."""

    def errors_preprocessed(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.mean(np.square(x), axis=1), dtype=np.float32)

    def errors_and_parts_preprocessed(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = np.square(x).astype(np.float32) / x.shape[1]
        return parts.sum(axis=1), parts


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(1, 60), st.just(30)), elements=finite),
    st.floats(-3, 3),
    st.floats(0.1, 4),
)
def test_ensemble_scoring_equals_the_slow_exact_path(
    forest: tuple[object, CompactForest], x: np.ndarray, mean: float, std: float
) -> None:
    from services.model_registry.preprocessing import Preprocessing

    _, compact = forest
    spec = {"autoencoder": {"mean": mean, "std": std}, "forest": {"mean": 0.4, "std": 0.05}}
    identity = Preprocessing.fit(np.zeros((2, 30), dtype=np.float32))
    model = CandidateLoadedModel("v", Path("."), "ensemble", identity, 0.0, {}, spec,
                                 autoencoder=_Errors(), forest=compact)  # fmt: skip
    fast = model.scores_preprocessed(x)
    slow = ensemble_exact(_Errors().errors_preprocessed(x), compact.scores_exact(x), spec)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-4)


def test_large_batches_overlap_the_walk_and_still_equal_the_exact_path(
    forest: tuple[object, CompactForest],
) -> None:
    from services.model_registry.preprocessing import Preprocessing
    from services.model_registry.scoring import OVERLAP_ROWS

    _, compact = forest
    spec = {"autoencoder": {"mean": 0.5, "std": 2.0}, "forest": {"mean": 0.4, "std": 0.05}}
    identity = Preprocessing.fit(np.zeros((2, 30), dtype=np.float32))
    model = CandidateLoadedModel("v", Path("."), "ensemble", identity, 0.0, {}, spec,
                                 autoencoder=_Errors(), forest=compact)  # fmt: skip
    x = np.random.default_rng(9).standard_normal((OVERLAP_ROWS * 4 + 3, 30)).astype(np.float32)
    slow = ensemble_exact(_Errors().errors_preprocessed(x), compact.scores_exact(x), spec)
    for _ in range(3):  # the helper thread is reused batch after batch
        np.testing.assert_allclose(model.scores_preprocessed(x), slow, rtol=1e-5, atol=1e-4)


def test_champion_rule() -> None:
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(60, int), np.zeros(4_000, int)]
    base = rng.normal(size=len(y))
    scores = {
        "autoencoder": base + 1.0 * y,
        "ensemble": base + 3.0 * y,  # clearly better: wins
        "isolation_forest": rng.normal(size=len(y)) + 0.5 * y,
    }
    choice = choose_champion(scores, y)
    assert choice["name"] == "ensemble" and choice["best"] == "ensemble"
    assert "beats every candidate" in choice["reason"]
    # a hair better than the autoencoder is noise: the mission's model stays
    scores["ensemble"] = scores["autoencoder"] + 0.01 * rng.normal(size=len(y))
    choice = choose_champion(scores, y)
    assert choice["name"] == "autoencoder"
    table = choice["validation"]
    assert table["autoencoder"]["pr_auc"] >= table[choice["best"]]["pr_auc_ci"][0]
    assert choose_champion(scores, y, forced="isolation_forest")["name"] == "isolation_forest"
    with pytest.raises(ValueError):
        choose_champion(scores, y, forced="supervised")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    features, labels = generated_arrays(8_000, seed=5, fraud_ratio=0.02, family="copula")
    return features.astype(np.float32), labels


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ensemble", "isolation_forest", "supervised"])
def test_every_champion_saves_and_loads(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], kind: str
) -> None:
    features, labels = data
    mv = train_arrays(features, labels, make_config(epochs=2, seed=2, model=kind),
                      models_dir=tmp_path)  # fmt: skip
    assert mv.champion == kind and mv.champion_line().startswith(f"champion {kind}")
    assert mv.summary_line().endswith(f"threshold={mv.threshold:.6g}")
    assert "## Model choice" in mv.report() and "## Operating points" in mv.report()
    loaded = mv.load()
    assert isinstance(loaded, CandidateLoadedModel) and loaded.kind == kind
    outcome = mv.outcome
    assert outcome is not None
    raw_test = features[outcome.split.test]
    np.testing.assert_allclose(loaded.score(raw_test), outcome.test_scores[kind], rtol=1e-5,
                               atol=1e-5)  # fmt: skip
    assert loaded.threshold == pytest.approx(mv.threshold)
    if kind != "supervised":  # the forest is covered by the manifest like every file
        (mv.path / FOREST_FILE).write_bytes(b"x" + (mv.path / FOREST_FILE).read_bytes()[1:])
        with pytest.raises(IntegrityError):
            ModelRegistry(tmp_path).load(mv.version)


@pytest.mark.slow
def test_autoencoder_forced_writes_no_candidate_files(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    features, labels = data
    mv = train_arrays(features, labels, make_config(epochs=2, seed=2, model="autoencoder"),
                      models_dir=tmp_path)  # fmt: skip
    assert mv.champion == "autoencoder"
    assert not (mv.path / SCORING_FILE).exists()
    assert set(mv.metrics["test"]) >= {"autoencoder", "isolation_forest", "ensemble"}
    assert mv.metrics["champion"]["forced"] is True
    with pytest.raises(ValueError):
        make_config(model="gbm")
