"""The `--users-file/--tls-cert/--tls-key/--allowed-host` options of both `serve` commands.

Each option overrides its environment variable (docs/security.md); defined once here so
`fraudstream ksql serve` and `fraudstream registry serve` take them the same way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from services.common.settings import HttpServerSettings, get_settings

USERS_FILE = typer.Option(
    None,
    "--users-file",
    help="turn on HTTP Basic auth with this Jetty-style realm file of 'user: password[,role...]' "
    "lines (password plaintext or MD5:<hex>) (env FRAUDSTREAM_HTTP_USERS_FILE)",
)
TLS_CERT = typer.Option(
    None,
    "--tls-cert",
    help="serve HTTPS (HTTP/2 by ALPN) with this PEM certificate chain "
    "(env FRAUDSTREAM_HTTP_TLS_CERTFILE)",
)
TLS_KEY = typer.Option(
    None, "--tls-key", help="the certificate's PEM private key (env FRAUDSTREAM_HTTP_TLS_KEYFILE)"
)
ALLOWED_HOST = typer.Option(
    [],
    "--allowed-host",
    help="also accept this Host name (repeatable; '*' = any); loopback names are always "
    "accepted (env FRAUDSTREAM_HTTP_ALLOWED_HOSTS, comma-separated)",
)


def http_settings(
    users_file: Path | None, tls_cert: Path | None, tls_key: Path | None, allowed: list[str]
) -> HttpServerSettings:
    """The environment's HTTP settings with the command line's options on top."""
    settings = get_settings().http_server
    changes: dict[str, object] = {}
    if users_file is not None:
        changes["users_file"] = users_file
    if tls_cert is not None:
        changes["tls_certfile"] = tls_cert
    if tls_key is not None:
        changes["tls_keyfile"] = tls_key
    if allowed:
        changes["allowed_hosts"] = (*settings.allowed_hosts, *allowed)
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
