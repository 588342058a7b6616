"""`fraudstream score`: the scorer as a command (exactly-once by default)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from services.scorer.metrics import (
    DEFAULT_METRICS_PORT,
    METRICS_HOST_ENV,
    METRICS_PORT_ENV,
    check_metrics_port,
)

if TYPE_CHECKING:
    from services.scorer.scorer import ScorerConfig, ScoreResult


def register(app: typer.Typer) -> None:
    """Add `score` to the `fraudstream` app."""

    @app.command()
    def score(
        model: str = typer.Option(
            "latest",
            "--model",
            help="'latest' follows new versions (hot reload); a version pins it",
        ),
        topic: str = typer.Option("creditcardfraud_scoring_avro", "--topic", help="input topic"),
        alerts_topic: str = typer.Option("fraud_alerts", "--alerts-topic", help="alerts topic"),
        from_beginning: bool = typer.Option(
            False,
            "--from-beginning",
            help="a group without committed offsets starts at the earliest record (default: "
            "only new records); committed offsets always win, so restarts never re-score",
        ),
        stop_at_end: bool = typer.Option(
            False,
            "--stop-at-end",
            help="stop once the partitions are read up to their end offsets of the start",
        ),
        explain: bool = typer.Option(
            True,
            "--explain/--no-explain",
            help="write each alert's top 5 contributing features (EXPLANATION) or null",
        ),
        at_least_once: bool = typer.Option(
            False,
            "--at-least-once",
            help="no transactions: a crash may repeat the alerts since the last commit",
        ),
        group: str = typer.Option("fraudstream-score", "--group", help="consumer group"),
        batch_size: int = typer.Option(10000, "--batch-size", help="max records per micro-batch"),
        batch_timeout_ms: int = typer.Option(
            100, "--batch-timeout-ms", help="idle wait for a batch's first record"
        ),
        commit_interval_ms: int = typer.Option(
            100,
            "--commit-interval-ms",
            help="while batches come full, one transaction spans them for up to this long",
        ),
        metrics_port: int = typer.Option(
            DEFAULT_METRICS_PORT,
            "--metrics-port",
            envvar=METRICS_PORT_ENV,
            help="Prometheus /metrics port (0: off)",
        ),
        metrics_host: str | None = typer.Option(
            None,
            "--metrics-host",
            help=f"address /metrics binds (default ${METRICS_HOST_ENV} or 127.0.0.1; "
            "0.0.0.0 in a container)",
        ),
        instance_id: str = typer.Option(
            "0",
            "--instance-id",
            help="distinct per scorer of the same group (part of the transactional id)",
        ),
        max_records: int | None = typer.Option(
            None, "--max-records", help="stop after about this many records"
        ),
        json_logs: bool = typer.Option(False, "--json-logs", help="JSON log lines on stderr"),
        log_file: Path | None = typer.Option(None, "--log-file", help="JSON log lines to a file"),
    ) -> None:
        """Score every transaction with the current model and write alerts to the alerts topic.

        Micro-batches (what the consumer has fetched, up to --batch-size records: a batch closes as soon as nothing more is there), one model call per batch, an alert where score >= threshold, bad records to creditcardfraud_dlq. Exactly-once by default. While batches come full a transaction spans several (--commit-interval-ms); a batch that is not full commits at once. SIGTERM finishes and commits the batch in flight.
        """  # noqa: E501
        from services.common.logs import setup_logging
        from services.scorer.scorer import ScorerConfig

        setup_logging(json_lines=json_logs, file=log_file)
        config = ScorerConfig(
            topic=topic,
            alerts_topic=alerts_topic,
            group=group,
            model=model,
            exactly_once=not at_least_once,
            explain=explain,
            from_beginning=from_beginning,
            stop_at_end=stop_at_end,
            batch_size=batch_size,
            batch_timeout_ms=batch_timeout_ms,
            commit_interval_ms=commit_interval_ms,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            instance_id=instance_id,
            max_records=max_records,
        )
        check_metrics_port(metrics_host, metrics_port)
        result = _run_with_progress(config)
        versions = ", ".join(f"{v}: {n}" for v, n in result.versions.items()) or "none"
        typer.echo(
            f"dead letters {result.dead_letters}, batches {result.batches}, "
            f"aborted {result.aborted}, records per model: {versions}"
        )
        typer.echo(f"scored {result.scored} alerts {result.alerts} ({result.rate:.0f} ev/s)")


def _run_with_progress(config: ScorerConfig) -> ScoreResult:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from services.scorer.scorer import Scorer

    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("scoring", total=None)

        def on_batch(r: ScoreResult) -> None:
            progress.update(
                task, description=f"scored {r.scored} alerts {r.alerts} dlq {r.dead_letters}"
            )

        scorer = Scorer(config, on_batch=on_batch)
        scorer.install_signal_handlers()
        return scorer.run()
