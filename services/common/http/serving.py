"""Serving an ASGI app with hypercorn: HTTP/1.1 and HTTP/2 on one port, cleartext or TLS.

Both the Schema Registry and the KSQL server use this, so they start, log, stop and protect
their port the same way. In cleartext HTTP/2 is spoken with prior knowledge (what ksql-python-ng's
`use_http2=True` path sends); with TLS it is negotiated by ALPN (`h2`, then `http/1.1`).

Timeouts that hypercorn owns are set here: an idle connection, one that has not finished sending
its request headers, and a TLS handshake all end after `header_timeout_s`. (hypercorn's own
`read_timeout` stays off: it would also end long push queries whose client sends nothing while
reading.) The request-body deadline is the guard's (guard.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from hypercorn.asyncio import serve
from hypercorn.config import Config

from services.common.errors import FraudstreamError
from services.common.http.guard import ApiPolicy, GuardConfig, HttpGuard
from services.common.settings import HttpServerSettings

log = logging.getLogger("fraudstream.http")

DEFAULT_IDLE_TIMEOUT_S = 75.0


def hypercorn_config(
    host: str,
    port: int,
    access_log: bool = False,
    settings: HttpServerSettings | None = None,
) -> Config:
    """hypercorn's Config for one port; `settings` None: cleartext, no header timeout change."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.keep_alive_timeout = DEFAULT_IDLE_TIMEOUT_S
    config.graceful_timeout = 5
    if access_log:
        config.accesslog = "-"
    if settings is not None:
        config.keep_alive_timeout = settings.header_timeout_s
        config.ssl_handshake_timeout = settings.header_timeout_s
        _configure_tls(config, settings)
    return config


def _configure_tls(config: Config, settings: HttpServerSettings) -> None:
    cert, key = settings.tls_certfile, settings.tls_keyfile
    if cert is None and key is None:
        return
    if cert is None or key is None:
        raise FraudstreamError(
            "TLS needs both a certificate and a key "
            "(FRAUDSTREAM_HTTP_TLS_CERTFILE and FRAUDSTREAM_HTTP_TLS_KEYFILE)",
            code="tls",
        )
    for path in (cert, key):
        if not path.is_file():
            raise FraudstreamError(f"TLS file {path} does not exist", code="tls")
    config.certfile = str(cert)
    config.keyfile = str(key)
    config.alpn_protocols = ["h2", "http/1.1"]
    try:
        config.create_ssl_context()  # a wrong key or certificate fails here, not per connection
    except (OSError, ValueError) as exc:
        raise FraudstreamError(
            f"cannot load TLS certificate {cert} / key {key}: {exc}", code="tls"
        ) from None


def run_asgi(
    app: Any,
    host: str,
    port: int,
    settings: HttpServerSettings | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully.

    `on_shutdown` runs on the event loop when the signal arrives, before hypercorn waits (up to
    `graceful_timeout`) for open connections: a server with endless streams ends them there."""
    config = hypercorn_config(host, port, settings=settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stopping() -> None:
            if on_shutdown is not None and not stop.is_set():
                on_shutdown()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping)
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(main())


def guard_config(
    policy: ApiPolicy, settings: HttpServerSettings, host: str, port: int, *own_urls: str
) -> GuardConfig:
    """Check a server's HTTP settings (users file, TLS files) and bind them to its API, before
    anything slow starts; FraudstreamError names what is wrong. The host names of `own_urls`
    (the server's configured and advertised URLs) are always accepted as `Host`."""
    hypercorn_config(host, port, settings=settings)  # validates the TLS files
    scheme = "https" if settings.tls else "http"
    for url in own_urls:
        if urlparse(url).scheme not in ("", scheme):
            log.warning("%s says %s but the server speaks %s", url, urlparse(url).scheme, scheme)
    names = [urlparse(url).hostname or "" for url in own_urls]
    return GuardConfig.from_settings(policy, settings, host, *(n for n in names if n))


def serve_api(
    app: Any,
    config: GuardConfig,
    host: str,
    port: int,
    settings: HttpServerSettings,
    on_shutdown: Callable[[], None] | None = None,
) -> None:
    """Serve `app` behind the guard until SIGTERM or SIGINT (then `on_shutdown`, see run_asgi)."""
    auth = config.authenticator
    log.info(
        "%s on %s://%s:%d: authentication %s, hosts %s",
        config.policy.name,
        "https" if settings.tls else "http",
        host,
        port,
        f"on ({len(auth.users)} users)" if auth is not None else "off",
        config.hosts.describe(),
    )
    run_asgi(HttpGuard(app, config), host, port, settings, on_shutdown)
