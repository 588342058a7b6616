"""`fraudstream stack up|down|status`: the embedded broker, Schema Registry and KSQL server."""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import typer

from services.common.errors import FraudstreamError
from services.common.settings import get_settings

if TYPE_CHECKING:
    from services.stack.components import Component

stack_app = typer.Typer(help="Start, stop and report the embedded stack (Kafka, registry, KSQL).")


def _select(only: str | None, sasl: bool = False, sasl_ssl: bool = False) -> list[Component]:
    from services.stack.components import stack_components  # httpx, the broker: not at start-up

    settings = get_settings()
    if sasl or sasl_ssl:
        settings = replace(settings, broker_sasl=True, broker_tls=sasl_ssl or settings.broker_tls)
    components = stack_components(settings)
    if only:
        wanted = {n.strip() for n in only.split(",") if n.strip()}
        names = {c.name for c in components}
        if wanted - names:
            raise FraudstreamError(
                f"unknown component {', '.join(sorted(wanted - names))}; "
                f"choose from {', '.join(names)}",
                code="bad_option",
            )
        components = [c for c in components if c.name in wanted]
    return components


def _line(component: Component) -> str:
    healthy = component.healthy()
    rss = component.rss_bytes()
    mem = f" rss={rss / 2**20:.0f}MB" if rss else ""
    origin = "" if component.owned() or not healthy else " (external)"
    state = "healthy" if healthy else "down"
    return f"{component.name:<16} {component.address:<24} {state}{origin}{mem}"


def up(only: str | None = None, sasl: bool = False, sasl_ssl: bool = False) -> list[Component]:
    """Start every selected component in order and wait until each is healthy."""
    components = _select(only, sasl, sasl_ssl)
    for component in components:
        if not component.healthy():
            typer.echo(f"starting {component.name} …", err=True)
            component.start()
    return components


def register(app: typer.Typer) -> None:
    @stack_app.command("up")
    def up_cmd(
        detach: bool = typer.Option(
            True,
            "--detach/--foreground",
            help="return once healthy (default) or stay in the foreground until Ctrl-C",
        ),
        only: str = typer.Option(
            None, help="comma-separated components: kafka, schema-registry, ksql-server"
        ),
        sasl: bool = typer.Option(
            False,
            "--sasl",
            help="broker with SASL/SCRAM users per service and ACLs (only the trainer writes "
            "fraudstream_models); the registry and KSQL server connect as their own users; "
            "needs a fresh data directory; also FRAUDSTREAM_BROKER_SASL=true",
        ),
        sasl_ssl: bool = typer.Option(
            False,
            "--sasl-ssl",
            help="as --sasl, over TLS (SASL_SSL) with a CA and certificate made locally "
            "($FRAUDSTREAM_HOME/kafka/tls/ca.pem); also FRAUDSTREAM_BROKER_TLS=true",
        ),
    ) -> None:
        """Start the embedded stack and wait until each component is healthy.

        With --sasl or --sasl-ssl, each service's credentials are in
        $FRAUDSTREAM_HOME/kafka/sasl/<user>.env (source one before running that service)."""
        components = up(only, sasl, sasl_ssl)
        for component in components:
            typer.echo(_line(component))
        if not detach:
            _wait_for_interrupt()
            for component in reversed(components):
                component.stop()

    @stack_app.command("down")
    def down_cmd(only: str = typer.Option(None, help="comma-separated components")) -> None:
        """Stop the components this stack started (SIGTERM, then kill after a timeout)."""
        for component in reversed(_select(only)):
            stopped = component.stop()
            typer.echo(f"{component.name:<16} {'stopped' if stopped else 'not running'}")

    @stack_app.command("acls")
    def acls_cmd() -> None:
        """Apply the project's ACLs: only the trainer may write fraudstream_models.

        On the embedded SASL broker this runs as its admin user; on another broker, as the user
        in KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD (which must be allowed to change ACLs).
        Re-applying is harmless."""
        from services.broker.launcher import KafkaBroker
        from services.broker.sasl import apply_acls, project_acls

        broker = KafkaBroker.from_env()
        where = broker.settings.bootstrap_servers
        applied = apply_acls(where, broker.admin_config(), project_acls())
        typer.echo(f"applied {applied} ACLs")

    @stack_app.command("status")
    def status_cmd() -> None:
        """Report each component: name, address, healthy or down, resident memory."""
        components = _select(None)
        for component in components:
            typer.echo(_line(component))
        if not all(c.healthy() for c in components):
            raise typer.Exit(1)

    app.add_typer(stack_app, name="stack")


def _wait_for_interrupt() -> None:
    stop = False

    def handler(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handler)
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
