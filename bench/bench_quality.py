"""bench/quality: every candidate on every data family and several seeds, with intervals.

For each family (`latent`: the project's generator; `copula`: a Gaussian copula of the data set's
published statistics, services/common/synthetic_families.py) and seed, the trainer's own
`fit_and_evaluate` (the code `fraudstream train` runs after reading the Avro stream) fits the
autoencoder and every candidate, chooses the champion on validation and scores the test split
once. Printed: a markdown table per family (mean over seeds of each test metric, with the mean
95 % bootstrap interval, and the champion's share), then the issue's two checks per family x seed:

* validation: the champion's PR-AUC >= the best single candidate's lower 95 % bound;
* test: the champion's PR-AUC >= IsolationForest's PR-AUC minus its interval (its lower bound).

Usage: fraudstream bench quality [--quick] [--rows N] [--seeds S] [--epochs E]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from services.common.synthetic_families import FAMILIES  # noqa: E402
from services.trainer.api import make_config  # noqa: E402
from services.trainer.core import fit_and_evaluate  # noqa: E402
from services.trainer.synthetic import generated_arrays  # noqa: E402

METRICS = (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC"), ("precision", "precision"),
           ("recall", "recall"))  # fmt: skip
SHOWN = ("autoencoder", "isolation_forest", "ensemble", "supervised", "pca_reconstruction")


def run_one(family: str, seed: int, rows: int, ratio: float, epochs: int) -> dict[str, Any]:
    features, labels = generated_arrays(rows, seed=seed, fraud_ratio=ratio, family=family)
    outcome = fit_and_evaluate(
        features.astype(np.float32), labels, make_config(epochs=epochs, seed=seed)
    )
    metrics = outcome.metrics
    champion = metrics["champion"]
    validation = champion["validation"]
    best = champion["best"]
    chosen = champion["name"]
    test = metrics["test"]
    val_ok = validation[chosen]["pr_auc"] >= validation[best]["pr_auc_ci"][0]
    forest_lower = test["isolation_forest"]["pr_auc_ci"][0]
    test_ok = test[chosen]["pr_auc"] >= forest_lower
    return {
        "family": family,
        "seed": seed,
        "champion": chosen,
        "test": test,
        "val_ok": bool(val_ok),
        "test_ok": bool(test_ok),
        "detail": (
            f"val {chosen} {validation[chosen]['pr_auc']:.3f} vs best {best} lower "
            f"{validation[best]['pr_auc_ci'][0]:.3f}; test {chosen} {test[chosen]['pr_auc']:.3f} "
            f"vs IsolationForest lower {forest_lower:.3f}"
        ),
    }


def _cell(runs: list[dict[str, Any]], model: str, key: str) -> str:
    values = [r["test"][model][key] for r in runs if model in r["test"]]
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    cis = [r["test"][model].get(f"{key}_ci") for r in runs if model in r["test"]]
    cis = [c for c in cis if c]
    lo = np.mean([c[0] for c in cis]) if cis else float("nan")
    hi = np.mean([c[1] for c in cis]) if cis else float("nan")
    return f"{np.mean(values):.3f} [{lo:.2f}, {hi:.2f}]"


def table(family: str, runs: list[dict[str, Any]]) -> list[str]:
    wins = Counter(r["champion"] for r in runs)
    frauds = [r["test"]["autoencoder"]["frauds"] for r in runs]
    lines = [
        f"**{family}** ({len(runs)} seeds, {int(np.mean(frauds))} test frauds a seed on average)",
        "",
        "| model | " + " | ".join(title for _, title in METRICS) + " | champion |",
        "|---|" + "---|" * (len(METRICS) + 1),
    ]
    for model in SHOWN:
        if not any(model in r["test"] for r in runs):
            continue
        cells = " | ".join(_cell(runs, model, key) for key, _ in METRICS)
        lines.append(f"| {model} | {cells} | {wins.get(model, 0)}/{len(runs)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, fewer rows and epochs")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--fraud-ratio", type=float, default=None)
    args = parser.parse_args()
    rows = args.rows or (12_000 if args.quick else 40_000)
    seeds = args.seeds or (1 if args.quick else 3)
    epochs = args.epochs or (3 if args.quick else 8)
    ratio = args.fraud_ratio or (0.01 if args.quick else 0.005)
    print(f"quality bench: families {', '.join(FAMILIES)}; {seeds} seeds; {rows} rows, "
          f"fraud ratio {ratio:g}, {epochs} epochs; test-split metrics, mean over seeds "
          "[mean 95 % interval]")  # fmt: skip
    started = time.perf_counter()
    results = []
    for family in FAMILIES:
        runs = []
        for seed in range(1, seeds + 1):
            runs.append(run_one(family, seed, rows, ratio, epochs))
            print(f"  {family} seed {seed}: champion {runs[-1]['champion']}; {runs[-1]['detail']}",
                  flush=True)  # fmt: skip
        results.append((family, runs))
    print()
    for family, runs in results:
        print("\n".join(table(family, runs)))
        print()
    checks = [r for _, runs in results for r in runs]
    val_pass = sum(r["val_ok"] for r in checks)
    test_pass = sum(r["test_ok"] for r in checks)
    print(f"checks: champion validation PR-AUC >= best candidate's lower bound {val_pass}/"
          f"{len(checks)}; champion test PR-AUC >= IsolationForest's lower bound {test_pass}/"
          f"{len(checks)} ({time.perf_counter() - started:.0f} s)")  # fmt: skip
    print(f"quality {min(val_pass, test_pass)}/{len(checks)} family x seed runs pass both checks")


if __name__ == "__main__":
    main()
