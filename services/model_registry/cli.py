"""`fraudstream models list|show VERSION|seal VERSION`: the versions in the model registry
(MODELS_DIR), and recording a manifest for a version registered before manifests existed."""

from __future__ import annotations

import json
from pathlib import Path

import typer

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


def register(app: typer.Typer) -> None:
    """Mount `fraudstream models …`."""
    app.add_typer(models_app, name="models")
