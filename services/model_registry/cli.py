"""Command-line commands of this service (mounted by services/cli.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this service's commands to the `fraudstream` app (filled in by the service)."""
