"""Threshold by alert budget: "at most N alerts per 10,000 transactions", set by the operator.

The trainer chooses a threshold on the validation split (best F1 unless told otherwise) and
stores the served champion's validation and test scores with their labels in the version
(`scores.npz`). An analyst team that can review, say, 15 alerts per 10,000 transactions sets that
budget here: the threshold becomes the (1 - N/10,000) quantile of the validation scores, the rule
the trainer's `--alert-budget` applies, and the test split says what precision and recall that
buys.

A published version is never edited (its manifest vouches for its files, and scorers compare
announced digests). So the budget is published as a new version *derived* from the old one: the
same model files, a new `threshold.json` (rule `alert_budget`, the previous threshold kept under
`previous`, the origin under `derived_from`), `metrics.json` and `report.md` with the budget's
precision and recall, staged, manifested and renamed into place in one step like every version.
When the base version is the one LATEST names, the new one becomes LATEST and is announced on
`fraudstream_models`: a running scorer loads it in the background and switches between two
batches, the hot reload that neither loses nor re-scores a record. The new version's name says
nothing about its origin (a fresh, time-ordered id); `derived_from` does.

`set_alert_budget(version, per_10k)` is the function the CLI (`fraudstream models threshold
--budget N`) and the console call.
"""

from __future__ import annotations

import io
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common.topics import MODELS_TOPIC
from services.model_registry.api import LATEST_ALIAS
from services.model_registry.errors import ModelRegistryError
from services.model_registry.registry import (
    MANIFEST_FILE,
    METRICS_FILE,
    REPORT_FILE,
    THRESHOLD_FILE,
    ModelRegistry,
    new_version_id,
    utc_now_iso,
)

SCORES_FILE = "scores.npz"
PER = 10_000
"""Budgets are alerts per this many transactions."""
MAX_SCORES = 5_000_000
"""A scores file with more rows than this is not one the trainer wrote."""


class BadBudget(ModelRegistryError, ValueError):
    """A budget outside (0, 10000] alerts per 10,000 (a client mistake: HTTP 400)."""

    default_code = "bad_budget"


class NoValidationScores(ModelRegistryError):
    """The version was registered before validation scores were stored with it."""

    default_code = "no_validation_scores"


@dataclass(frozen=True)
class Scores:
    """The served champion's scores and labels on the validation and test splits."""

    validation_scores: np.ndarray
    validation_labels: np.ndarray
    test_scores: np.ndarray
    test_labels: np.ndarray

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **asdict(self))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Scores:
        """Parse a scores.npz (no pickles; four 1-D arrays, scores and labels paired)."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {name: np.asarray(npz[name]) for name in cls.__dataclass_fields__}
        except (KeyError, ValueError, OSError) as exc:
            raise ModelRegistryError(f"{SCORES_FILE} is malformed", code="tampered") from exc
        ok = all(a.ndim == 1 and len(a) <= MAX_SCORES for a in arrays.values()) and (
            len(arrays["validation_scores"]) == len(arrays["validation_labels"]) > 0
            and len(arrays["test_scores"]) == len(arrays["test_labels"])
        )
        if not ok:
            raise ModelRegistryError(f"{SCORES_FILE} is malformed", code="tampered")
        return cls(
            arrays["validation_scores"].astype(np.float64),
            arrays["validation_labels"].astype(np.int64),
            arrays["test_scores"].astype(np.float64),
            arrays["test_labels"].astype(np.int64),
        )


def write_scores(folder: Path, scores: Scores) -> None:
    """Store the scores in a staging directory (the trainer, at registration)."""
    (folder / SCORES_FILE).write_bytes(scores.to_bytes())


def check_budget(per_10k: Any) -> float:
    """The budget as a float in (0, 10000]; BadBudget otherwise."""
    if isinstance(per_10k, bool) or not isinstance(per_10k, int | float):
        raise BadBudget("the alert budget must be a number of alerts per 10,000 transactions")
    value = float(per_10k)
    if not (math.isfinite(value) and 0 < value <= PER):
        raise BadBudget("the alert budget must be within (0, 10000] alerts per 10,000")
    return value


def budget_threshold(validation_scores: np.ndarray, per_10k: float) -> float:
    """The threshold at which about `per_10k` of every 10,000 validation rows alert (the
    (1 - per_10k / 10,000) quantile; a row alerts when its score is at or above it)."""
    scores = np.asarray(validation_scores, dtype=np.float64)
    if len(scores) == 0:
        raise NoValidationScores("no validation scores to set a budget on")
    return float(np.quantile(scores, 1.0 - check_budget(per_10k) / PER))


def at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Alerts per 10,000, precision and recall of the rule `score >= threshold`."""
    alert = np.asarray(scores) >= threshold
    fraud = np.asarray(labels) == 1
    tp = int(np.sum(alert & fraud))
    alerts = int(np.sum(alert))
    return {
        "rows": len(alert),
        "alerts": alerts,
        "alerts_per_10k": PER * alerts / len(alert) if len(alert) else None,
        "true_positives": tp,
        "precision": tp / alerts if alerts else None,
        "recall": tp / int(fraud.sum()) if fraud.any() else None,
    }


@dataclass(frozen=True)
class BudgetResult:
    """What `set_alert_budget` did."""

    version: str
    """the new version carrying the budget's threshold"""
    derived_from: str
    per_10k: float
    threshold: float
    previous_threshold: float
    validation: dict[str, Any]
    test: dict[str, Any]
    latest: bool
    announced: bool

    def summary_line(self) -> str:
        def f(v: Any) -> str:
            return "-" if v is None else f"{v:.4f}"

        return (
            f"model {self.version} threshold={self.threshold:.6g} budget={self.per_10k:g}/10k "
            f"precision={f(self.test['precision'])} recall={f(self.test['recall'])}"
        )


def set_alert_budget(
    version: str = LATEST_ALIAS,
    per_10k: float = 20.0,
    models_dir: Path | str | None = None,
    announce: bool = True,
    bootstrap: str | None = None,
    models_topic: str = MODELS_TOPIC,
) -> BudgetResult:
    """Publish a version derived from `version` whose threshold lets through at most `per_10k`
    alerts per 10,000 transactions (on validation); it becomes LATEST and is announced when
    `version` is the current LATEST. BadBudget / NoValidationScores / VersionNotFound for what
    cannot be done; nothing is written then."""
    per_10k = check_budget(per_10k)
    registry = ModelRegistry(models_dir)
    base = registry.resolve(version)
    was_latest = base == registry.latest()
    files = registry.read_verified(base)
    if SCORES_FILE not in files:
        raise NoValidationScores(
            f"model version {base} was registered without validation scores ({SCORES_FILE}); "
            "train a new version to set an alert budget"
        )
    scores = Scores.from_bytes(files[SCORES_FILE])
    threshold = budget_threshold(scores.validation_scores, per_10k)
    previous = json.loads(files[THRESHOLD_FILE])
    validation = at_threshold(scores.validation_scores, scores.validation_labels, threshold)
    test = at_threshold(scores.test_scores, scores.test_labels, threshold)
    new_threshold = {
        **{k: v for k, v in previous.items() if k in ("error", "model")},
        "threshold": threshold,
        "rule": "alert_budget",
        "split": "validation",
        "alert_budget_per_10k": per_10k,
        "set_by": "operator",
        "derived_from": base,
        "previous": {k: v for k, v in previous.items() if k != "previous"},
    }
    new = _publish(registry, base, files, new_threshold, validation, test)
    result = BudgetResult(
        version=new,
        derived_from=base,
        per_10k=per_10k,
        threshold=threshold,
        previous_threshold=float(previous["threshold"]),
        validation=validation,
        test=test,
        latest=was_latest,
        announced=was_latest and announce,
    )
    if was_latest:
        registry.set_latest(new)
        if announce:
            registry.announce(new, bootstrap=bootstrap, topic=models_topic)
    return result


def _publish(
    registry: ModelRegistry,
    base: str,
    files: dict[str, bytes],
    threshold: dict[str, Any],
    validation: dict[str, Any],
    test: dict[str, Any],
) -> str:
    """Stage the base's verified files with the new threshold, metrics and report; publish."""
    version, staging = registry.stage(new_version_id())
    try:
        for name, data in files.items():
            if name in (MANIFEST_FILE, THRESHOLD_FILE, METRICS_FILE, REPORT_FILE):
                continue
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        budget = {
            "per_10k": threshold["alert_budget_per_10k"],
            "threshold": threshold["threshold"],
            "derived_from": base,
            "validation": validation,
            "test": test,
        }
        metrics = json.loads(files[METRICS_FILE])
        metrics.update(
            version=version, created_at=utc_now_iso(), threshold=threshold, alert_budget=budget
        )
        (staging / THRESHOLD_FILE).write_text(json.dumps(threshold, indent=2) + "\n")
        (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        report = files.get(REPORT_FILE, b"").decode("utf-8", "replace")
        (staging / REPORT_FILE).write_text(budget_report(version, budget) + "\n" + report)
        registry.publish(version, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version


def budget_report(version: str, budget: dict[str, Any]) -> str:
    """The report's section on the budget (put above the base version's report)."""

    def pct(value: Any) -> str:
        return "-" if value is None else f"{100 * value:.1f} %"

    def rate(value: Any) -> str:
        return "-" if value is None else f"{value:.1f}"

    test, val = budget["test"], budget["validation"]
    return "\n".join(
        [
            f"# Model {version}: alert budget",
            "",
            f"Derived from `{budget['derived_from']}` (same model files) with the threshold set "
            f"by the operator to at most **{budget['per_10k']:g} alerts per 10,000 "
            f"transactions** on the validation split: threshold `{budget['threshold']:.6g}`.",
            "",
            "| split | rows | alerts / 10k | precision | recall |",
            "|---|---|---|---|---|",
            *(
                f"| {name} | {m['rows']} | {rate(m['alerts_per_10k'])} | "
                f"{pct(m['precision'])} | {pct(m['recall'])} |"
                for name, m in (("validation", val), ("test", test))
            ),
            "",
            "The base version's report follows.",
            "",
        ]
    )
