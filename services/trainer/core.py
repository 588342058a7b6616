"""From a feature matrix to a fitted, thresholded, evaluated model (no Kafka, no disk).

The order of the steps is the honesty argument: split by event time → fit preprocessing on the
training rows → fit the autoencoder (and the baselines) on normal training rows, stopping early
on normal validation rows → choose each threshold on the validation rows → only then score the
test rows, once, for the reported figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.model_registry.preprocessing import Preprocessing
from services.model_registry.registry import KerasLoadedModel, utc_now_iso
from services.trainer.evaluate import (
    Split,
    ThresholdRule,
    choose_threshold,
    evaluate_scores,
    fit_baselines,
    ranking_metrics,
    time_split,
)
from services.trainer.intervals import fold_metrics, with_intervals
from services.trainer.model import FitResult, ModelConfig, fit_autoencoder, layer_sizes

MIN_ROWS = 100
"""Below this a 60/20/20 split leaves too little to fit or to judge anything."""


@dataclass(frozen=True)
class TrainConfig:
    """The whole recipe of a training run, recorded in the version's metrics."""

    model: ModelConfig = field(default_factory=ModelConfig)
    rule: ThresholdRule = field(default_factory=ThresholdRule)
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    baselines: bool = True
    error_clips: tuple[float | None, ...] = (None, 3.0, 2.0)
    """Candidate caps on each feature's squared residual (None: plain MSE); the one with the
    best validation PR-AUC is kept. One candidate fixes the error function."""


@dataclass
class TrainOutcome:
    """A fitted model with everything the registry, the plots and the report need."""

    model: Any
    preprocessing: Preprocessing
    threshold: dict[str, Any]
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    split: Split
    test_scores: dict[str, np.ndarray]
    test_labels: np.ndarray
    baseline_models: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold_value(self) -> float:
        return float(self.threshold["threshold"])


class TrainingDataError(ValueError):
    """The data cannot support a training run (too few rows, no normal rows)."""


def scorer_for(
    model: Any, preprocessing: Preprocessing, threshold: float, clip: float | None = None
) -> KerasLoadedModel:
    """Wrap a fitted model exactly as the registry loads it, so the trainer's scores come from
    the same code path (and the same single batched call) as the scorer's."""
    from pathlib import Path

    return KerasLoadedModel("unregistered", Path("."), model, preprocessing, threshold, {}, clip)


def choose_error(
    model: Any,
    preprocessing: Preprocessing,
    x_val: np.ndarray,
    y_val: np.ndarray,
    candidates: tuple[float | None, ...],
) -> tuple[KerasLoadedModel, dict[str, Any], np.ndarray]:
    """Pick the residual cap by validation PR-AUC (ties: the first candidate)."""
    best: tuple[float, KerasLoadedModel, np.ndarray] | None = None
    tried: dict[str, float | None] = {}
    for clip in candidates:
        scorer = scorer_for(model, preprocessing, 0.0, clip)
        errors = scorer.errors_preprocessed(x_val)
        pr_auc = ranking_metrics(errors, y_val)["pr_auc"]
        tried["mse" if clip is None else f"clip{clip:g}"] = pr_auc
        if best is None or (pr_auc is not None and pr_auc > best[0]):
            best = (pr_auc if pr_auc is not None else -1.0, scorer, errors)
    assert best is not None
    scorer = best[1]
    info = {
        "name": "mse" if scorer.error_clip is None else "clipped_mse",
        "clip": scorer.error_clip,
        "formula": "mean over features of min((x - reconstruction)^2, clip^2)",
        "chosen_by": "validation PR-AUC" if len(candidates) > 1 else "fixed",
        "validation_pr_auc": tried,
    }
    return scorer, info, best[2]


def _split_info(times: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> dict[str, Any]:
    t = times[idx]
    return {
        "rows": len(idx),
        "frauds": int(np.sum(labels[idx] == 1)),
        "time_min": float(t.min()) if len(t) else None,
        "time_max": float(t.max()) if len(t) else None,
    }


def fit_and_evaluate(
    features: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train and evaluate on raw features float32 [n, 30] and labels (0/1; -1 rows dropped)."""
    config = config or TrainConfig()
    stage = on_stage or (lambda _name: None)
    labelled = np.asarray(labels) >= 0
    features, labels = features[labelled], np.asarray(labels)[labelled]
    if len(features) < MIN_ROWS:
        raise TrainingDataError(f"only {len(features)} labelled rows; need at least {MIN_ROWS}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    split = time_split(features[:, 0], config.fractions)
    preprocessing = Preprocessing.fit(features[split.train])
    x_train = preprocessing.transform(features[split.train])
    x_val = preprocessing.transform(features[split.validation])
    y_val = labels[split.validation]
    normal_train = x_train[labels[split.train] == 0]
    if len(normal_train) == 0:
        raise TrainingDataError("no normal rows in the training split")
    timings["preprocess_s"] = time.perf_counter() - t0

    stage("fit autoencoder")
    t1 = time.perf_counter()
    fit: FitResult = fit_autoencoder(normal_train, x_val[y_val == 0], config.model, on_epoch)
    timings["fit_s"] = time.perf_counter() - t1

    stage("choose error function and threshold")
    scorer, error_info, val_errors = choose_error(
        fit.model, preprocessing, x_val, y_val, config.error_clips
    )
    threshold = {**choose_threshold(val_errors, y_val, config.rule), "error": error_info}

    baselines = []
    baseline_thresholds: dict[str, dict[str, Any]] = {}
    if config.baselines:
        stage("fit baselines")
        t2 = time.perf_counter()
        baselines = fit_baselines(normal_train, min(config.model.hidden), config.model.seed)
        for b in baselines:
            baseline_thresholds[b.name] = choose_threshold(b.score(x_val), y_val, config.rule)
        timings["baselines_fit_s"] = time.perf_counter() - t2
    del x_train, x_val, normal_train

    # Only from here on are test rows touched, and only to be scored.
    stage("evaluate on test split")
    x_test = preprocessing.transform(features[split.test])
    y_test = labels[split.test]
    test_scores = {"autoencoder": scorer.errors_preprocessed(x_test).astype(np.float64)}
    test_metrics = {
        "autoencoder": with_intervals(
            evaluate_scores(test_scores["autoencoder"], y_test, threshold["threshold"]),
            test_scores["autoencoder"],
            y_test,
        )
    }
    for b in baselines:
        test_scores[b.name] = b.score(x_test)
        test_metrics[b.name] = with_intervals(
            evaluate_scores(test_scores[b.name], y_test, baseline_thresholds[b.name]["threshold"]),
            test_scores[b.name],
            y_test,
        )
    folds = fold_metrics(
        test_scores["autoencoder"], y_test, features[split.test, 0], threshold["threshold"]
    )
    timings["total_s"] = time.perf_counter() - t0

    times = features[:, 0]
    metrics: dict[str, Any] = {
        "created_at": utc_now_iso(),
        "data": {
            "rows": len(features),
            "frauds": int(np.sum(labels == 1)),
            "unlabelled_dropped": int(np.sum(~labelled)),
            "split_rule": "event time (TIME), stable; fractions "
            + "/".join(f"{f:g}" for f in config.fractions),
            "splits": {
                name: _split_info(times, labels, idx)
                for name, idx in (
                    ("train", split.train),
                    ("validation", split.validation),
                    ("test", split.test),
                )
            },
            "train_normal_rows": int(np.sum(labels[split.train] == 0)),
            "preprocessing_fitted_rows": preprocessing.fitted_rows,
        },
        "model": {
            "layers": layer_sizes(config.model),
            "config": {**config.model.__dict__, "hidden": list(config.model.hidden)},
            "device": _device(),
        },
        "training": {
            "epochs_run": fit.epochs_run,
            "best_epoch": fit.best_epoch,
            "history": fit.history,
        },
        "threshold": threshold,
        "baseline_thresholds": baseline_thresholds,
        "test": test_metrics,
        "test_folds": folds,
        "timings": timings,
    }
    return TrainOutcome(
        model=fit.model,
        preprocessing=preprocessing,
        threshold=threshold,
        metrics=metrics,
        history=fit.history,
        split=split,
        test_scores=test_scores,
        test_labels=y_test,
        baseline_models={b.name: b for b in baselines},
    )


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"
