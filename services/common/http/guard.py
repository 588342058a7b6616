"""`HttpGuard`: the ASGI middleware both HTTP servers are wrapped in before they are served.

It checks every request, in this order, before the app sees it:

1. `Host` is one the server answers to (DNS rebinding) → 403 otherwise;
2. HTTP Basic credentials, when a users file is configured, except on the API's public paths
   (ksqlDB leaves /healthcheck open) → 401 with `WWW-Authenticate`, or 403 for a user without
   an allowed role;
3. a POST/PUT/PATCH declares a body type the API takes → 415 (stops cross-site form posts);
4. a declared Content-Length within the API's limit → 413;

and then, while the app reads the body, counts its bytes (413) and bounds the time it takes to
arrive (408). Each refusal is written in the API's own error shape (`ApiPolicy.error_body`), so
ksqlDB's and Confluent's clients read it as they read any other error. The apps themselves are
not changed: other code keeps owning the routes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.http.auth import BasicAuthenticator
from services.common.http.hosts import HostAllowList
from services.common.http.limits import (
    BODY_METHODS,
    BodyLimitExceeded,
    BodyReader,
    content_type_accepted,
    declared_length,
    may_have_body,
)
from services.common.settings import HttpServerSettings

log = logging.getLogger("fraudstream.http")

ErrorBody = Callable[[int, str], bytes]
"""(HTTP status, message) → the response body in the API's error shape."""


@dataclass(frozen=True)
class ApiPolicy:
    """What one API takes: its error shape, body types, body limit and special paths."""

    name: str
    error_body: ErrorBody
    error_media_type: str
    body_media_types: frozenset[str]
    """Request body types accepted on POST/PUT/PATCH (lower case, no parameters)."""
    max_body_bytes: int
    realm: str
    """Sent in `WWW-Authenticate: Basic realm=...`."""
    public_paths: frozenset[str] = frozenset()
    """Answered without credentials (health probes, as the Confluent server does)."""
    streaming_paths: frozenset[str] = frozenset()
    """Bodies the app reads as an open-ended stream and bounds per item itself: no total size
    limit and no whole-body deadline here."""
    untyped_body_paths: frozenset[str] = frozenset()
    """Paths where a missing Content-Type is tolerated (a well-known client sends none); the
    browser's cross-origin types are still refused."""


@dataclass
class GuardConfig:
    """A policy bound to one server's settings."""

    policy: ApiPolicy
    hosts: HostAllowList
    authenticator: BasicAuthenticator | None = None
    body_timeout_s: float | None = 60.0
    stats: dict[int, int] = field(default_factory=dict)
    """Refusals by status since start (for tests and operators)."""

    @classmethod
    def from_settings(
        cls, policy: ApiPolicy, settings: HttpServerSettings, bind_host: str, *own_names: str
    ) -> GuardConfig:
        """`own_names`: the host names the server's own URL uses (always allowed)."""
        authenticator = (
            BasicAuthenticator.from_file(settings.users_file, settings.auth_roles)
            if settings.users_file is not None
            else None
        )
        hosts = HostAllowList(bind_host, [*settings.allowed_hosts, *own_names])
        return cls(policy, hosts, authenticator, settings.body_timeout_s)


class HttpGuard:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, config: GuardConfig) -> None:
        self.app = app
        self.config = config
        self.policy = config.policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # neither API has one; refuse before routing
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path: str = scope.get("path", "")
        streaming = path in self.policy.streaming_paths
        deadline = (
            None
            if streaming or self.config.body_timeout_s is None
            else asyncio.get_running_loop().time() + self.config.body_timeout_s
        )
        reader = BodyReader(receive, None if streaming else self.policy.max_body_bytes, deadline)
        refusal = self._refusal(scope, headers, path, streaming)
        if refusal is not None:
            status, message, extra = refusal
            if status != 413:
                await reader.drain()
            await self._reject(send, status, message, extra)
            return
        await self._run(scope, reader, send)

    def _refusal(
        self, scope: Scope, headers: dict[str, str], path: str, streaming: bool
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """(status, message, extra headers) when the request must not reach the app."""
        host = headers.get("host")
        if not self.config.hosts.allows(host):
            allowed = self.config.hosts.describe()
            log.warning("refused Host %r on %s (allowed: %s)", host, path, allowed)
            return 403, f"Host '{host or ''}' is not allowed", []
        authenticator = self.config.authenticator
        if authenticator is not None and path not in self.policy.public_paths:
            user = authenticator.authenticate(headers.get("authorization"))
            if user is None:
                challenge = f'Basic realm="{self.policy.realm}"'.encode()
                return 401, "Unauthorized", [(b"www-authenticate", challenge)]
            if not authenticator.permitted(user):
                return 403, "Forbidden", []
            scope.setdefault("state", {})["user"] = user.name
        if scope.get("method", "GET") in BODY_METHODS:
            content_type = headers.get("content-type")
            if content_type is None:
                refused = (
                    may_have_body(scope, headers) and path not in self.policy.untyped_body_paths
                )
            else:
                refused = not content_type_accepted(content_type, self.policy.body_media_types)
            if refused:
                accepted = ", ".join(sorted(self.policy.body_media_types))
                return (
                    415,
                    f"Unsupported Media Type '{content_type or '(none)'}'; send one of: {accepted}",
                    [],
                )
        length = declared_length(headers.get("content-length"))
        if not streaming and length is not None and length > self.policy.max_body_bytes:
            return 413, f"request body larger than {self.policy.max_body_bytes} bytes", []
        return None

    async def _run(self, scope: Scope, reader: BodyReader, send: Send) -> None:
        """Call the app; if the body broke a limit, answer that instead of what the app says."""
        started = False
        replaced = False

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start" and reader.failure is not None:
                replaced = True
                await self._reject(send, reader.failure.status, reader.failure.message, [])
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, reader, guarded_send)
        if reader.failure is not None and not started and not replaced:
            await self._reject(send, reader.failure.status, reader.failure.message, [])

    async def _reject(
        self,
        send: Send,
        status: int,
        message: str,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        self.config.stats[status] = self.config.stats.get(status, 0) + 1
        body = self.policy.error_body(status, message)
        headers = [
            (b"content-type", self.policy.error_media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (the first of repeated ones)."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def protect(
    app: ASGIApp, policy: ApiPolicy, settings: HttpServerSettings, bind_host: str, *own_names: str
) -> HttpGuard:
    """`app` behind the guard, configured from a server's settings (reads the users file)."""
    return HttpGuard(app, GuardConfig.from_settings(policy, settings, bind_host, *own_names))


__all__ = ["ApiPolicy", "BodyLimitExceeded", "GuardConfig", "HttpGuard", "protect"]
