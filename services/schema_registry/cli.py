"""`fraudstream registry serve`: the Confluent-compatible Schema Registry server."""

from __future__ import annotations

import threading
from urllib.parse import urlparse

import typer

from services.common.settings import get_settings

DEFAULT_GROUP = "fraudstream-schema-registry"

registry_app = typer.Typer(
    help="The Schema Registry: Confluent's REST API, state in the compacted _schemas topic."
)


def _default_port() -> int:
    return urlparse(get_settings().schema_registry_url).port or 8081


def serve(host: str, port: int, topic: str, group: str, advertised_url: str | None) -> None:
    """Read `_schemas` to its end, join the writer election, and serve until SIGTERM."""
    import dataclasses
    import logging

    from services.common.http import run_asgi
    from services.schema_registry.app import create_app
    from services.schema_registry.kafka_log import KafkaLog
    from services.schema_registry.limits import SchemaLimits
    from services.schema_registry.registry import Registry
    from services.schema_registry.state import RegistryState

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    url = advertised_url or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    state, lock = RegistryState(), threading.RLock()
    kafka = KafkaLog(
        state,
        lock,
        bootstrap=settings.bootstrap_servers,
        topic=topic,
        group=group,
        advertised_url=url,
    )
    limits = SchemaLimits.from_env()
    registry = Registry(state, lock, log_factory=lambda _state, _lock: kafka, limits=limits)
    kafka.start()
    # Refuse (422) a record the storage topic would refuse, before writing it.
    registry.limits = dataclasses.replace(
        limits, max_record_bytes=kafka.record_limit(limits.max_record_bytes)
    )
    typer.echo(f"schema limits: {registry.limits}", err=True)
    typer.echo(f"schema registry on {url} (topic {topic}, group {group})", err=True)
    try:
        run_asgi(create_app(registry, kafka), host, port)
    finally:
        kafka.close()


def register(app: typer.Typer) -> None:
    @registry_app.command("serve")
    def serve_cmd(
        host: str = typer.Option("127.0.0.1", help="address to bind"),
        port: int = typer.Option(None, help="port (default: the one in SCHEMA_REGISTRY_URL, 8081)"),
        topic: str = typer.Option("_schemas", help="the compacted, single-partition storage topic"),
        group: str = typer.Option(
            DEFAULT_GROUP, help="consumer group the instances elect their single writer in"
        ),
        advertised_url: str = typer.Option(
            None, help="URL other instances forward writes to (default http://HOST:PORT)"
        ),
    ) -> None:
        """Serve Confluent Schema Registry's REST API (register, look up, delete, config,
        compatibility) with state in Kafka; several instances share one writer."""
        serve(host, port or _default_port(), topic, group, advertised_url)

    app.add_typer(registry_app, name="registry")
