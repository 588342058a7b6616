"""`fraudstream alerts`: the alerts as they arrive (table, live table, plain lines or JSON lines).

A live table redraws a terminal in place, so it shows nothing in a pipe or a container log
(`docker compose logs -f alerts`): there, --follow prints one line per alert instead.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

COLUMNS = (
    "ID",
    "USER",
    "TIMESTAMP",
    "AMOUNT",
    "SCORE",
    "THRESHOLD",
    "MODEL_VERSION",
    "SCORED_AT",
    "CLASS",
)
LIVE_ROWS = 25


def register(app: typer.Typer) -> None:
    """Add `alerts` to the `fraudstream` app."""

    @app.command()
    def alerts(
        topic: str = typer.Option("fraud_alerts", "--topic", help="alerts topic"),
        follow: bool = typer.Option(
            False,
            "--follow",
            "-f",
            help="keep showing new alerts until Ctrl-C (a live table on a terminal, else lines)",
        ),
        limit: int | None = typer.Option(None, "--limit", help="stop after N alerts"),
        as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
        group: str = typer.Option("fraudstream-alerts", "--group", help="consumer group id"),
    ) -> None:
        """Show the committed alerts of the alerts topic, from the first one.

        Without --follow it stops at the current end; --json prints JSON lines for scripts.
        """
        from services.alerts.viewer import iter_alerts

        stream = iter_alerts(topic=topic, follow=follow, limit=limit, group=group)
        try:
            if as_json:
                count = _print_json(stream)
            elif follow and sys.stdout.isatty():
                count = _live_table(stream)
            elif follow:
                count = _print_lines(stream)
            else:
                count = _static_table(stream)
        except KeyboardInterrupt:
            count = _COUNT[0]
        typer.echo(f"{count} alerts")


_COUNT = [0]


def _cells(alert: dict[str, Any]) -> list[str]:
    from services.alerts.viewer import format_time_ms

    out = []
    for col in COLUMNS:
        value = alert.get(col)
        if col == "SCORED_AT":
            out.append(format_time_ms(value))
        elif isinstance(value, float):
            out.append(f"{value:.4f}" if col != "AMOUNT" else f"{value:.2f}")
        else:
            out.append("" if value is None else str(value))
    return out


def _table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="fraud alerts", show_lines=False)
    for col in COLUMNS:
        table.add_column(
            col, justify="right" if col in ("ID", "AMOUNT", "SCORE", "THRESHOLD") else "left"
        )
    for alert in rows:
        table.add_row(*_cells(alert))
    return table


def _print_json(stream: Any) -> int:
    count = 0
    for alert in stream:
        typer.echo(json.dumps(alert, default=str))
        count += 1
        _COUNT[0] = count
    return count


def format_line(alert: dict[str, Any]) -> str:
    """One alert as one plain line: `COLUMN=value` pairs in the table's column order."""
    if "error" in alert:
        return f"undecodable alert at offset {alert.get('offset')}: {alert['error']}"
    return " ".join(f"{col}={cell}" for col, cell in zip(COLUMNS, _cells(alert), strict=True))


def _print_lines(stream: Any) -> int:
    count = 0
    for alert in stream:
        typer.echo(format_line(alert))
        count += 1
        _COUNT[0] = count
    return count


def _static_table(stream: Any) -> int:
    from rich.console import Console

    rows = list(stream)
    if rows:
        Console().print(_table(rows))
    return len(rows)


def _live_table(stream: Any) -> int:
    from rich.live import Live

    rows: list[dict[str, Any]] = []
    count = 0
    with Live(_table(rows), refresh_per_second=4) as live:
        for alert in stream:
            count += 1
            _COUNT[0] = count
            rows.append(alert)
            del rows[:-LIVE_ROWS]
            live.update(_table(rows))
    return count
