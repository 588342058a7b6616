"""Intervals: the bootstrap point estimates equal scikit-learn's, intervals cover what they must,
Clopper-Pearson is exact, and folds follow time."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from services.trainer.intervals import (
    MIN_FOLD_FRAUDS,
    clopper_pearson,
    fold_metrics,
    ranking_with_intervals,
    time_folds,
)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=4, max_size=80),
    st.lists(st.booleans(), min_size=4, max_size=80),
)
def test_point_estimates_equal_sklearn_with_ties(raw: list[int], flags: list[bool]) -> None:
    n = min(len(raw), len(flags))
    scores = np.asarray(raw[:n], dtype=float)  # few distinct values: many ties
    labels = np.asarray(flags[:n], dtype=int)
    result = ranking_with_intervals(scores, labels, replicates=20)
    if labels.min() == labels.max():
        assert result["pr_auc"] is None and result["pr_auc_ci"] is None
        return
    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["pr_auc"] == pytest.approx(average_precision_score(labels, scores))


def test_interval_brackets_estimate_and_shrinks_with_data() -> None:
    rng = np.random.default_rng(1)

    def width(n: int) -> tuple[float, dict]:
        y = (rng.random(n) < 0.05).astype(int)
        s = rng.normal(size=n) + 1.5 * y
        r = ranking_with_intervals(s, y)
        assert r["pr_auc_ci"][0] <= r["pr_auc"] <= r["pr_auc_ci"][1]
        assert r["roc_auc_ci"][0] <= r["roc_auc"] <= r["roc_auc_ci"][1]
        return r["pr_auc_ci"][1] - r["pr_auc_ci"][0], r

    small, _ = width(1_000)
    large, _ = width(40_000)
    assert large < small / 2


def test_bootstrap_covers_the_truth_most_of_the_time() -> None:
    """Coverage check: population AUC of N(1.5,1) vs N(0,1) is Phi(1.5/sqrt 2) = 0.8556."""
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(40):
        y = np.r_[np.ones(60, int), np.zeros(2_000, int)]
        s = rng.normal(size=len(y)) + 1.5 * y
        lo, hi = ranking_with_intervals(s, y, replicates=200, seed=int(rng.integers(1 << 30)))[
            "roc_auc_ci"
        ]
        covered += lo <= 0.8556 <= hi
    assert covered >= 33  # nominal 38 of 40


def test_clopper_pearson_exact_values() -> None:
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(0.30850, abs=1e-4))
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.18709, abs=1e-4) and hi == pytest.approx(0.81291, abs=1e-4)
    assert clopper_pearson(10, 10)[1] == 1.0
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        clopper_pearson(11, 10)


def test_time_folds_are_consecutive_and_hold_enough_frauds() -> None:
    rng = np.random.default_rng(2)
    times = rng.permutation(3_000).astype(float)
    labels = (rng.random(3_000) < 0.02).astype(int)
    folds = time_folds(times, labels)
    assert len(folds) >= 2
    for a, b in itertools.pairwise(folds):
        assert times[a].max() < times[b].min()
    assert all(labels[f].sum() >= MIN_FOLD_FRAUDS for f in folds)
    assert len(time_folds(times[:100], np.r_[np.ones(5, int), np.zeros(95, int)])) == 1
    summary = fold_metrics(rng.normal(size=3_000) + labels, labels, times, 1.0)
    assert summary["pr_auc"]["min"] <= summary["pr_auc"]["mean"] <= summary["pr_auc"]["max"]
