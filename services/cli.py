"""The `fraudstream` command: one sub-command group per service, mounted from each service.

Each service owns its commands in `services/<service>/cli.py` with a `register(app)` function, so
adding a command never touches another service. Heavy imports (TensorFlow, numpy, confluent-kafka)
stay inside the commands that use them, and options are converted without pydantic
(`services.cli_coercion`), so `fraudstream --help` answers at once and the commands that neither
train nor score start in well under a second (`tests/test_cli_startup.py` lists what each may load).
"""

from __future__ import annotations

import os
import sys

import typer

from services.cli_coercion import install as install_light_coercion
from services.common.errors import FraudstreamError, one_line

install_light_coercion()

app = typer.Typer(
    name="fraudstream",
    help="Fraud detection on Apache Kafka: replay transactions, clean them with KSQL, "
    "train a Keras autoencoder and score every transaction exactly once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_all() -> None:
    from services import config_cli
    from services.alerts import cli as alerts_cli
    from services.bench_cli import register as register_bench
    from services.console import cli as console_cli
    from services.ksql_server import cli as ksql_cli
    from services.model_registry import cli as models_cli
    from services.pipeline import cli as pipeline_cli
    from services.producer import cli as producer_cli
    from services.schema_registry import cli as registry_cli
    from services.scorer import cli as scorer_cli
    from services.stack import cli as stack_cli
    from services.trainer import cli as trainer_cli

    for module in (
        stack_cli,
        registry_cli,
        ksql_cli,
        producer_cli,
        trainer_cli,
        models_cli,
        scorer_cli,
        alerts_cli,
        pipeline_cli,
        config_cli,
        console_cli,
    ):
        module.register(app)
    register_bench(app)


_register_all()


def main() -> None:
    """Entry point: any error of the family becomes one line `error: <text>` on stderr and exit
    code 1 (the code and the cause chain are for logs and tools, not for the terminal)."""
    # TensorFlow's C++ start-up chatter (oneDNN, CPU features) is noise on a terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        app()
    except FraudstreamError as exc:
        typer.echo(f"error: {one_line(exc)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
