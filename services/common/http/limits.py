"""Request-body rules enforced before and while an app reads a body.

- Content type: a body must declare a type the API takes. The three types a browser may send
  cross-origin without a CORS preflight (`text/plain`, `application/x-www-form-urlencoded`,
  `multipart/form-data`) and a missing type are exactly what a hostile web page can send, so
  refusing them (415) stops cross-site request forgery against a server on the analyst's machine.
- Size: a declared `Content-Length` over the limit is refused before a byte is read; a body
  without a length (chunked, HTTP/2) is counted as it arrives and cut off at the limit (413).
- Time: the whole body must arrive within a deadline, so a client trickling bytes cannot hold a
  request open for ever (408).

`BodyReader` wraps the ASGI `receive` channel: when a limit is hit it records why and tells the
app the client went away, and the guard answers with the recorded status instead of the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from starlette.types import Message, Receive, Scope

from services.common.errors import FraudstreamError

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def media_type(header: str | None) -> str:
    """`Application/JSON; charset=utf-8` → `application/json` ('' when absent)."""
    return (header or "").split(";", 1)[0].strip().lower()


def content_type_accepted(header: str | None, accepted: Iterable[str]) -> bool:
    return media_type(header) in accepted


def declared_length(header: str | None) -> int | None:
    """Content-Length as a number, None when absent or not a plain decimal."""
    if header is None or not header.strip().isdigit():
        return None
    return int(header.strip())


def may_have_body(scope: Scope, headers: dict[str, str]) -> bool:
    """False only when the request says it has no body (`Content-Length: 0`, or HTTP/1 with
    neither a length nor chunked encoding), so a bodiless PATCH still gets the app's 405."""
    length = declared_length(headers.get("content-length"))
    if length is not None:
        return length > 0
    return "transfer-encoding" in headers or scope.get("http_version") not in ("1.0", "1.1")


class BodyLimitExceeded(FraudstreamError):
    """A request body over the byte limit (413) or too slow to arrive (408)."""

    default_code = "body_too_large"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, code="body_too_large" if status == 413 else "body_timeout")
        self.status = status
        self.message = message


class BodyReader:
    """A `receive` that counts body bytes against `max_bytes` and waits at most until
    `deadline` (an event-loop `time()` value) for the rest of the body.

    Once the body is complete the original channel is passed through untouched (apps wait on it
    for `http.disconnect`). After a limit is hit, `failure` says which and every later call
    answers `http.disconnect`.
    """

    def __init__(self, receive: Receive, max_bytes: int | None, deadline: float | None) -> None:
        self._receive = receive
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.received = 0
        self.complete = False
        self.failure: BodyLimitExceeded | None = None

    async def __call__(self) -> Message:
        if self.failure is not None:
            return {"type": "http.disconnect"}
        if self.complete:
            return await self._receive()
        try:
            message = await self._next()
        except BodyLimitExceeded as exc:
            self.failure = exc
            return {"type": "http.disconnect"}
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.complete = True
        return message

    async def _next(self) -> Message:
        if self.deadline is None:
            message = await self._receive()
        else:
            try:  # timeout_at, not wait_for: no extra task per chunk
                async with asyncio.timeout_at(self.deadline):
                    message = await self._receive()
            except TimeoutError:
                raise BodyLimitExceeded(408, "timed out reading the request body") from None
        self.received += len(message.get("body", b""))
        if self.max_bytes is not None and self.received > self.max_bytes:
            raise BodyLimitExceeded(413, f"request body larger than {self.max_bytes} bytes")
        return message

    async def drain(self) -> None:
        """Read and drop the rest of the body (within the limits), so an answer given without
        reading it does not end an HTTP/2 stream the client is still sending on."""
        while not self.complete and self.failure is None:
            message: dict[str, Any] = dict(await self())
            if message["type"] == "http.disconnect":
                return
