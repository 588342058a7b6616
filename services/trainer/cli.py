"""`fraudstream train`: consume the labelled Avro stream, fit, evaluate, register a version."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from services.common.topics import FEEDBACK_TOPIC, MODELS_TOPIC, PREPROCESSED_TOPIC
from services.trainer.errors import TrainerError, TrainingDataError

if TYPE_CHECKING:
    from services.trainer.api import Hooks


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise TrainerError(
            f"--hidden wants comma-separated widths like 14,7: {text!r}", code="bad_option"
        ) from exc
    if not sizes or min(sizes) < 1:
        raise TrainerError(f"--hidden wants positive widths like 14,7: {text!r}", code="bad_option")
    return sizes


@contextmanager
def _progress(epochs: int) -> Iterator[Hooks]:
    """Progress bars for reading and fitting, drawn on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from services.trainer.api import Hooks

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        read = progress.add_task("read", total=None, info="")
        fit = progress.add_task("fit", total=epochs, info="", visible=False)

        def on_ingest(done: int, total: int) -> None:
            progress.update(read, completed=done, total=total)

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            info = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
            progress.update(fit, completed=epoch, visible=True, info=info)

        def on_stage(name: str) -> None:
            progress.console.log(name)

        yield Hooks(on_ingest=on_ingest, on_epoch=on_epoch, on_stage=on_stage)


def register(app: typer.Typer) -> None:
    """Add `fraudstream train`."""

    @app.command()
    def train(
        topic: str = typer.Option(PREPROCESSED_TOPIC, help="labelled Avro topic to learn from"),
        max_records: int = typer.Option(
            None, "--max-records", min=1, help="read at most this many records"
        ),
        epochs: int = typer.Option(20, min=1, help="most epochs (early stopping may end sooner)"),
        from_beginning: bool = typer.Option(
            False, "--from-beginning", help="ignore the group's offsets and read from offset 0"
        ),
        group: str = typer.Option("fraudstream-train", help="consumer group storing the offsets"),
        batch_size: int = typer.Option(256, min=1, help="training batch size"),
        learning_rate: float = typer.Option(1e-3, min=0.0, help="Adam learning rate"),
        hidden: str = typer.Option("14,7", help="encoder widths, mirrored by the decoder"),
        seed: int = typer.Option(42, help="seed for repeatable fits"),
        alert_budget: float = typer.Option(
            None, help="threshold rule: this many alerts per 10,000 transactions"
        ),
        target_precision: float = typer.Option(
            None, help="threshold rule: the lowest threshold with at least this precision"
        ),
        models_dir: Path = typer.Option(None, help="model registry folder (default MODELS_DIR)"),
        models_topic: str = typer.Option(
            MODELS_TOPIC, help="topic announcing new versions (tests and benchmarks use their own)"
        ),
        no_baselines: bool = typer.Option(
            False,
            "--no-baselines",
            help="train the autoencoder only (no candidates, no PCA baseline)",
        ),
        model: str = typer.Option(
            "auto",
            "--model",
            help="auto: the champion by validation PR-AUC; or force one of autoencoder, "
            "isolation_forest, ensemble, supervised",
        ),
        watch: bool = typer.Option(
            False, "--watch", help="keep running: retrain on new records, promote if better"
        ),
        every: int = typer.Option(10_000, help="--watch: retrain after this many new records"),
        interval: float = typer.Option(
            None, help="--watch: also retrain every this many seconds if anything new arrived"
        ),
        window: int = typer.Option(300_000, help="--watch: train on at most the latest N rows"),
        rounds: int = typer.Option(None, help="--watch: stop after this many rounds"),
        feedback_topic: str = typer.Option(
            FEEDBACK_TOPIC, help="analysts' verdicts each version is also evaluated on"
        ),
        no_feedback: bool = typer.Option(
            False, "--no-feedback", help="do not read or evaluate on analysts' verdicts"
        ),
        feedback_min: int = typer.Option(
            None,
            "--feedback-min",
            min=1,
            help="--watch: also train a challenger once this many new verdicts arrived",
        ),
        wait_rows: int = typer.Option(
            None,
            "--wait-rows",
            min=1,
            help="first wait until the topic holds this many records to read (from the group's "
            "offsets or the beginning): KSQL may still be converting the stream",
        ),
        wait_timeout: float = typer.Option(
            600.0, "--wait-timeout", min=0.0, help="--wait-rows: give up after this many seconds"
        ),
    ) -> None:
        """Fit the autoencoder on the labelled stream and register a model version.

        Reads TOPIC from the group's offsets (or --from-beginning) up to the end offsets of now,
        splits by event time 60/20/20, fits preprocessing and the model on the training split,
        fits candidates next to the autoencoder (IsolationForest, an AE+forest ensemble, a
        class-weighted classifier when labels allow), chooses the champion by validation PR-AUC
        with its interval (--model forces one), picks the threshold on validation (best F1,
        --alert-budget or --target-precision) and reports test metrics with intervals. The
        version lands in MODELS_DIR, becomes LATEST and is announced on fraudstream_models.
        With --wait-rows N it first waits (up to --wait-timeout seconds) until N records are
        there to read.
        """
        from services.common.kafka import wait_for_broker
        from services.model_registry.registry import ModelRegistry
        from services.trainer import api

        try:
            config = api.make_config(
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                hidden=_hidden(hidden),
                seed=seed,
                alert_budget=alert_budget,
                target_precision=target_precision,
                baselines=not no_baselines,
                model=model,
            )
        except ValueError as exc:
            raise TrainerError(str(exc), code="bad_option") from exc
        wait_for_broker(timeout=15)
        if wait_rows is not None:
            from services.trainer.ingest import wait_for_records

            def say(message: str) -> None:
                typer.echo(message, err=True)

            reached = wait_for_records(
                topic, group, wait_rows, wait_timeout, say, from_beginning=from_beginning
            )
            say(f"{topic}: {reached} records to read")
        try:
            if watch:
                from services.trainer.watch import WatchOptions
                from services.trainer.watch import watch as run_watch

                options = WatchOptions(
                    every_records=every,
                    interval_s=interval,
                    window=window,
                    max_rounds=rounds,
                    feedback_topic=None if no_feedback else feedback_topic,
                    feedback_min=feedback_min,
                )

                def on_round(mv: api.ModelVersion) -> None:
                    decision = mv.metrics.get("promotion", {})
                    typer.echo(f"{decision.get('decision')}: {decision.get('reason')}")
                    if mv.feedback_line():
                        typer.echo(mv.feedback_line())
                    typer.echo(mv.champion_line())
                    typer.echo(mv.summary_line())

                with _progress(epochs) as hooks:
                    run_watch(
                        topic, group, config, ModelRegistry(models_dir), options,
                        from_beginning=from_beginning, hooks=hooks, on_round=on_round,
                        models_topic=models_topic,
                    )  # fmt: skip
                return
            with _progress(epochs) as hooks:
                mv = api.train(
                    topic=topic,
                    max_records=max_records,
                    from_beginning=from_beginning,
                    group=group,
                    config=config,
                    models_dir=models_dir,
                    hooks=hooks,
                    models_topic=models_topic,
                    feedback_topic=None if no_feedback else feedback_topic,
                )
        except TrainingDataError as exc:
            raise TrainingDataError(
                f"{exc} on {topic} (group {group}); use --from-beginning to re-read the topic",
                code=exc.code,
            ) from exc
        source = mv.metrics.get("source", {})
        rejected = source.get("rejected") or {}
        if rejected:
            typer.echo(f"skipped {sum(rejected.values())} records: {rejected}")
        typer.echo(f"report {mv.path / 'report.md'}")
        if mv.feedback_line():
            typer.echo(mv.feedback_line())
        typer.echo(mv.champion_line())
        typer.echo(mv.summary_line())
