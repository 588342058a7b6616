"""Honest evaluation: a split in event order, a threshold chosen on validation, test metrics.

Nothing here looks at the test split before the final metrics: the split hands back index
arrays, preprocessing and the threshold take the train and validation indices only, and the
metrics take the test indices only. A row alerts when its score is at or above the threshold,
in the trainer and in the scorer alike (the scorer's `alert_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from services.model_registry.budget import budget_threshold

THRESHOLD_RULES = ("best_f1", "alert_budget", "target_precision")
FALLBACK_QUANTILE = 0.995
"""Used when the validation split holds no fraud: alert on the top 0.5 % of scores."""


@dataclass(frozen=True)
class Split:
    """Row indices of each part, in event order (train before validation before test)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def time_split(times: np.ndarray, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Split:
    """Sort rows by event time (stable: ties keep arrival order) and cut 60/20/20.

    Later rows are never used to fit what judges earlier ones, as in production, where the model
    always scores transactions that happen after its training data.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError("split fractions must be three non-negative numbers summing to 1")
    order = np.argsort(np.asarray(times), kind="stable")
    n = len(order)
    n_train = round(n * fractions[0])
    n_val = round(n * fractions[1])
    return Split(order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :])


@dataclass(frozen=True)
class ThresholdRule:
    """How the threshold is picked on the validation split."""

    name: str = "best_f1"
    alert_budget: float | None = None
    """alerts per 10,000 transactions (rule `alert_budget`)."""
    target_precision: float | None = None
    """minimum precision (rule `target_precision`): the lowest such threshold, for recall."""

    @classmethod
    def from_options(
        cls, alert_budget: float | None = None, target_precision: float | None = None
    ) -> ThresholdRule:
        if alert_budget is not None and target_precision is not None:
            raise ValueError("choose either an alert budget or a target precision, not both")
        if alert_budget is not None:
            if not 0 < alert_budget <= 10_000:
                raise ValueError("alert budget must be within (0, 10000] alerts per 10,000")
            return cls("alert_budget", alert_budget=alert_budget)
        if target_precision is not None:
            if not 0 < target_precision <= 1:
                raise ValueError("target precision must be within (0, 1]")
            return cls("target_precision", target_precision=target_precision)
        return cls("best_f1")


def _candidates(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per distinct score s (descending): tp, fp when alerting on score >= s."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[distinct].astype(np.float64)
    fp = (distinct + 1 - tp).astype(np.float64)
    return s[distinct], tp, fp


def _cut_below(values: np.ndarray, i: int) -> float:
    """A threshold alerting on the distinct scores values[:i+1] (descending) and no others:
    midway to the next lower score, so the cut does not sit on a seen score."""
    if i + 1 < len(values):
        return float((values[i] + values[i + 1]) / 2.0)
    return float(values[i])


def choose_threshold(scores: np.ndarray, labels: np.ndarray, rule: ThresholdRule) -> dict[str, Any]:
    """Pick the threshold on validation scores; returns it with the rule and what it achieved."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = (np.asarray(labels) == 1).astype(np.int64)
    if len(scores) == 0:
        raise ValueError("no validation rows to choose a threshold on")
    info: dict[str, Any] = {"rule": rule.name, "split": "validation", "rows": len(scores)}
    if rule.name == "alert_budget":
        assert rule.alert_budget is not None
        info["alert_budget_per_10k"] = rule.alert_budget
        threshold = budget_threshold(scores, rule.alert_budget)
    elif labels.sum() == 0:
        threshold = float(np.quantile(scores, FALLBACK_QUANTILE))
        info["fallback"] = f"no fraud in validation: quantile {FALLBACK_QUANTILE}"
    else:
        values, tp, fp = _candidates(scores, labels)
        precision = tp / (tp + fp)
        recall = tp / labels.sum()
        if rule.name == "target_precision":
            assert rule.target_precision is not None
            info["target_precision"] = rule.target_precision
            ok = np.flatnonzero(precision >= rule.target_precision)
            if len(ok):
                i = int(ok[-1])  # lowest threshold meeting the target: most recall
            else:
                i = int(np.argmax(precision))
                info["fallback"] = "target precision not reachable: highest precision instead"
        else:
            f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
            i = int(np.argmax(f1))
        threshold = _cut_below(values, i)
    info["threshold"] = threshold
    info["validation"] = metrics_at(scores, labels, threshold)
    return info


def metrics_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Precision, recall, F1, confusion matrix and alerts per 10,000 at `score >= threshold`."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels) == 1
    alert = scores >= threshold
    tp = int(np.sum(alert & y))
    fp = int(np.sum(alert & ~y))
    fn = int(np.sum(~alert & y))
    tn = int(np.sum(~alert & ~y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "alerts_per_10k": 10_000.0 * int(alert.sum()) / len(scores) if len(scores) else 0.0,
    }


def ranking_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """ROC-AUC and PR-AUC (average precision); None when the split lacks one of the classes."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = (np.asarray(labels) == 1).astype(np.int64)
    if y.min(initial=1) == y.max(initial=0):
        return {"roc_auc": None, "pr_auc": None}
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "pr_auc": float(average_precision_score(y, scores)),
    }


def evaluate_scores(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Every test figure of one scorer: ranking metrics plus the thresholded ones."""
    return {
        **ranking_metrics(scores, labels),
        "threshold": float(threshold),
        **metrics_at(scores, labels, threshold),
        "rows": len(scores),
        "frauds": int(np.sum(np.asarray(labels) == 1)),
    }


@dataclass
class Baseline:
    """A fitted baseline: `score(x)` for preprocessed rows, higher = more suspicious."""

    name: str
    model: Any

    def score(self, x: np.ndarray) -> np.ndarray:
        reconstruction = self.model.inverse_transform(self.model.transform(x))
        return np.asarray(np.mean((x - reconstruction) ** 2, axis=1), dtype=np.float64)


def fit_baselines(x_train_normal: np.ndarray, bottleneck: int, seed: int) -> list[Baseline]:
    """PCA reconstruction, fitted on the same rows as the autoencoder (a reference only; the
    IsolationForest is a candidate that can serve: services/trainer/candidates.py)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(bottleneck, x_train_normal.shape[1]), random_state=seed)
    pca.fit(x_train_normal)
    return [Baseline("pca_reconstruction", pca)]
