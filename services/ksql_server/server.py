"""`fraudstream ksql serve`: the engine behind ksqlDB's REST API on one port.

hypercorn (through services/common/http/, shared with the Schema Registry) serves HTTP/1.1 and
HTTP/2 on the same port (cleartext with prior knowledge, which is what ksql-python-ng's
`use_http2=True` path and ksqlDB's own clients speak, or TLS with ALPN), behind the shared guard:
Host allow-list, optional Basic auth, content types, body limits (rest/http_policy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

from starlette.applications import Starlette

from services.common.http import guard_config, serve_api
from services.common.logs import setup_logging
from services.common.settings import HttpServerSettings, Settings, get_settings
from services.ksql_server.engine_api import KsqlEngine
from services.ksql_server.rest import create_app
from services.ksql_server.rest.http_policy import KSQL_POLICY

log = logging.getLogger(__name__)


def bind_address(url: str) -> tuple[str, int]:
    """Host and port to listen on for a KSQL_URL; `localhost` binds to 127.0.0.1 only."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    host = parsed.hostname or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    return host, parsed.port or 8088


def build_engine(
    settings: Settings, service_id: str | None = None, properties: dict[str, Any] | None = None
) -> KsqlEngine:
    """The real engine (`engine.py`) on the configured broker and Schema Registry.

    Imported here, not at module level, so the REST layer and its tests never need it. Building
    it replays the command topic, so the persistent queries run again before the port opens.
    """
    import importlib

    engine_class: Any = importlib.import_module("services.ksql_server.engine").Engine
    engine: KsqlEngine = engine_class(
        bootstrap_servers=settings.bootstrap_servers,
        schema_registry_url=settings.schema_registry_url,
        service_id=service_id,
        properties=properties,
    )
    return engine


async def _maybe_await(result: Any) -> None:
    if asyncio.iscoroutine(result):
        await result


def _cluster_id(bootstrap_servers: str | None) -> str:
    """The Kafka cluster id for /info ('' if the broker does not say)."""
    from services.common.kafka import make_admin

    try:
        metadata = make_admin(bootstrap_servers, quiet=True).list_topics(timeout=5)
        return str(metadata.cluster_id or "")
    except Exception:
        log.warning("could not read the Kafka cluster id", exc_info=True)
        return ""


def serving_app(
    engine: KsqlEngine, bootstrap_servers: str | None = None, keepalive_s: float = 5.0
) -> Starlette:
    """The REST app with a lifespan that starts the engine (if it has a `start`) on the
    server's event loop, and closes it at shutdown, so persistent queries stop cleanly.
    /healthcheck also asks the broker at `bootstrap_servers`."""
    from services.common.kafka import broker_reachable
    from services.common.process import freeze_startup_heap
    from services.ksql_server.formats.columnar import warm_up as warm_up_kernels

    app = create_app(
        engine,
        keepalive_s=keepalive_s,
        kafka_check=lambda: broker_reachable(bootstrap_servers, timeout=2.0),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        start = getattr(engine, "start", None)
        if start is not None:
            await _maybe_await(start())
        if not app.state.api.kafka_cluster_id:
            app.state.api.kafka_cluster_id = await asyncio.to_thread(_cluster_id, bootstrap_servers)
        await asyncio.to_thread(warm_up_kernels)
        freeze_startup_heap()
        log.info("KSQL server ready (service id %s)", engine.service_id)
        try:
            yield
        finally:
            await asyncio.to_thread(engine.close)

    app.router.lifespan_context = lifespan
    return app


def serve(
    host: str | None = None,
    port: int | None = None,
    service_id: str | None = None,
    properties: dict[str, Any] | None = None,
    http: HttpServerSettings | None = None,
) -> None:
    """Build the engine and serve until SIGTERM/SIGINT (`http`: overrides the HTTP settings)."""
    settings = get_settings()
    if http is not None:
        settings = dataclasses.replace(settings, http_server=http)
    default_host, default_port = bind_address(settings.ksql_url)
    host, port = host or default_host, port or default_port
    setup_logging()
    for chatty in ("httpx", "httpx2", "httpcore"):  # one INFO line per registry request
        logging.getLogger(chatty).setLevel(logging.WARNING)
    guard = guard_config(KSQL_POLICY, settings.http_server, host, port, settings.ksql_url)
    engine = build_engine(settings, service_id, properties)
    app = serving_app(engine, settings.bootstrap_servers)
    # On SIGTERM the push queries end first, so no open stream holds the shutdown up.
    serve_api(app, guard, host, port, settings.http_server, app.state.api.begin_shutdown)
