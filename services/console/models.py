"""The model registry as the console shows it: versions with their metrics, report and plots,
which one LATEST names, which one the scorer is actually using, champion and challenger.

Names from a request pass `validate_version` / `version_dir` (the registry's one gate from a name
to a path) and plot names a strict pattern, so a request can only reach a version's own files.
Files are read bounded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from services.model_registry.api import InvalidVersion, version_dir
from services.model_registry.registry import ModelRefused, ModelRegistry

FEATURE_STATS_FILE = "feature_stats.json"
MAX_REPORT_BYTES = 256 * 1024
MAX_PLOT_BYTES = 8 << 20
PLOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}\.png")


def _read(path: Path, limit: int) -> bytes | None:
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError:
        return None
    return None if len(data) > limit else data


def version_path(models_dir: Path, version: str) -> Path | None:
    try:
        path = version_dir(models_dir, version)
    except InvalidVersion:
        return None
    return path if path.is_dir() else None


def load_stats(models_dir: Path, version: str) -> Any | None:
    """The version's FeatureStats (services/model_registry/feature_stats.py), None when it has
    none (trained before they existed), they are malformed, or that module is not there."""
    try:
        from services.model_registry.feature_stats import load_feature_stats
    except ImportError:
        return None
    try:
        return load_feature_stats(version, models_dir)
    except (OSError, ValueError, ModelRefused):
        return None


def normal_ranges(stats: Any | None) -> dict[str, tuple[float, float]]:
    """feature -> (low, high) of its normal range in the training data ({} without stats)."""
    if stats is None:
        return {}
    return {name: (float(stats.low[j]), float(stats.high[j])) for j, name in enumerate(stats.names)}


def list_versions(models_dir: Path, scoring_with: str | None) -> dict[str, Any]:
    """Every version (newest first) with its headline figures and roles."""
    registry = ModelRegistry(models_dir)
    rows = []
    for summary in reversed(registry.list()):
        metrics = _metrics(registry, summary.version)
        champion = metrics.get("champion", {}) if isinstance(metrics, dict) else {}
        promotion = metrics.get("promotion", {}) if isinstance(metrics, dict) else {}
        rows.append(
            {
                "version": summary.version,
                "created_at": summary.created_at,
                "threshold": summary.threshold,
                "rule": summary.rule,
                "roc_auc": summary.roc_auc,
                "pr_auc": summary.pr_auc,
                "latest": summary.latest,
                "scoring": summary.version == scoring_with,
                "champion_model": str(champion.get("name", "autoencoder")),
                "promotion": str(promotion.get("decision", "")),
                "promotion_reason": str(promotion.get("reason", ""))[:300],
                "budget": _budget(metrics),
            }
        )
    try:
        latest = registry.latest()
    except ModelRefused:
        latest = None
    return {"versions": rows, "latest": latest, "scoring": scoring_with}


def _metrics(registry: ModelRegistry, version: str) -> dict[str, Any]:
    try:
        return registry.metrics(version)
    except (OSError, ValueError, ModelRefused):
        return {}


def _budget(metrics: dict[str, Any]) -> Any:
    budget = metrics.get("alert_budget") if isinstance(metrics, dict) else None
    return budget if isinstance(budget, dict | int | float) else None


def version_detail(models_dir: Path, version: str) -> dict[str, Any] | None:
    """Metrics, threshold, report text and plot names of one version (None: no such version)."""
    registry = ModelRegistry(models_dir)
    path = version_path(models_dir, version)
    if path is None or not registry.exists(version):
        return None
    report = _read(path / "report.md", MAX_REPORT_BYTES)
    return {
        "version": version,
        "metrics": _metrics(registry, version),
        "threshold": registry.threshold_info(version),
        "report": report.decode("utf-8", "replace") if report is not None else "",
        "plots": sorted(p.name for p in path.iterdir() if PLOT_NAME.fullmatch(p.name)),
        "has_feature_stats": (path / FEATURE_STATS_FILE).is_file(),
    }


def plot_bytes(models_dir: Path, version: str, name: str) -> bytes | None:
    if not PLOT_NAME.fullmatch(name):
        return None
    path = version_path(models_dir, version)
    if path is None:
        return None
    target = path / name
    if target.is_symlink() or not target.is_file():
        return None
    return _read(target, MAX_PLOT_BYTES)
