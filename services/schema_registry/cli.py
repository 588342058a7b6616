"""`fraudstream registry serve`: the Confluent-compatible Schema Registry server."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from urllib.parse import urlparse

import typer

from services.common.http import cli as http_cli
from services.common.settings import HttpServerSettings, get_settings

DEFAULT_GROUP = "fraudstream-schema-registry"

registry_app = typer.Typer(
    help="The Schema Registry: Confluent's REST API, state in the compacted _schemas topic."
)


def _default_port() -> int:
    return urlparse(get_settings().schema_registry_url).port or 8081


def serve(
    host: str,
    port: int,
    topic: str,
    group: str,
    advertised_url: str | None,
    http: HttpServerSettings | None = None,
) -> None:
    """Read `_schemas` to its end, join the writer election, and serve until SIGTERM."""
    import logging

    from services.common.http import guard_config, serve_api
    from services.schema_registry.app import create_app
    from services.schema_registry.http_policy import SCHEMA_REGISTRY_POLICY
    from services.schema_registry.kafka_log import KafkaLog
    from services.schema_registry.limits import SchemaLimits
    from services.schema_registry.registry import Registry
    from services.schema_registry.state import RegistryState

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    if http is not None:
        settings = dataclasses.replace(settings, http_server=http)
    scheme = "https" if settings.http_server.tls else "http"
    own_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = advertised_url or f"{scheme}://{own_host}:{port}"
    guard = guard_config(
        SCHEMA_REGISTRY_POLICY,
        settings.http_server,
        host,
        port,
        url,
        settings.schema_registry_url,
    )
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
        serve_api(create_app(registry, kafka), guard, host, port, settings.http_server)
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
            None, help="URL other instances forward writes to (default http(s)://HOST:PORT)"
        ),
        users_file: Path = http_cli.USERS_FILE,
        tls_cert: Path = http_cli.TLS_CERT,
        tls_key: Path = http_cli.TLS_KEY,
        allowed_host: list[str] = http_cli.ALLOWED_HOST,
    ) -> None:
        """Serve Confluent Schema Registry's REST API (register, look up, delete, config,
        compatibility) with state in Kafka; several instances share one writer.

        Binds 127.0.0.1 unless --host; cleartext unless --tls-cert/--tls-key; no authentication
        unless --users-file (docs/security.md)."""
        http = http_cli.http_settings(users_file, tls_cert, tls_key, allowed_host)
        serve(host, port or _default_port(), topic, group, advertised_url, http)

    app.add_typer(registry_app, name="registry")
