"""`fraudstream models list|show VERSION|seal VERSION|threshold --budget N`: the versions in
the model registry (MODELS_DIR), recording a manifest for a version registered before manifests
existed, and setting the threshold by an alert budget (budget.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from services.common.topics import MODELS_TOPIC

models_app = typer.Typer(
    name="models",
    help="Inspect the model registry (MODELS_DIR): registered versions, metrics, LATEST.",
    no_args_is_help=True,
)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@models_app.command("list")
def list_models(
    models_dir: Path = typer.Option(None, help="registry folder (default: MODELS_DIR)"),
) -> None:
    """List registered versions, oldest first; `*` marks the one LATEST names."""
    from services.model_registry.registry import ModelRegistry

    registry = ModelRegistry(models_dir)
    summaries = registry.list()
    for s in summaries:
        mark = "*" if s.latest else " "
        typer.echo(
            f"{mark} {s.version}  created={s.created_at}  roc_auc={_fmt(s.roc_auc)}  "
            f"pr_auc={_fmt(s.pr_auc)}  threshold={s.threshold:.6g} ({s.rule})"
        )
    typer.echo(f"{len(summaries)} versions in {registry.models_dir}")


@models_app.command("show")
def show_model(
    version: str = typer.Argument(..., help="a version from `models list`, or `latest`"),
    models_dir: Path = typer.Option(None, help="registry folder (default: MODELS_DIR)"),
    as_json: bool = typer.Option(False, "--json", help="print the full record as JSON"),
) -> None:
    """Show one version: files, threshold and how it was chosen, test metrics."""
    from services.model_registry.registry import ModelRegistry

    shown = ModelRegistry(models_dir).show(version)
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
        return
    threshold = shown["threshold"]
    typer.echo(f"version   {shown['version']}{'  (LATEST)' if shown['latest'] else ''}")
    typer.echo(f"path      {shown['path']}")
    typer.echo(f"files     {', '.join(shown['files'])}")
    typer.echo(f"integrity {shown['integrity']}")
    typer.echo(f"threshold {threshold['threshold']:.6g}  rule={threshold['rule']}")
    for name, m in shown["metrics"].get("test", {}).items():
        if isinstance(m, dict) and "roc_auc" in m:
            typer.echo(
                f"{name:<20} roc_auc={_fmt(m.get('roc_auc'))} pr_auc={_fmt(m.get('pr_auc'))} "
                f"precision={_fmt(m.get('precision'))} recall={_fmt(m.get('recall'))} "
                f"f1={_fmt(m.get('f1'))}"
            )
    promotion = shown["metrics"].get("promotion")
    if promotion:
        typer.echo(f"promotion {promotion.get('decision')}: {promotion.get('reason')}")
    typer.echo(f"model {shown['version']} threshold={threshold['threshold']:.6g}")


@models_app.command("seal")
def seal_model(
    version: str = typer.Argument(..., help="a version registered without a manifest"),
    models_dir: Path = typer.Option(None, help="registry folder (default: MODELS_DIR)"),
) -> None:
    """Record manifest.json (sha256 of each file) for an old version, as its files are NOW.

    Only for versions you know to be intact: from then on scorers accept announcements of it."""
    from services.model_registry.registry import ModelRegistry

    digest = ModelRegistry(models_dir).seal(version)
    typer.echo(f"sealed {version} digest={digest}")


@models_app.command("threshold")
def set_threshold(
    budget: float = typer.Option(
        ..., "--budget", help="at most this many alerts per 10,000 transactions (0-10000]"
    ),
    version: str = typer.Option("latest", "--version", help="the version to start from"),
    models_dir: Path = typer.Option(None, help="registry folder (default: MODELS_DIR)"),
    models_topic: str = typer.Option(MODELS_TOPIC, help="topic announcing new versions"),
    no_announce: bool = typer.Option(
        False, "--no-announce", help="publish (and make LATEST) without announcing"
    ),
) -> None:
    """Set the threshold by an alert budget: publish a version derived from VERSION (same model)
    whose threshold lets through at most BUDGET alerts per 10,000 validation transactions, with
    the precision and recall that buys on the test split in its report. When VERSION is LATEST
    the new version becomes LATEST and is announced: running scorers switch to it between two
    batches."""
    from services.model_registry.budget import set_alert_budget

    result = set_alert_budget(
        version,
        budget,
        models_dir=models_dir,
        announce=not no_announce,
        models_topic=models_topic,
    )
    val = result.validation
    typer.echo(
        f"from {result.derived_from}: threshold {result.previous_threshold:.6g} -> "
        f"{result.threshold:.6g} ({val['alerts_per_10k']:.1f} alerts/10k on validation)"
    )
    if not result.latest:
        typer.echo(f"{result.derived_from} is not LATEST: the new version is neither LATEST nor "
                   "announced (pin it with `score --model` or promote it)")  # fmt: skip
    elif result.announced:
        typer.echo(f"LATEST -> {result.version}, announced on {models_topic}")
    typer.echo(result.summary_line())


def register(app: typer.Typer) -> None:
    """Mount `fraudstream models …` (also as `fraudstream model …`)."""
    app.add_typer(models_app, name="models")
    app.add_typer(models_app, name="model", hidden=True)
