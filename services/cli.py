"""The `fraudstream` command: one sub-command group per service, mounted from each service.

Each service owns its commands in `services/<service>/cli.py` with a `register(app)` function, so
adding a command never touches another service. Start-up is kept short for the commands that
neither train nor score (under 0.3 s of CPU; `tests/test_cli_startup.py` lists what each may
load, `fraudstream bench producer` times them):
- heavy imports (TensorFlow, numpy, confluent-kafka) stay inside the commands that use them, and
  options are converted without pydantic (`services.cli_coercion`);
- `fraudstream <command> …` loads only the service that owns `<command>` (`SERVICES`); the
  whole app is built for `fraudstream --help` and for a name no service owns (typer's own
  "No such command" then);
- help pages and usage errors are click's plain text, not typer's rich panels: rich and its
  markdown parser cost a help page about 0.2 s of imports. `TYPER_USE_RICH=1` brings the
  panels back.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import typer

from services.cli_coercion import install as install_light_coercion
from services.common.errors import FraudstreamError, one_line

HELP = (
    "Fraud detection on Apache Kafka: replay transactions, clean them with KSQL, "
    "train a Keras autoencoder and score every transaction exactly once."
)


def _plain_help() -> None:
    """typer renders help with rich unless told otherwise (`TYPER_USE_RICH`); read at each
    help page and usage error, so setting it here is enough."""
    if os.environ.get("TYPER_USE_RICH") is None:
        from typer import core

        core.HAS_RICH = False


def _stack(app: typer.Typer) -> None:
    from services.stack import cli

    cli.register(app)


def _registry(app: typer.Typer) -> None:
    from services.schema_registry import cli

    cli.register(app)


def _ksql(app: typer.Typer) -> None:
    from services.ksql_server import cli

    cli.register(app)


def _producer(app: typer.Typer) -> None:
    from services.producer import cli

    cli.register(app)


def _trainer(app: typer.Typer) -> None:
    from services.trainer import cli

    cli.register(app)


def _models(app: typer.Typer) -> None:
    from services.model_registry import cli

    cli.register(app)


def _scorer(app: typer.Typer) -> None:
    from services.scorer import cli

    cli.register(app)


def _alerts(app: typer.Typer) -> None:
    from services.alerts import cli

    cli.register(app)


def _pipeline(app: typer.Typer) -> None:
    from services.pipeline import cli

    cli.register(app)


def _config(app: typer.Typer) -> None:
    from services import config_cli

    config_cli.register(app)


def _console(app: typer.Typer) -> None:
    from services.console import cli

    cli.register(app)


def _bench(app: typer.Typer) -> None:
    from services.bench_cli import register

    register(app)


SERVICES: tuple[tuple[tuple[str, ...], Callable[[typer.Typer], None]], ...] = (
    (("stack",), _stack),
    (("registry",), _registry),
    (("ksql",), _ksql),
    (("datagen", "produce"), _producer),
    (("train",), _trainer),
    (("models", "model"), _models),
    (("score",), _scorer),
    (("alerts",), _alerts),
    (("run",), _pipeline),
    (("config",), _config),
    (("ui",), _console),
    (("bench",), _bench),
)
"""The top-level commands each service registers, in the order `fraudstream --help` lists
them (tests/test_cli_startup.py checks the names against what each `register` adds)."""


def _root() -> None:
    """No options of its own: the commands have them."""


def build_app(argv: Sequence[str] | None = None) -> typer.Typer:
    """The `fraudstream` app: with `argv`, only the service owning the command it starts with
    (every service when it names none); without, every service."""
    install_light_coercion()
    _plain_help()
    new = typer.Typer(
        name="fraudstream",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    new.callback()(_root)  # a group even with one command in it: `fraudstream alerts …`
    first = argv[0] if argv else None
    owners = [register for names, register in SERVICES if first in names]
    for register in owners or [register for _names, register in SERVICES]:
        register(new)
    return new


def __getattr__(name: str) -> Any:
    """`services.cli.app`, the whole app, built on first use (tests and tools import it;
    `main` builds only what its command needs)."""
    if name == "app":
        built = build_app()
        globals()["app"] = built
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Entry point: any error of the family becomes one line `error: <text>` on stderr and exit
    code 1 (the code and the cause chain are for logs and tools, not for the terminal)."""
    # TensorFlow's C++ start-up chatter (oneDNN, CPU features) is noise on a terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        build_app(sys.argv[1:])()
    except FraudstreamError as exc:
        typer.echo(f"error: {one_line(exc)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
