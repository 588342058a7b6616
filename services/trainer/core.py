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

from services.model_registry.feature_stats import FeatureStats
from services.model_registry.preprocessing import Preprocessing
from services.model_registry.registry import KerasLoadedModel, utc_now_iso
from services.trainer import candidates
from services.trainer.candidates import Candidate, choose_champion
from services.trainer.errors import TrainingDataError
from services.trainer.evaluate import (
    Split,
    ThresholdRule,
    choose_threshold,
    evaluate_scores,
    fit_baselines,
    metrics_at,
    ranking_metrics,
    time_split,
)
from services.trainer.intervals import fold_metrics, proportion_intervals, with_intervals
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
    forced_model: str | None = None
    """`--model NAME`: serve this candidate whatever validation says (None: the champion rule)."""
    operating_budget: float = 20.0
    """Operating point reported next to the threshold rule: alerts per 10,000 transactions."""
    operating_precision: float = 0.5
    """Operating point reported next to the threshold rule: the target precision."""
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
    champion: Candidate | None = None
    """the candidate the version serves (None: the autoencoder, as before candidates)"""
    feature_stats: FeatureStats | None = None
    """per-feature normal ranges and decile bins of the training split (feature_stats.json)"""
    validation_scores: np.ndarray | None = None
    """the served champion's scores on the validation split (an alert budget is set on them)"""
    validation_labels: np.ndarray | None = None

    @property
    def champion_name(self) -> str:
        return self.champion.name if self.champion is not None else "autoencoder"

    @property
    def threshold_value(self) -> float:
        return float(self.threshold["threshold"])


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


def _fit_candidates(
    normal_train: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    autoencoder: KerasLoadedModel,
    preprocessing: Preprocessing,
    seed: int,
) -> dict[str, Candidate]:
    out = {
        "isolation_forest": candidates.isolation_forest(normal_train, preprocessing, seed),
        "ensemble": candidates.ensemble(
            normal_train, x_val, y_val, autoencoder, preprocessing, seed
        ),
    }
    classifier = candidates.supervised(x_train, y_train, preprocessing, seed)
    if classifier is not None:
        out["supervised"] = classifier
    return out


def operating_points(
    val_scores: np.ndarray,
    y_val: np.ndarray,
    test_scores: np.ndarray,
    y_test: np.ndarray,
    config: TrainConfig,
) -> list[dict[str, Any]]:
    """What the served model does on test at thresholds a team can plan with: the configured
    rule, an alert budget and a target precision, each threshold chosen on validation; recall
    and precision with exact intervals."""
    rules = [
        config.rule,
        ThresholdRule.from_options(alert_budget=config.operating_budget),
        ThresholdRule.from_options(target_precision=config.operating_precision),
    ]
    points = []
    for rule in rules:
        chosen = choose_threshold(val_scores, y_val, rule)
        at = metrics_at(test_scores, y_test, chosen["threshold"])
        points.append(
            {
                "rule": rule.name,
                "alert_budget_per_10k": rule.alert_budget,
                "target_precision": rule.target_precision,
                "threshold": chosen["threshold"],
                "fallback": chosen.get("fallback"),
                **at,
                **proportion_intervals(at["confusion_matrix"]),
            }
        )
    return points


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
    feature_stats = FeatureStats.fit(features[split.train])
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

    fitted: dict[str, Candidate] = {"autoencoder": Candidate("autoencoder", scorer)}
    baselines = []
    if config.baselines:
        stage("fit candidates and baselines")
        t2 = time.perf_counter()
        fitted.update(_fit_candidates(normal_train, x_train, labels[split.train], x_val, y_val,
                                      scorer, preprocessing, config.model.seed))  # fmt: skip
        baselines = fit_baselines(normal_train, min(config.model.hidden), config.model.seed)
        timings["baselines_fit_s"] = time.perf_counter() - t2
    val_scores = {
        name: (val_errors.astype(np.float64) if name == "autoencoder" else c.scores(x_val))
        for name, c in fitted.items()
    }
    stage("choose the champion on validation")
    try:
        champion = choose_champion(val_scores, y_val, config.forced_model)
    except ValueError as exc:
        raise TrainingDataError(str(exc)) from exc
    thresholds = {
        name: choose_threshold(scores, y_val, config.rule) for name, scores in val_scores.items()
    }
    for b in baselines:
        thresholds[b.name] = choose_threshold(b.score(x_val), y_val, config.rule)
    threshold = {**thresholds[champion["name"]], "error": error_info, "model": champion["name"]}
    del x_train, x_val, normal_train

    # Only from here on are test rows touched, and only to be scored.
    stage("evaluate on test split")
    x_test = preprocessing.transform(features[split.test])
    y_test = labels[split.test]
    test_scores = {name: c.scores(x_test) for name, c in fitted.items()}
    test_scores.update({b.name: b.score(x_test) for b in baselines})
    test_metrics = {
        name: with_intervals(
            evaluate_scores(scores, y_test, thresholds[name]["threshold"]), scores, y_test
        )
        for name, scores in test_scores.items()
    }
    served = champion["name"]
    operating = operating_points(val_scores[served], y_val, test_scores[served], y_test, config)
    folds = fold_metrics(
        test_scores[served], y_test, features[split.test, 0], threshold["threshold"]
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
        "champion": {k: v for k, v in champion.items()},
        "candidates": {name: c.info for name, c in fitted.items() if c.info},
        "operating_points": operating,
        "baseline_thresholds": {k: v for k, v in thresholds.items() if k != served},
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
        champion=fitted[served],
        feature_stats=feature_stats,
        validation_scores=np.asarray(val_scores[served], dtype=np.float64),
        validation_labels=np.asarray(y_val),
    )


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"
