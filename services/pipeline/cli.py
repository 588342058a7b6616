"""`fraudstream run`: the whole pipeline end to end on the embedded stack."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from services.scorer.metrics import DEFAULT_METRICS_PORT, METRICS_PORT_ENV, check_metrics_port

RUN_HELP = (
    "Run the whole pipeline end to end on the embedded stack.\n\n"
    "Starts the stack, applies ksql/, replays transactions, trains on the earliest 70 % and "
    "scores every transaction, then prints a summary: records, alerts, precision/recall "
    "against the labels, throughput. Without --exit, scoring goes on until Ctrl-C."
)


def register(app: typer.Typer) -> None:
    @app.command(help=RUN_HELP)
    def run(
        rows: int = typer.Option(50_000, help="transactions to generate (ignored with --csv)"),
        csv: Path = typer.Option(None, help="replay this CSV instead (Kaggle or extended layout)"),
        seed: int = typer.Option(42, help="generator seed"),
        speedup: float = typer.Option(
            None, help="replay by the Time column, X times real time (default: as fast as possible)"
        ),
        epochs: int = typer.Option(10, help="autoencoder training epochs"),
        keep: bool = typer.Option(
            False, "--keep", help="leave the stack running when the command ends"
        ),
        exit_: bool = typer.Option(
            False, "--exit", help="exit after the summary instead of scoring on until Ctrl-C"
        ),
        summary_json: Path = typer.Option(
            None, "--summary-json", help="also write the summary's figures to this JSON file"
        ),
        metrics_port: int = typer.Option(
            DEFAULT_METRICS_PORT,
            "--metrics-port",
            envvar=METRICS_PORT_ENV,
            help="the scorer's Prometheus /metrics port (0: off)",
        ),
    ) -> None:
        from services.pipeline.run import RunOptions, RunState, run_pipeline, shutdown

        def say(message: str) -> None:
            typer.echo(f"· {message}", err=True)

        if rows <= 0:
            raise typer.BadParameter("--rows must be positive")
        check_metrics_port(None, metrics_port)
        options = RunOptions(
            rows=rows, csv=csv, seed=seed, speedup=speedup, epochs=epochs, metrics_port=metrics_port
        )
        state = RunState()
        try:
            summary = run_pipeline(options, say, state)
            for line in summary.lines():
                typer.echo(line)
            if summary_json is not None:
                summary_json.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
            if not exit_:
                typer.echo("scoring goes on; Ctrl-C to stop", err=True)
                while state.scorer_thread is not None and state.scorer_thread.is_alive():
                    time.sleep(0.5)
        except KeyboardInterrupt:
            typer.echo("stopping …", err=True)
        finally:
            shutdown(state, keep)
