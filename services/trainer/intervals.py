"""Error bars for every figure the trainer shows: with a few dozen frauds in a split, a PR-AUC of
0.45 may well be 0.30 or 0.60, and without an interval nobody can tell a real gain from noise.

* ROC-AUC and PR-AUC (average precision): a stratified percentile bootstrap. Frauds and normal
  rows are resampled separately (so every replicate keeps the split's class counts) by drawing
  multinomial row weights; the rows are sorted by score once, so each replicate is a weighted
  cumulative sum (O(n)) instead of a new sort. The point estimate equals scikit-learn's
  `roc_auc_score` (trapezoid) and `average_precision_score` (step sum), ties included.
* Precision and recall are binomial proportions (hits out of alerts, hits out of frauds): the
  exact Clopper-Pearson interval, which never undercovers, also at 0 or n hits.
* Time-ordered folds: the test split cut into consecutive periods, each scored on its own, so a
  figure that holds in one period but not the next shows up as spread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LEVEL = 0.95
BOOTSTRAP_REPLICATES = 400
BOOTSTRAP_SEED = 12345
MIN_FOLD_FRAUDS = 10
"""A fold needs this many frauds for its own PR-AUC to mean anything."""
MAX_FOLDS = 3


def clopper_pearson(hits: int, trials: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact two-sided binomial interval for hits/trials ((0, 1) when there are no trials)."""
    from scipy.stats import beta

    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= hits <= trials:
        raise ValueError(f"hits {hits} outside 0..{trials}")
    alpha = 1.0 - level
    low = 0.0 if hits == 0 else float(beta.ppf(alpha / 2, hits, trials - hits + 1))
    high = 1.0 if hits == trials else float(beta.ppf(1 - alpha / 2, hits + 1, trials - hits))
    return low, high


def _grouped(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order by score descending; returns (order, positive mask in that order, the index of the
    last row of each run of equal scores)."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    return order, labels[order] == 1, ends


def _auc_from_weights(
    pos_w: np.ndarray, neg_w: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision for weight rows [b, n] (rows already in score order)."""
    tp = np.cumsum(pos_w, axis=1)[:, ends]
    fp = np.cumsum(neg_w, axis=1)[:, ends]
    p, n = tp[:, -1:], fp[:, -1:]
    tpr = np.concatenate([np.zeros_like(p), tp / p], axis=1)
    fpr = np.concatenate([np.zeros_like(n), fp / n], axis=1)
    roc = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2.0, axis=1)
    precision = tp / np.maximum(tp + fp, 1e-300)
    ap = np.sum(np.diff(tpr, axis=1) * precision, axis=1)
    return roc, ap


def _replicates(
    score_sets: list[np.ndarray], y: np.ndarray, replicates: int, seed: int
) -> tuple[list[tuple[float, float]], list[tuple[np.ndarray, np.ndarray]]]:
    """Point (ROC-AUC, AP) of each score vector and their bootstrap replicates, all from the SAME
    resampled rows (so differences between score vectors are paired)."""
    pos_idx, neg_idx = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    layouts = [_grouped(np.asarray(s, dtype=np.float64), y) for s in score_sets]
    points = []
    for _order, positive, ends in layouts:
        w = positive.astype(np.float64)[None, :]
        roc, ap = _auc_from_weights(w, 1.0 - w, ends)
        points.append((float(roc[0]), float(ap[0])))
    rng = np.random.default_rng(seed)
    reps: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in score_sets]
    # replicates are weighed in chunks of at most ~500k cells: the weights, their reordered
    # copies and cumulative sums are ~10 arrays of that size (~40 MB), not the trainer's peak
    chunk = max(1, min(replicates, 500_000 // max(len(y), 1)))
    done = 0
    while done < replicates:
        b = min(chunk, replicates - done)
        pos_w = np.zeros((b, len(y)))
        neg_w = np.zeros((b, len(y)))
        pos_w[:, pos_idx] = rng.multinomial(
            len(pos_idx), np.full(len(pos_idx), 1 / len(pos_idx)), b
        )
        neg_w[:, neg_idx] = rng.multinomial(
            len(neg_idx), np.full(len(neg_idx), 1 / len(neg_idx)), b
        )
        for k, (order, _positive, ends) in enumerate(layouts):
            reps[k].append(_auc_from_weights(pos_w[:, order], neg_w[:, order], ends))
        done += b
    joined = [
        (np.concatenate([r[0] for r in rs]), np.concatenate([r[1] for r in rs])) for rs in reps
    ]
    return points, joined


def _percentiles(values: np.ndarray, level: float) -> list[float]:
    tail = (1.0 - level) / 2.0 * 100.0
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def ranking_with_intervals(
    scores: np.ndarray,
    labels: np.ndarray,
    replicates: int = BOOTSTRAP_REPLICATES,
    level: float = LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """ROC-AUC and PR-AUC with stratified-bootstrap percentile intervals (None when a class is
    missing). Returns {"roc_auc", "pr_auc", "roc_auc_ci": [lo, hi], "pr_auc_ci": [lo, hi]}."""
    return compare_rankings({"x": scores}, labels, replicates, level, seed)["x"]


def compare_rankings(
    score_sets: dict[str, np.ndarray],
    labels: np.ndarray,
    replicates: int = BOOTSTRAP_REPLICATES,
    level: float = LEVEL,
    seed: int = BOOTSTRAP_SEED,
    reference: str | None = None,
) -> dict[str, dict[str, Any]]:
    """`ranking_with_intervals` of several scorers on the same rows; with `reference`, each also
    gets `pr_auc_gap_ci`: the paired bootstrap interval of PR-AUC(reference) - PR-AUC(it)."""
    y = (np.asarray(labels) == 1).astype(np.int64)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        empty = {"roc_auc": None, "pr_auc": None, "roc_auc_ci": None, "pr_auc_ci": None}
        return {name: dict(empty) for name in score_sets}
    names = list(score_sets)
    points, reps = _replicates([score_sets[n] for n in names], y, replicates, seed)
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        out[name] = {
            "roc_auc": points[k][0],
            "pr_auc": points[k][1],
            "roc_auc_ci": _percentiles(reps[k][0], level),
            "pr_auc_ci": _percentiles(reps[k][1], level),
        }
        if reference is not None:
            gap = reps[names.index(reference)][1] - reps[k][1]
            out[name]["pr_auc_gap_ci"] = _percentiles(gap, level)
    return out


def proportion_intervals(confusion: dict[str, int], level: float = LEVEL) -> dict[str, list[float]]:
    """Clopper-Pearson intervals of precision (tp / alerts) and recall (tp / frauds)."""
    tp, fp, fn = confusion["tp"], confusion["fp"], confusion["fn"]
    return {
        "precision_ci": list(clopper_pearson(tp, tp + fp, level)),
        "recall_ci": list(clopper_pearson(tp, tp + fn, level)),
    }


def time_folds(
    times: np.ndarray, labels: np.ndarray, max_folds: int = MAX_FOLDS
) -> list[np.ndarray]:
    """Indices of consecutive time periods (equal row counts), as many as the data allows: each
    fold keeps at least MIN_FOLD_FRAUDS frauds; one fold (everything) when fewer."""
    order = np.argsort(np.asarray(times), kind="stable")
    frauds = int(np.sum(np.asarray(labels) == 1))
    k = max(1, min(max_folds, frauds // MIN_FOLD_FRAUDS))
    while k > 1:
        folds = np.array_split(order, k)
        if all(int(np.sum(labels[f] == 1)) >= MIN_FOLD_FRAUDS for f in folds):
            return folds
        k -= 1
    return [order]


def fold_metrics(
    scores: np.ndarray, labels: np.ndarray, times: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Per-fold ROC-AUC, PR-AUC, precision and recall over the time-ordered folds, with their
    mean and spread (min..max)."""
    from services.trainer.evaluate import metrics_at, ranking_metrics

    folds = time_folds(times, labels)
    per_fold = []
    for idx in folds:
        ranking = ranking_metrics(scores[idx], labels[idx])
        at = metrics_at(scores[idx], labels[idx], threshold)
        per_fold.append(
            {
                "rows": len(idx),
                "frauds": int(np.sum(labels[idx] == 1)),
                "time_min": float(np.min(times[idx])) if len(idx) else None,
                "time_max": float(np.max(times[idx])) if len(idx) else None,
                **ranking,
                "precision": at["precision"],
                "recall": at["recall"],
            }
        )
    summary: dict[str, Any] = {"folds": per_fold}
    for key in ("roc_auc", "pr_auc", "precision", "recall"):
        values = [f[key] for f in per_fold if f[key] is not None]
        summary[key] = (
            {"mean": float(np.mean(values)), "min": float(min(values)), "max": float(max(values))}
            if values
            else None
        )
    return summary


def with_intervals(
    metrics: dict[str, Any], scores: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """`metrics` (an `evaluate_scores` result) plus bootstrap and exact intervals."""
    ranking = ranking_with_intervals(scores, labels)
    return {
        **metrics,
        "roc_auc_ci": ranking["roc_auc_ci"],
        "pr_auc_ci": ranking["pr_auc_ci"],
        **proportion_intervals(metrics["confusion_matrix"]),
        "interval_level": LEVEL,
    }


def fmt_interval(value: float | None, ci: list[float] | None, digits: int = 3) -> str:
    """`0.612 [0.48, 0.73]` (or `n/a`)."""
    if value is None:
        return "n/a"
    if not ci:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{ci[0]:.{digits - 1}f}, {ci[1]:.{digits - 1}f}]"
