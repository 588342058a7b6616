"""`fraudstream ksql conformance PATH… [--junit FILE]`: run ksqlDB's QTT files."""

from __future__ import annotations

from pathlib import Path

import typer


def register(ksql_app: typer.Typer) -> None:
    """Add the `conformance` command to the `ksql` command group."""

    @ksql_app.command("conformance")
    def conformance(
        paths: list[Path] = typer.Argument(..., help="QTT JSON files or folders of them."),
        junit: Path | None = typer.Option(None, "--junit", help="Also write a JUnit XML report."),
        workers: int = typer.Option(6, "--workers", help="Cases run concurrently."),
        match: str | None = typer.Option(
            None, "--match", help="Only cases whose name contains this."
        ),
        verbose: bool = typer.Option(
            False, "--verbose", "-v", help="Print every failure's reason."
        ),
    ) -> None:
        """Run ksqlDB's query-validation tests against this engine on the real broker.

        Each case gets fresh topics; unsupported features are reported as skipped with the
        reason. Prints a per-file table and `N passed, N failed, N skipped`."""
        from services.ksql_conformance.report import run_and_report

        run_and_report(paths, junit, workers, match, verbose)
