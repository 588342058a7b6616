"""Model choice by the data: candidates next to the autoencoder, and the champion rule.

The autoencoder is the mission's model: it is always trained and reported. Next to it:

* `isolation_forest` — scikit-learn's defaults (100 trees, subsamples of 256), fitted on the same
  normal training rows, served by the compiled forest walk (services/model_registry/scoring.py);
* `ensemble` — the z-average of the autoencoder's log error and a compact IsolationForest
  (ENSEMBLE_TREES trees on subsamples of ENSEMBLE_SAMPLES, so depth 6: 96 node visits a row
  against 800 for the full forest, 0.32 against 2.3 CPU-microseconds a row measured), each
  standardised on the normal validation rows; compact because it runs on every record next to
  the network, and the scorer must keep 0.9 of its autoencoder-only rate;
* `supervised` — when the training split holds at least MIN_SUPERVISED_FRAUDS frauds: a small
  Keras classifier with class weights (Keras' imbalanced-classification recipe), early-stopped on
  PR-AUC over the last fifth (in time) of the training split, so validation stays untouched for
  the choice.

The champion rule, on the validation split only (the test split is never looked at): take the
candidate with the best PR-AUC; a candidate *ties* with it when its PR-AUC is at or above the
best one's lower 95 % bound and the paired bootstrap interval of the gap includes 0. The first tie
in PREFERENCE wins: the autoencoder (the mission's model), then the ensemble (it contains the
autoencoder), the classifier, and last the full forest (the slowest to serve). So a candidate
displaces the autoencoder only when it is better by more than the noise. `--model NAME` forces a
champion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.model_registry.preprocessing import Preprocessing
from services.model_registry.registry import KerasLoadedModel
from services.model_registry.scoring import (
    CandidateLoadedModel,
    CompactForest,
    Standardiser,
    forest_batch_scores,
    log_error,
    write_artifacts,
)
from services.trainer.intervals import compare_rankings

NAMES = ("autoencoder", "isolation_forest", "ensemble", "supervised")
PREFERENCE = ("autoencoder", "ensemble", "supervised", "isolation_forest")
FOREST_TREES, FOREST_SAMPLES = 100, 256
ENSEMBLE_TREES, ENSEMBLE_SAMPLES = 16, 64
MIN_SUPERVISED_FRAUDS = 30
MIN_EARLY_STOP_FRAUDS = 5
SUPERVISED_EPOCHS = 30


@dataclass
class Candidate:
    """A fitted candidate: how it scores preprocessed rows and what a version needs to serve it."""

    name: str
    scorer: Any
    """an object with `scores_preprocessed(x)` or `errors_preprocessed(x)`"""
    spec: dict[str, Any] = field(default_factory=dict)
    forest: CompactForest | None = None
    supervised: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    def scores(self, x: np.ndarray) -> np.ndarray:
        fn = getattr(self.scorer, "scores_preprocessed", None) or self.scorer.errors_preprocessed
        return np.asarray(fn(x), dtype=np.float64)

    def write(self, folder: Path) -> None:
        write_artifacts(folder, self.name, self.spec, self.forest, self.supervised)


def _forest(x: np.ndarray, trees: int, samples: int, seed: int) -> tuple[Any, CompactForest]:
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(
        n_estimators=trees, max_samples=min(samples, len(x)), random_state=seed, n_jobs=1
    )
    forest.fit(x)
    return forest, CompactForest.from_sklearn(forest)


def _served(kind: str, preprocessing: Preprocessing, **parts: Any) -> CandidateLoadedModel:
    return CandidateLoadedModel(
        "unregistered", Path("."), kind, preprocessing, 0.0, {}, parts.pop("spec", {}), **parts
    )


def isolation_forest(
    normal_train: np.ndarray, preprocessing: Preprocessing, seed: int
) -> Candidate:
    _, compact = _forest(normal_train, FOREST_TREES, FOREST_SAMPLES, seed)
    served = _served("isolation_forest", preprocessing, forest=compact)
    info = {"trees": FOREST_TREES, "max_samples": FOREST_SAMPLES, "depth": compact.depth}
    return Candidate("isolation_forest", served, {}, compact, info=info)


def ensemble(
    normal_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    autoencoder: KerasLoadedModel,
    preprocessing: Preprocessing,
    seed: int,
) -> Candidate:
    """AE log error and compact-forest score, z-averaged; standardisers from the normal
    validation rows."""
    _, compact = _forest(normal_train, ENSEMBLE_TREES, ENSEMBLE_SAMPLES, seed)
    normal_val = x_val[y_val == 0]
    spec = {
        "autoencoder": Standardiser.fit(
            log_error(autoencoder.errors_preprocessed(normal_val))
        ).__dict__,
        "forest": Standardiser.fit(forest_batch_scores(compact, normal_val)).__dict__,
        "combine": "0.5 * z(log AE error) + 0.5 * z(forest score)",
    }
    served = _served("ensemble", preprocessing, spec=spec, autoencoder=autoencoder, forest=compact)
    info = {"trees": ENSEMBLE_TREES, "max_samples": ENSEMBLE_SAMPLES, "depth": compact.depth}
    return Candidate("ensemble", served, spec, compact, info=info)


def supervised(
    x_train: np.ndarray, y_train: np.ndarray, preprocessing: Preprocessing, seed: int
) -> Candidate | None:
    """The class-weighted classifier, or None when the training split has too few frauds."""
    import keras

    from services.trainer.model import seed_everything

    frauds = int(np.sum(y_train == 1))
    if frauds < MIN_SUPERVISED_FRAUDS:
        return None
    seed_everything(seed)
    cut = int(len(x_train) * 0.8)  # x_train is in event order: the tail is the latest fifth
    tail_frauds = int(np.sum(y_train[cut:] == 1))
    early = tail_frauds >= MIN_EARLY_STOP_FRAUDS
    fit_x, fit_y = (x_train[:cut], y_train[:cut]) if early else (x_train, y_train)
    pos = max(int(np.sum(fit_y == 1)), 1)
    neg = max(len(fit_y) - pos, 1)
    weights = {0: len(fit_y) / (2.0 * neg), 1: len(fit_y) / (2.0 * pos)}
    model = keras.Sequential(
        [
            keras.Input(shape=(x_train.shape[1],)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="fraud_classifier",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(curve="PR", name="prc")],
    )
    callbacks = (
        [
            keras.callbacks.EarlyStopping(
                "val_prc", mode="max", patience=4, restore_best_weights=True
            )
        ]
        if early
        else []
    )
    history = model.fit(
        fit_x,
        fit_y.astype(np.float32),
        batch_size=512,
        epochs=SUPERVISED_EPOCHS if early else 10,
        class_weight=weights,
        validation_data=(x_train[cut:], y_train[cut:].astype(np.float32)) if early else None,
        callbacks=callbacks,
        verbose=0,
    )
    served = _served("supervised", preprocessing, supervised=model)
    info = {
        "layers": [x_train.shape[1], 32, 16, 1],
        "class_weight": weights,
        "train_frauds": frauds,
        "early_stopping": "PR-AUC on the latest fifth of the training split" if early else None,
        "epochs_run": len(history.history.get("loss", [])),
    }
    return Candidate("supervised", served, {}, None, model, info)


def choose_champion(
    val_scores: dict[str, np.ndarray], y_val: np.ndarray, forced: str | None = None
) -> dict[str, Any]:
    """The champion by validation PR-AUC with its interval (see the module docstring)."""
    table = compare_rankings(val_scores, y_val)
    ranked = [n for n in val_scores if table[n]["pr_auc"] is not None]
    if not ranked:
        best = "autoencoder"
        ties = ["autoencoder"]
    else:
        best = max(ranked, key=lambda n: float(table[n]["pr_auc"]))
        table = compare_rankings(val_scores, y_val, reference=best)
        lower = table[best]["pr_auc_ci"][0]
        ties = [
            n for n in ranked if table[n]["pr_auc"] >= lower and table[n]["pr_auc_gap_ci"][0] <= 0.0
        ]
    if forced is not None:
        if forced not in val_scores:
            raise ValueError(f"--model {forced}: that candidate was not trained on this data")
        champion = forced
    else:
        champion = next(n for n in PREFERENCE if n in ties)
    return {
        "name": champion,
        "best": best,
        "ties": ties,
        "forced": forced is not None,
        "validation": table,
        "reason": _reason(champion, best, ties, table, forced),
    }


def _reason(
    champion: str, best: str, ties: list[str], table: dict[str, Any], forced: str | None
) -> str:
    def pr(name: str) -> str:
        m = table[name]
        if m["pr_auc"] is None:
            return "n/a"
        return f"{m['pr_auc']:.3f} [{m['pr_auc_ci'][0]:.3f}, {m['pr_auc_ci'][1]:.3f}]"

    if table[best]["pr_auc"] is None:
        return "the validation split holds no fraud: the autoencoder (the mission's model) serves"
    if forced:
        return (
            f"forced by --model {forced}; validation PR-AUC {pr(champion)}, best {best} {pr(best)}"
        )
    if champion == best:
        others = [n for n in table if n != best and table[n]["pr_auc"] is not None]
        gaps = ", ".join(
            f"{n} by {table[best]['pr_auc'] - table[n]['pr_auc']:+.3f} "
            f"(paired CI [{table[n]['pr_auc_gap_ci'][0]:.3f}, {table[n]['pr_auc_gap_ci'][1]:.3f}])"
            for n in others
        )
        tied = [n for n in ties if n != best]
        why = (
            f"ties within noise with {', '.join(tied)} and comes first in preference"
            if tied
            else "beats every candidate beyond the noise"
        )
        return f"{best} has the best validation PR-AUC {pr(best)} and {why}; ahead of {gaps}"
    gap = table[best]["pr_auc"] - table[champion]["pr_auc"]
    lo, hi = table[champion]["pr_auc_gap_ci"]
    return (
        f"{champion} {pr(champion)} is within the noise of the best, {best} {pr(best)}: "
        f"gap {gap:.3f}, paired 95 % CI [{lo:.3f}, {hi:.3f}] includes 0, and {champion} comes "
        "first in preference (the mission's model, then the cheaper to serve)"
    )
