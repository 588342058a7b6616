"""Split, threshold rules and metrics on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest

from services.trainer.evaluate import (
    ThresholdRule,
    choose_threshold,
    evaluate_scores,
    metrics_at,
    time_split,
)


def test_time_split_is_in_event_order_and_60_20_20() -> None:
    rng = np.random.default_rng(0)
    times = rng.permutation(1000).astype(float)
    split = time_split(times)
    assert split.sizes() == {"train": 600, "validation": 200, "test": 200}
    assert times[split.train].max() < times[split.validation].min()
    assert times[split.validation].max() < times[split.test].min()
    covered = np.concatenate([split.train, split.validation, split.test])
    assert sorted(covered.tolist()) == list(range(1000))


def test_time_split_keeps_arrival_order_on_ties() -> None:
    split = time_split(np.zeros(10))
    assert split.train.tolist() == [0, 1, 2, 3, 4, 5]


def test_best_f1_threshold_separates_and_is_strict() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.9, 1.0, 0.35])
    labels = np.array([0, 0, 0, 1, 1, 0])
    info = choose_threshold(scores, labels, ThresholdRule())
    assert info["rule"] == "best_f1"
    assert 0.35 < info["threshold"] < 0.9
    assert info["validation"]["f1"] == 1.0
    assert metrics_at(scores, labels, info["threshold"])["confusion_matrix"]["tp"] == 2


def test_best_f1_prefers_the_f1_maximum_not_max_recall() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    labels = np.array([1, 0, 0, 0, 0, 0, 1, 1])
    info = choose_threshold(scores, labels, ThresholdRule())
    assert 0.6 < info["threshold"] < 0.7  # catching the 0.1 fraud would cost 6 false alerts


def test_alert_budget_rule() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random(100_000)
    labels = np.zeros(100_000, dtype=int)
    info = choose_threshold(scores, labels, ThresholdRule.from_options(alert_budget=25))
    assert info["rule"] == "alert_budget"
    assert info["validation"]["alerts_per_10k"] == pytest.approx(25, abs=1)


def test_target_precision_rule_takes_most_recall() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    labels = np.array([0, 1, 0, 0, 1, 0, 1, 1, 0, 1])
    info = choose_threshold(scores, labels, ThresholdRule.from_options(target_precision=0.75))
    assert info["validation"]["precision"] >= 0.75
    assert info["validation"]["recall"] == pytest.approx(0.6)
    assert 0.6 < info["threshold"] < 0.7  # >= 0.5 would give precision 4/6 only
    unreachable = choose_threshold(scores, labels, ThresholdRule.from_options(target_precision=1))
    assert unreachable["validation"]["precision"] == 1.0


def test_rules_validate_options() -> None:
    with pytest.raises(ValueError):
        ThresholdRule.from_options(alert_budget=10, target_precision=0.5)
    with pytest.raises(ValueError):
        ThresholdRule.from_options(alert_budget=0)
    with pytest.raises(ValueError):
        ThresholdRule.from_options(target_precision=1.5)


def test_no_fraud_in_validation_falls_back_to_a_quantile() -> None:
    scores = np.arange(1000, dtype=float)
    info = choose_threshold(scores, np.zeros(1000), ThresholdRule())
    assert "fallback" in info
    assert info["validation"]["alerts_per_10k"] == pytest.approx(50, abs=10)


def test_metrics_confusion_and_auc() -> None:
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.7])
    labels = np.array([0, 0, 1, 1, 0])
    m = evaluate_scores(scores, labels, threshold=0.5)
    assert m["confusion_matrix"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 1}
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert m["alerts_per_10k"] == pytest.approx(4000)
    assert m["roc_auc"] == pytest.approx(4 / 6)
    single = evaluate_scores(scores, np.zeros(5), threshold=0.5)
    assert single["roc_auc"] is None and single["pr_auc"] is None
