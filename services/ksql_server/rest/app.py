"""ksqlDB's REST API as a Starlette app, on top of any `KsqlEngine`.

This layer only reads requests, calls the engine and writes ksqlDB's JSON envelopes; it never
parses SQL. Every failure a client can cause becomes a ksqlDB error object with a 4xx status, and
anything unexpected a `generic_error` 50000 without a stack trace (the trace goes to the log), so
no request can take the server down or leak its insides.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.ksql_server.engine_api import KsqlEngine, KsqlStatementError, PushQuery
from services.ksql_server.rest import streams
from services.ksql_server.rest.errors import (
    ERROR_BAD_REQUEST,
    ERROR_MAX_PUSH_QUERIES_EXCEEDED,
    ERROR_NOT_ACCEPTABLE,
    ERROR_NOT_FOUND,
    ERROR_SERVER,
    BadRequest,
    generic_error,
    reject_lone_surrogates,
    release_frames,
    statement_error,
)
from services.ksql_server.rest.inserts import InsertsStream
from services.ksql_server.rest.properties import check_overrides, check_property

log = logging.getLogger(__name__)

KSQLDB_VERSION = "0.29.0"
"""The ksqlDB release whose REST API this server follows (reported by /info)."""

MAX_BODY_BYTES = 16 * 1024 * 1024
KAFKA_CHECK_TTL_S = 5.0


class KsqlJSONResponse(JSONResponse):
    """JSON the way ksqlDB writes it, tolerant of values json.dumps refuses (Decimal, NaN)."""

    def render(self, content: Any) -> bytes:
        return streams.dumps(content).encode("utf-8")


CLOSE_TIMEOUT_S = 2.0
"""The most a finished or abandoned response waits for its query to close (thread ended)."""
ERROR_SHUTTING_DOWN = 50300


class QueryResponse(StreamingResponse):
    """A streamed query result that always closes its query, however the response ends.

    Over HTTP/2 each chunk is given a chance to leave as its own DATA frame before the next is
    queued (hypercorn would otherwise merge them, and line-per-frame clients would break).
    Starlette ends the response when the client disconnects (HTTP/1.1 connection closed, HTTP/2
    stream reset); `open_streams` lets a shutdown end it as well (`cancel`).
    """

    def __init__(
        self,
        query: PushQuery,
        content: AsyncIterator[bytes],
        media_type: str,
        open_streams: set[QueryResponse] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type)
        self.query = query
        self.http2 = False
        self.open_streams = open_streams if open_streams is not None else set()
        self._scope = anyio.CancelScope()

    def cancel(self) -> None:
        """End the response now (server shutdown); its query is closed on the way out."""
        self._scope.cancel()

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for chunk in self.body_iterator:
            body = chunk if isinstance(chunk, bytes) else str(chunk).encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})
            if self.http2:
                for _ in range(4):
                    await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.http2 = scope.get("http_version") == "2"
        self.open_streams.add(self)
        try:
            with self._scope:
                await super().__call__(scope, receive, send)
        except (OSError, ClientDisconnect):
            log.debug("client of query %s went away", self.query.query_id)
        finally:
            self.open_streams.discard(self)
            # Shielded: a cancelled response (client gone, shutdown) must still free its query.
            with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
                await _close_quietly(self.query)


async def _close_quietly(query: PushQuery) -> None:
    """Close a query once; the engine's close may be called again by the row pump."""
    if getattr(query, "_rest_closed", False):
        return
    object.__setattr__(query, "_rest_closed", True)
    try:
        await query.close()
    except Exception:
        log.exception("closing query %s failed", query.query_id)


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest saying what is wrong with it."""
    try:
        raw = await request.body()
    except ClientDisconnect as exc:
        raise BadRequest("client disconnected while sending the request") from exc
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"request body larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    reject_lone_surrogates(body)
    return body


def _string_field(body: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = body.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise BadRequest(f"field '{name}' must be a string")
            return value
    raise BadRequest(f"required field '{names[0]}' is missing")


def _properties_field(body: Mapping[str, Any], *names: str) -> dict[str, Any]:
    for name in names:
        value = body.get(name)
        if value is not None:
            if not isinstance(value, dict):
                raise BadRequest(f"field '{name}' must be a JSON object")
            return value
    return {}


Handler = Callable[[Request], Awaitable[Response]]


def guarded(handler: Handler) -> Handler:
    """Turn bad requests and engine failures into ksqlDB error envelopes."""

    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except BadRequest as exc:
            release_frames(exc)
            return generic_error(exc.error_code, exc.message)
        except KsqlStatementError as exc:
            response = statement_error(
                exc.error_code, exc.message, exc.statement_text, exc.entities
            )
            release_frames(exc)
            return response
        except Exception:
            # the details (which may quote the client's statement) go to the log only
            log.exception("%s %s failed", request.method, request.url.path)
            return generic_error(ERROR_SERVER, "internal error; the server log has the details")

    return wrapper


class KsqlRestApi:
    """The endpoints, bound to one engine; `routes()` hands them to Starlette."""

    def __init__(
        self,
        engine: KsqlEngine,
        keepalive_s: float = 5.0,
        kafka_check: Callable[[], bool] | None = None,
    ) -> None:
        self.engine = engine
        self.keepalive_s = keepalive_s
        self.kafka_check = kafka_check
        self._kafka_verdict: tuple[float, bool] | None = None
        self.kafka_cluster_id = str(getattr(engine, "kafka_cluster_id", "") or "")
        """Reported by /info; the server fills it in at start when the engine does not."""
        self.command_statuses: dict[str, dict[str, Any]] = {}
        self._execute_lock = asyncio.Lock()
        self.open_streams: set[QueryResponse] = set()
        self.stopping = False

    def begin_shutdown(self) -> None:
        """On SIGTERM, before the server drains its connections: refuse new queries, end every
        streaming response (each closes its query) and tell the engine's push queries to stop,
        so open streams, read or not, never hold the shutdown up."""
        self.stopping = True
        for response in list(self.open_streams):
            response.cancel()
        stop = getattr(self.engine, "stop_transient_queries", None)
        if stop is not None:
            stop()

    def routes(self) -> list[Route]:
        return [
            Route("/", self.root, methods=["GET"]),
            Route("/ksql", guarded(self.ksql), methods=["POST"]),
            Route("/query", guarded(self.query), methods=["POST"]),
            Route("/query-stream", guarded(self.query_stream), methods=["POST"]),
            Route("/inserts-stream", InsertsStream(self.engine), methods=["POST"]),
            Route("/close-query", guarded(self.close_query), methods=["POST"]),
            Route("/info", guarded(self.info), methods=["GET"]),
            Route("/healthcheck", guarded(self.healthcheck), methods=["GET"]),
            Route("/status", guarded(self.status_all), methods=["GET"]),
            Route("/status/{type}/{entity}/{action}", guarded(self.status_one), methods=["GET"]),
            Route("/clusterStatus", guarded(self.cluster_status), methods=["GET"]),
            Route(
                "/is_valid_property/{property}",
                guarded(self.is_valid_property),
                methods=["GET"],
            ),
        ]

    # -- statements ---------------------------------------------------------------------------

    async def ksql(self, request: Request) -> Response:
        body = await read_json_object(request)
        sql = _string_field(body, "ksql")
        properties = self._overrides(body, "streamsProperties")
        # One statement batch at a time, off the event loop: statements are ordered (like
        # ksqlDB's command topic) and a slow one never stalls the streaming queries.
        async with self._execute_lock:
            entities = await anyio.to_thread.run_sync(self.engine.execute, sql, properties)
        self._remember_statuses(entities)
        return KsqlJSONResponse(entities)

    def _remember_statuses(self, entities: list[dict[str, Any]]) -> None:
        for entity in entities:
            if isinstance(entity, dict) and entity.get("@type") == "currentStatus":
                command_id = entity.get("commandId")
                status = entity.get("commandStatus")
                if isinstance(command_id, str) and isinstance(status, dict):
                    self.command_statuses[command_id] = status

    # -- queries ------------------------------------------------------------------------------

    async def query(self, request: Request) -> Response:
        body = await read_json_object(request)
        sql = _string_field(body, "ksql", "sql")
        properties = self._overrides(body, "streamsProperties", "properties")
        query = await self._start_query(sql, properties)
        if isinstance(query, Response):
            return query
        lines = streams.legacy_query_lines(query, self.keepalive_s)
        return QueryResponse(query, lines, "application/json", self.open_streams)

    async def query_stream(self, request: Request) -> Response:
        body = await read_json_object(request)
        sql = _string_field(body, "sql", "ksql")
        properties = self._overrides(body, "properties", "streamsProperties")
        media_type = streams.choose_stream_format(request.headers.get("accept"))
        if media_type is None:
            return generic_error(
                ERROR_NOT_ACCEPTABLE,
                f"unsupported Accept header; use {streams.DELIMITED} or {streams.JSON}",
            )
        try:
            query = await self._start_query(sql, properties)
        except KsqlStatementError as exc:
            return generic_error(exc.error_code, exc.message)
        if isinstance(query, Response):
            return query
        chunks = (
            streams.json_array_chunks(query)
            if media_type == streams.JSON
            else streams.delimited_lines(query)
        )
        return QueryResponse(query, chunks, media_type, self.open_streams)

    async def _start_query(self, sql: str, properties: dict[str, Any]) -> PushQuery | Response:
        """The engine's query, or the answer when none may start: shutting down, or the cap
        (`ksql.max.push.queries`) reached, which ksqlDB answers with a generic_error 40003 on
        either endpoint."""
        if self.stopping:
            return generic_error(ERROR_SHUTTING_DOWN, "the server is shutting down")
        try:
            return await self.engine.start_query(sql, properties)
        except KsqlStatementError as exc:
            if exc.error_code == ERROR_MAX_PUSH_QUERIES_EXCEEDED:
                return generic_error(exc.error_code, exc.message)
            raise

    async def close_query(self, request: Request) -> Response:
        body = await read_json_object(request)
        query_id = _string_field(body, "queryId")
        if await self.engine.close_query(query_id):
            return Response(status_code=200)
        return generic_error(ERROR_BAD_REQUEST, f"No query with id {query_id}")

    # -- server state -------------------------------------------------------------------------

    def _server_properties(self) -> Mapping[str, Any]:
        return getattr(self.engine, "properties", None) or {}

    def _overrides(self, body: Mapping[str, Any], *names: str) -> dict[str, Any]:
        """The request's property overrides, refused (40000) when the server denies one."""
        properties = _properties_field(body, *names)
        check_overrides(properties, self._server_properties())
        return properties

    async def is_valid_property(self, request: Request) -> Response:
        name = request.path_params["property"]
        return KsqlJSONResponse(check_property(name, self._server_properties()))

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/info", status_code=302)

    async def info(self, request: Request) -> Response:
        info = {
            "version": KSQLDB_VERSION,
            "kafkaClusterId": self.kafka_cluster_id,
            "ksqlServiceId": self.engine.service_id,
            "serverStatus": "RUNNING",
        }
        return KsqlJSONResponse({"KsqlServerInfo": info})

    async def healthcheck(self, request: Request) -> Response:
        engine_ok = await self._engine_healthy()
        kafka_ok = await self._kafka_healthy()
        details = {
            "metastore": {"isHealthy": engine_ok},
            "kafka": {"isHealthy": kafka_ok},
            "commandRunner": {"isHealthy": engine_ok},
        }
        healthy = engine_ok and kafka_ok
        return KsqlJSONResponse(
            {"isHealthy": healthy, "details": details}, status_code=200 if healthy else 503
        )

    async def _kafka_healthy(self) -> bool:
        """The broker check (run off the loop), remembered for a few seconds: health probes
        come often and each check opens a connection."""
        if self.kafka_check is None:
            return True
        now = time.monotonic()
        if self._kafka_verdict is None or now - self._kafka_verdict[0] > KAFKA_CHECK_TTL_S:
            try:
                ok = bool(await anyio.to_thread.run_sync(self.kafka_check))
            except Exception:
                log.exception("Kafka health check failed")
                ok = False
            self._kafka_verdict = (now, ok)
        return self._kafka_verdict[1]

    async def _engine_healthy(self) -> bool:
        """The engine's own verdict when it offers one (`healthy()`), else: it is serving."""
        check = getattr(self.engine, "healthy", None)
        if check is None:
            return True
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            return bool(result)
        except Exception:
            log.exception("health check failed")
            return False

    async def status_all(self, request: Request) -> Response:
        statuses = {cid: status.get("status") for cid, status in self.command_statuses.items()}
        return KsqlJSONResponse({"commandStatuses": statuses})

    async def status_one(self, request: Request) -> Response:
        params = request.path_params
        command_id = f"{params['type']}/{params['entity']}/{params['action']}"
        status = self.command_statuses.get(command_id)
        if status is None:
            return generic_error(ERROR_NOT_FOUND, f"Command not found: {command_id}")
        return KsqlJSONResponse(status)

    async def cluster_status(self, request: Request) -> Response:
        host = f"{request.url.hostname or 'localhost'}:{request.url.port or 8088}"
        now_ms = int(time.time() * 1000)
        entry = {
            "hostAlive": True,
            "lastStatusUpdateMs": now_ms,
            "activeStandbyPerQuery": {},
            "hostStoreLags": {"stateStoreLags": {}, "updateTimeMs": now_ms},
        }
        return KsqlJSONResponse({"clusterStatus": {host: entry}})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return generic_error(ERROR_NOT_FOUND, f"no such endpoint: {request.url.path}")
    if status == 405:
        return generic_error(40500, f"method {request.method} not allowed on {request.url.path}")
    return generic_error(status * 100, str(getattr(exc, "detail", "error")))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return generic_error(ERROR_SERVER, "internal server error")


class DrainRequestBody:
    """ASGI middleware: read what is left of a request body before the response ends.

    An answer that never looked at the body (404, 405) would otherwise finish the HTTP/2 stream
    while the client is still sending DATA frames for it, and hypercorn drops the whole
    connection on the late frames (KeyError on the closed stream), taking the client's other
    streams with it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def tracking_receive() -> Any:
            nonlocal complete
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                complete = True
            return message

        async def draining_send(message: Any) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                drained = 0
                while not complete and drained <= MAX_BODY_BYTES:
                    drained += len((await tracking_receive()).get("body", b""))
            await send(message)

        await self.app(scope, tracking_receive, draining_send)


def create_app(
    engine: KsqlEngine,
    keepalive_s: float = 5.0,
    kafka_check: Callable[[], bool] | None = None,
) -> Starlette:
    """The ASGI app; the caller owns the engine (starts it before, closes it after serving).

    `kafka_check` (blocking, → bool) backs the `kafka` part of /healthcheck."""
    api = KsqlRestApi(engine, keepalive_s=keepalive_s, kafka_check=kafka_check)
    app = Starlette(
        routes=api.routes(),
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.add_middleware(DrainRequestBody)
    app.state.api = api
    return app
