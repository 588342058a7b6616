"""Serving the console: hypercorn behind the project's HTTP guard, like the two other servers.

The guard (services/common/http/guard.py) checks the Host header (no DNS rebinding from a web
page), takes request bodies only as `application/json` (a cross-site form cannot post, and a
cross-site script must first pass a CORS preflight that is never granted) and bounds their size
and arrival time; with FRAUDSTREAM_HTTP_USERS_FILE it asks for HTTP Basic credentials, and the
analyst's verdicts are then signed with the user name instead of a name typed into the page.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.applications import Starlette

from services.common.http.guard import ApiPolicy, GuardConfig
from services.common.http.serving import guard_config, serve_api
from services.common.settings import get_settings
from services.console.app import MAX_BODY_BYTES, build_app
from services.console.config import ConsoleConfig


def console_error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode()


CONSOLE_POLICY = ApiPolicy(
    name="console",
    error_body=console_error_body,
    error_media_type="application/json",
    body_media_types=frozenset({"application/json"}),
    max_body_bytes=MAX_BODY_BYTES,
    realm="fraudstream-console",
    public_paths=frozenset({"/healthz"}),
)


def console_url(host: str, port: int) -> str:
    scheme = "https" if get_settings().http_server.tls else "http"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}/"


def guarded_app(
    host: str, port: int, config: ConsoleConfig | None = None
) -> tuple[Starlette, GuardConfig]:
    """The console app and its guard's configuration for `host:port` (settings checked)."""
    settings = get_settings().http_server
    guard = guard_config(CONSOLE_POLICY, settings, host, port, console_url(host, port))
    return build_app(config), guard


def serve(
    host: str,
    port: int,
    config: ConsoleConfig | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; `ready(url)` is called once the settings are checked."""
    app, guard = guarded_app(host, port, config)
    if ready is not None:
        ready(console_url(host, port))
    serve_api(app, guard, host, port, get_settings().http_server, app.state.console.end_streams)
