"""The plots (PNG, matplotlib's Agg backend: no display needed) and `report.md` of a version."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.trainer.feedback import report_lines as feedback_report_lines
from services.trainer.intervals import fmt_interval

if TYPE_CHECKING:
    from services.trainer.core import TrainOutcome

PLOTS = {
    "loss.png": "Training and validation loss per epoch",
    "error_by_class.png": "Reconstruction error on the test split by class (log scale)",
    "roc.png": "ROC curves on the test split, autoencoder and baselines",
    "pr.png": "Precision-recall curves on the test split, autoencoder and baselines",
}
LABELS = {
    "autoencoder": "autoencoder",
    "isolation_forest": "IsolationForest",
    "pca_reconstruction": "PCA reconstruction",
    "ensemble": "ensemble (AE + forest)",
    "supervised": "supervised classifier",
}


def write_plots(outcome: TrainOutcome, folder: Path) -> list[str]:
    """Write the four PNGs into `folder`; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = (outcome.test_labels == 1).astype(int)
    both_classes = 0 < y.sum() < len(y)

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, values in outcome.history.items():
        ax.plot(range(1, len(values) + 1), values, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (MSE + L1 activity)")
    ax.set_title(PLOTS["loss.png"], fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "loss.png", dpi=100)
    plt.close(fig)

    errors = np.maximum(outcome.test_scores["autoencoder"], 1e-12)
    fig, ax = plt.subplots(figsize=(6, 4))
    bins: Any = np.logspace(np.log10(errors.min()), np.log10(errors.max() + 1e-12), 60)
    ax.hist(errors[y == 0], bins=bins, alpha=0.6, density=True, label="normal")
    if y.sum():
        ax.hist(errors[y == 1], bins=bins, alpha=0.6, density=True, label="fraud")
    if outcome.champion_name == "autoencoder":
        ax.axvline(outcome.threshold_value, color="red", linestyle="--", label="threshold")
    ax.set_xscale("log")
    ax.set_xlabel("reconstruction error")
    ax.set_ylabel("density")
    ax.set_title(PLOTS["error_by_class.png"], fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "error_by_class.png", dpi=100)
    plt.close(fig)

    for name, curve in (("roc.png", roc_curve), ("pr.png", precision_recall_curve)):
        fig, ax = plt.subplots(figsize=(5, 5))
        if both_classes:
            for key, scores in outcome.test_scores.items():
                a, b, _ = curve(y, scores)
                xs, ys = (a, b) if name == "roc.png" else (b, a)
                ax.plot(xs, ys, label=LABELS.get(key, key))
        if name == "roc.png":
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
        else:
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
        ax.set_title(PLOTS[name], fontsize=9)
        ax.legend(loc="lower right" if name == "roc.png" else "upper right")
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
    return list(PLOTS)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _choice_lines(champion: dict[str, Any] | None) -> list[str]:
    """Which candidate serves, and why (validation split only)."""
    if not champion:
        return []
    lines = [
        "",
        "## Model choice (validation split)",
        "",
        f"Champion: **{LABELS.get(champion['name'], champion['name'])}**. {champion['reason']}.",
        "",
        "| candidate | PR-AUC [95 % CI] | ROC-AUC [95 % CI] | gap to best, paired 95 % CI |",
        "|---|---|---|---|",
    ]
    for name, m in champion["validation"].items():
        gap = m.get("pr_auc_gap_ci")
        shown_gap = "n/a" if not gap else f"[{gap[0]:.3f}, {gap[1]:.3f}]"
        lines.append(
            f"| {LABELS.get(name, name)} | {fmt_interval(m['pr_auc'], m.get('pr_auc_ci'))} | "
            f"{fmt_interval(m['roc_auc'], m.get('roc_auc_ci'))} | {shown_gap} |"
        )
    return lines


def _operating_lines(points: list[dict[str, Any]] | None) -> list[str]:
    """The served model on test at thresholds a team can plan with (chosen on validation)."""
    if not points:
        return []
    lines = [
        "",
        "## Operating points (served model, test split)",
        "",
        "Each threshold chosen on validation; recall and precision with exact 95 % intervals.",
        "",
        "| rule | threshold | alerts/10k | precision | recall | TP | FP | FN |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        rule = p["rule"]
        if p.get("alert_budget_per_10k") is not None:
            rule = f"alert budget {p['alert_budget_per_10k']:g} per 10,000"
        elif p.get("target_precision") is not None:
            rule = f"target precision {p['target_precision']:g}"
        cm = p["confusion_matrix"]
        lines.append(
            f"| {rule} | {p['threshold']:.6g} | {p['alerts_per_10k']:.1f} | "
            f"{fmt_interval(p['precision'], p['precision_ci'])} | "
            f"{fmt_interval(p['recall'], p['recall_ci'])} | {cm['tp']} | {cm['fp']} | {cm['fn']} |"
        )
    return lines


def _fold_lines(folds: dict[str, Any] | None) -> list[str]:
    """The test split's time-ordered folds (the served model), one row each."""
    if not folds or len(folds.get("folds", [])) < 2:
        return ["", "The test split holds too few frauds for more than one time-ordered fold."]
    lines = [
        "",
        f"Time-ordered folds of the test split ({len(folds['folds'])} consecutive periods, "
        "served model):",
        "",
        "| fold | TIME from | TIME to | rows | frauds | ROC-AUC | PR-AUC | precision | recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, f in enumerate(folds["folds"], start=1):
        lines.append(
            f"| {i} | {_fmt(f['time_min'], 0)} | {_fmt(f['time_max'], 0)} | {f['rows']} | "
            f"{f['frauds']} | {_fmt(f['roc_auc'])} | {_fmt(f['pr_auc'])} | "
            f"{_fmt(f['precision'])} | {_fmt(f['recall'])} |"
        )
    return lines


def render_report(version: str, metrics: dict[str, Any], threshold: dict[str, Any]) -> str:
    """Markdown summary of one version, showing the plots next to it."""
    data = metrics["data"]
    lines = [
        f"# Model {version}",
        "",
        f"Created {metrics.get('created_at', '')}. Layers {metrics['model']['layers']} "
        f"on {metrics['model'].get('device', '?')}; "
        f"{metrics['training']['epochs_run']} epochs (best {metrics['training']['best_epoch']}).",
        "",
        "## Data",
        "",
        f"{data['rows']} labelled rows, {data['frauds']} frauds; split by {data['split_rule']}.",
    ]
    source = metrics.get("source")
    if source:
        lines.append(
            f"Read {source.get('consumed')} records from `{source.get('topic')}`; "
            f"rejected: {source.get('rejected') or 'none'}."
        )
    lines += ["", "| split | rows | frauds | TIME from | TIME to |", "|---|---|---|---|---|"]
    for name, s in data["splits"].items():
        lines.append(
            f"| {name} | {s['rows']} | {s['frauds']} | {_fmt(s['time_min'], 0)} | "
            f"{_fmt(s['time_max'], 0)} |"
        )
    error = threshold.get("error", {})
    lines += [
        "",
        "Preprocessing (time of day, log1p amount, standardisation) was fitted on the "
        f"{data['preprocessing_fitted_rows']} training rows only; the autoencoder learned from "
        f"{data['train_normal_rows']} normal training rows.",
        "",
        "## Threshold",
        "",
        f"`{threshold['threshold']:.6g}` chosen on the validation split by rule "
        f"**{threshold['rule']}**"
        + (f" ({threshold['fallback']})" if threshold.get("fallback") else "")
        + f"; error `{error.get('name', 'mse')}`"
        + (f" with clip {error['clip']:g}" if error.get("clip") is not None else "")
        + f" ({error.get('chosen_by', 'fixed')}). The served model is "
        + f"**{LABELS.get(threshold.get('model', 'autoencoder'), 'autoencoder')}**; "
        + "an alert is a score at or above the threshold.",
        "",
        "## Test split",
        "",
        "Figures with 95 % intervals: stratified bootstrap for ROC-AUC and PR-AUC, exact "
        "Clopper-Pearson for precision and recall.",
        "",
        "| model | ROC-AUC | PR-AUC | precision | recall | F1 | alerts/10k | TP | FP | FN | TN |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, m in metrics["test"].items():
        cm = m["confusion_matrix"]
        lines.append(
            f"| {LABELS.get(key, key)} | {fmt_interval(m['roc_auc'], m.get('roc_auc_ci'))} | "
            f"{fmt_interval(m['pr_auc'], m.get('pr_auc_ci'))} | "
            f"{fmt_interval(m['precision'], m.get('precision_ci'))} | "
            f"{fmt_interval(m['recall'], m.get('recall_ci'))} | {_fmt(m['f1'])} | "
            f"{_fmt(m['alerts_per_10k'], 1)} | {cm['tp']} | {cm['fp']} | {cm['fn']} | {cm['tn']} |"
        )
    lines += _fold_lines(metrics.get("test_folds"))
    lines += _choice_lines(metrics.get("champion"))
    lines += _operating_lines(metrics.get("operating_points"))
    lines += ["", "Baselines were fitted on the same rows and thresholded by the same rule.", ""]
    promotion = metrics.get("promotion")
    if promotion:
        lines += [
            "## Champion / challenger",
            "",
            f"**{promotion['decision']}**: {promotion['reason']}",
            "",
        ]
    lines += feedback_report_lines(metrics.get("feedback"))
    for name, title in PLOTS.items():
        lines += [f"![{title}]({name})", ""]
    return "\n".join(lines)
