"""Serving an ASGI app with hypercorn: HTTP/1.1 and HTTP/2 cleartext (prior knowledge) on one port.

Both the Schema Registry and the KSQL server use this, so they start, log and stop the same way.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config


def hypercorn_config(host: str, port: int, access_log: bool = False) -> Config:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.keep_alive_timeout = 75
    config.graceful_timeout = 5
    if access_log:
        config.accesslog = "-"
    return config


def run_asgi(app: Any, host: str, port: int, on_shutdown: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully.

    `on_shutdown` runs on the event loop when the signal arrives, before hypercorn waits (up to
    `graceful_timeout`) for open connections: a server with endless streams ends them there."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stopping() -> None:
            if on_shutdown is not None and not stop.is_set():
                on_shutdown()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping)
        await serve(app, hypercorn_config(host, port), shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(main())
