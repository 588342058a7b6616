"""`POST /inserts-stream`: rows in, one ack per row out, both streamed.

The request body is a first line `{"target": "<stream>"}` and then one JSON object per line; the
response is one ack per row (`{"status":"ok","seq":N}`), written as soon as that row is inserted,
so a client may send a row, wait for its ack and send the next (ksqlDB's Java client does) on one
HTTP/2 stream. The first failing row gets `{"status":"error","seq","error_code","message"}` and
ends the inserts, as in ksqlDB; the rest of the body is read and ignored. A row that is not
JSON gets ksqlDB's `Invalid JSON in inserts stream` ack; a line over `MAX_LINE_BYTES` gets an
error ack as well (or, when it is the first line, a 400 `generic_error`): the answer never ends
without saying why.

This is a raw ASGI app rather than a Starlette response: a streamed Starlette response reads the
request channel itself (to notice disconnects), which would swallow the rows still arriving.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.types import Receive, Scope, Send

from services.ksql_server.engine_api import KsqlEngine, KsqlStatementError
from services.ksql_server.rest import streams
from services.ksql_server.rest.errors import (
    ERROR_BAD_REQUEST,
    ERROR_SERVER,
    BadRequest,
    http_status,
    lone_surrogate_in,
)

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 16 * 1024 * 1024
INVALID_JSON_MESSAGE = "Invalid JSON in inserts stream"
"""ksqlDB's message (error_code 40000) for a row that does not parse."""


class InsertsStream:
    """The endpoint, bound to an engine."""

    def __init__(self, engine: KsqlEngine) -> None:
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accept = dict(scope.get("headers", [])).get(b"accept", b"").decode("latin-1")
        session = _Session(self.engine, send, streams.choose_stream_format(accept) or "")
        try:
            async for line in _lines(receive):
                await session.handle(line)
            await session.finish()
        except BadRequest as exc:
            await session.reject(exc.message, exc.error_code)
        except Exception:
            log.exception("inserts-stream failed")
            await session.reject("internal error; the server log has the details", ERROR_SERVER)


async def _lines(receive: Receive) -> Any:
    """Non-blank lines of the request body as they arrive (the last may lack its newline).

    The unfinished line is kept in one growing buffer and only the new chunk is searched for a
    newline, so a long line sent in many small chunks costs linear time, not quadratic."""
    buffer = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        start = 0
        newline = chunk.find(b"\n")
        while newline >= 0:
            buffer += chunk[start:newline]
            _check_line_length(buffer)
            line, buffer = bytes(buffer), bytearray()
            if line.strip():
                yield line
            start = newline + 1
            newline = chunk.find(b"\n", start)
        buffer += chunk[start:]
        _check_line_length(buffer)
    if bytes(buffer).strip():
        yield bytes(buffer)


def _check_line_length(line: bytearray) -> None:
    if len(line) > MAX_LINE_BYTES:
        raise BadRequest(f"a line of the request is longer than {MAX_LINE_BYTES} bytes")


class _Session:
    """One request: the target, the sequence number and what was already sent."""

    def __init__(self, engine: KsqlEngine, send: Send, media_type: str) -> None:
        self.engine = engine
        self.send = send
        self.json = media_type == streams.JSON
        self.media_type = streams.JSON if self.json else streams.DELIMITED
        self.target: str | None = None
        self.seq = 0
        self.started = False
        self.failed = False

    async def handle(self, line: bytes) -> None:
        if self.target is None:
            self.target = _target(line)
            await self._start(200)
            return
        if self.failed:
            return  # ksqlDB stops at the first failure; the rest is read and dropped
        ack = await self._insert(line)
        self.failed = ack["status"] != "ok"
        await self._ack(ack)

    async def _insert(self, line: bytes) -> dict[str, Any]:
        seq, self.seq = self.seq, self.seq + 1
        assert self.target is not None
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                return _error_ack(seq, ERROR_BAD_REQUEST, "each row must be a JSON object")
            if lone_surrogate_in(row):
                return _error_ack(seq, ERROR_BAD_REQUEST, "row contains a lone UTF-16 surrogate")
            await self.engine.insert_row(self.target, row)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return _error_ack(seq, ERROR_BAD_REQUEST, INVALID_JSON_MESSAGE)
        except KsqlStatementError as exc:
            return _error_ack(seq, exc.error_code, exc.message)
        except Exception:
            log.exception("insert into %s failed", self.target)
            return _error_ack(seq, ERROR_SERVER, "internal error; the server log has the details")
        return {"status": "ok", "seq": seq}

    async def _start(self, status: int, media_type: str | None = None) -> None:
        content_type = (media_type or self.media_type).encode()
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type)],
            }
        )
        self.started = True

    async def _ack(self, ack: dict[str, Any]) -> None:
        if self.json:
            prefix = "[" if ack["seq"] == 0 else ",\n"
            body = (prefix + streams.dumps(ack)).encode()
        else:
            body = (streams.dumps(ack) + "\n").encode()
        await self.send({"type": "http.response.body", "body": body, "more_body": True})

    async def finish(self) -> None:
        if self.target is None:
            raise BadRequest('request body is empty; expected {"target": "<stream>"} first')
        tail = (b"[]" if self.seq == 0 else b"]") + b"\n" if self.json else b""
        await self.send({"type": "http.response.body", "body": tail, "more_body": False})

    async def reject(self, message: str, error_code: int) -> None:
        """Before the answer started: a ksqlDB error object with its 4xx/5xx status. After: an
        error ack for the row that failed, then the end of the stream (as ksqlDB does)."""
        if self.started:
            if not self.failed:
                self.failed = True
                await self._ack(_error_ack(self.seq, error_code, message))
                self.seq += 1
            await self.finish()
            return
        error = {"@type": "generic_error", "error_code": error_code, "message": message}
        body = streams.dumps(error).encode()
        await self.send(
            {
                "type": "http.response.start",
                "status": http_status(error_code),
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


def _target(line: bytes) -> str:
    try:
        head = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"first line is not valid JSON: {exc}") from exc
    if not isinstance(head, dict) or not isinstance(head.get("target"), str):
        raise BadRequest('first line must be {"target": "<stream>"}')
    if lone_surrogate_in(head):
        raise BadRequest("first line contains a lone UTF-16 surrogate")
    return str(head["target"])


def _error_ack(seq: int, error_code: int, message: str) -> dict[str, Any]:
    return {"status": "error", "seq": seq, "error_code": error_code, "message": message}
