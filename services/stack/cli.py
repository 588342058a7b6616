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
    # httpx, the broker: not at start-up
    from services.stack.components import stack_components

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


def _with_console(
    only: str | None, sasl: bool = False, sasl_ssl: bool = False
) -> tuple[list[Component], Component | None]:
    """The stack's selected components, and the console when it is selected too (`only` unset
    or naming `console`). A broker with SASL has no console user: no console then."""
    from services.stack.components import console_component

    names = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
    rest = None if names is None else ",".join(sorted(names - {"console"}))
    components = [] if rest == "" else _select(rest, sasl, sasl_ssl)
    settings = get_settings()
    wanted = names is None or "console" in names
    if not wanted or sasl or sasl_ssl or settings.broker_sasl:
        return components, None
    return components, console_component(settings)


def _start_console(console: Component | None) -> Component | None:
    """Start the console if it does not answer; a failure is a warning, not the stack's end."""
    if console is None or console.healthy():
        return console
    typer.echo(f"starting {console.name} …", err=True)
    try:
        console.start()
    except FraudstreamError as exc:
        typer.echo(f"console not started: {exc}", err=True)
        return None
    return console


def _line(component: Component) -> str:
    healthy = component.healthy()
    rss = component.rss_bytes()
    mem = f" rss={rss / 2**20:.0f}MB" if rss else ""
    origin = "" if component.owned() or not healthy else " (external)"
    state = "healthy" if healthy else "down"
    return f"{component.name:<16} {component.address:<24} {state}{origin}{mem}"


def up(only: str | None = None, sasl: bool = False, sasl_ssl: bool = False) -> list[Component]:
    """Start every selected component in order and wait until each is healthy."""
    return _start(_select(only, sasl, sasl_ssl))


def _start(components: list[Component]) -> list[Component]:
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
            None,
            help="comma-separated components: kafka, schema-registry, ksql-server, console",
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
        components, console = _with_console(only, sasl, sasl_ssl)
        _start(components)
        console = _start_console(console)
        components += [console] if console is not None else []
        for component in components:
            typer.echo(_line(component))
        if not detach:
            _wait_for_interrupt()
            for component in reversed(components):
                component.stop()

    @stack_app.command("down")
    def down_cmd(only: str = typer.Option(None, help="comma-separated components")) -> None:
        """Stop the components this stack started (SIGTERM, then kill after a timeout)."""
        components, console = _with_console(only)
        for component in [*([console] if console else []), *reversed(components)]:
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
        components, console = _with_console(None)
        components += [console] if console is not None else []
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
