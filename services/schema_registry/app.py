"""The HTTP face of the registry: Confluent's REST routes, JSON in and out, errors as
`{"error_code": N, "message": "..."}`.

This module only parses requests and shapes responses; `registry.Registry` decides. Writes run
in a worker thread (they wait for Kafka), and a write that reaches a follower is forwarded to the
leader. Every failure, including unknown routes, wrong methods, malformed JSON and oversize
bodies, is answered in JSON so clients always get an error code, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.common.http import clients as http_clients
from services.schema_registry import errors, schemas
from services.schema_registry.kafka_log import KafkaLog, NotLeader
from services.schema_registry.registry import Registry

log = logging.getLogger("fraudstream.schema_registry.http")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
MAX_BODY_BYTES = 4 * 1024 * 1024
FORWARDED_HEADER = "x-fraudstream-registry-forwarded"
LEADER_WAIT_S = 15.0

Handler = Callable[[Request], Awaitable[Any]]


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type=CONTENT_TYPE)


def error_response(exc: errors.RegistryError) -> Response:
    return json_response({"error_code": exc.error_code, "message": exc.message}, exc.status)


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    """Confluent accepts true/false in any case (the Python client sends `False`)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise errors.bad_request(f"query parameter {name}={raw!r} is not true or false")


def page(request: Request, items: list[Any]) -> list[Any]:
    """Confluent's `offset`/`limit` pagination of list answers (limit -1: no limit)."""
    try:
        offset = int(request.query_params.get("offset", "0"))
        limit = int(request.query_params.get("limit", "-1"))
    except ValueError:
        raise errors.bad_request("offset and limit must be integers") from None
    items = items[max(offset, 0) :]
    return items if limit < 0 else items[:limit]


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; 413 when larger than MAX_BODY_BYTES, 400 if not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise errors.RegistryError(413, 413, f"request body larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise errors.RegistryError(413, 413, f"request body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    request.state.raw_body = raw  # kept for forwarding the request to the leader
    if not raw.strip():
        raise errors.bad_request("request body is empty; expected a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"malformed JSON in request body: {exc}") from None
    except RecursionError:  # C json recurses per level: a deeply nested body ends here
        raise errors.bad_request("request body nests too deeply") from None
    if not isinstance(body, dict):
        raise errors.bad_request("request body must be a JSON object")
    return body


class RegistryApp:
    """Routes bound to one `Registry` (and its Kafka log, when there is one)."""

    def __init__(self, registry: Registry, kafka: KafkaLog | None = None) -> None:
        self.registry = registry
        self.kafka = kafka
        self._http: httpx.AsyncClient | None = None

    # -- plumbing -----------------------------------------------------------------------------

    def endpoint(
        self, handler: Handler, *, wait_ready: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                if wait_ready:
                    self._check_ready()
                result = await handler(request)
                return result if isinstance(result, Response) else json_response(result)
            except errors.RegistryError as exc:
                level = logging.WARNING if exc.status >= 500 else logging.DEBUG
                log.log(
                    level, "%s %s -> %s %s", request.method, request.url.path, exc.error_code, exc
                )
                return error_response(exc)
            except Exception as exc:
                log.exception("unexpected failure on %s %s", request.method, request.url.path)
                return error_response(errors.store_error(f"{type(exc).__name__}: {exc}"))

        return run

    def _check_ready(self) -> None:
        if self.kafka is None:
            return
        if self.kafka.failure:
            raise errors.store_error(self.kafka.failure)
        if not self.kafka.ready.is_set():
            raise errors.not_ready()

    async def write(self, request: Request, operation: Callable[[], Any]) -> Any:
        """Run a write on this instance if it is the leader, else forward it to the leader."""
        deadline = time.monotonic() + LEADER_WAIT_S
        while True:
            try:
                return await run_in_threadpool(operation)
            except NotLeader as exc:
                leader = exc.leader_url
                if leader and self.kafka is not None and leader != self.kafka.advertised_url:
                    if request.headers.get(FORWARDED_HEADER):
                        raise errors.unknown_leader() from None
                    return await self._forward(request, leader)
                if time.monotonic() > deadline:
                    raise errors.unknown_leader() from None
                await asyncio.sleep(0.2)

    async def _forward(self, request: Request, leader: str) -> Response:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=30.0, verify=http_clients.verify(service="schema-registry")
            )
        body = getattr(request.state, "raw_body", b"")
        # the leader checks the caller's own credentials, as Confluent's forwarding does
        caller_auth = {"authorization": request.headers.get("authorization", "")}
        try:
            answer = await self._http.request(
                request.method,
                leader.rstrip("/") + request.url.path,
                params=request.query_params,
                content=body,
                headers={
                    "content-type": CONTENT_TYPE,
                    FORWARDED_HEADER: "1",
                    **(caller_auth if caller_auth["authorization"] else {}),
                },
            )
        except httpx.HTTPError as exc:
            if self.kafka is not None:
                self.kafka.forget_leader()
            raise errors.forwarding_error(f"{leader}: {exc}") from None
        return Response(answer.content, status_code=answer.status_code, media_type=CONTENT_TYPE)

    # -- handlers -----------------------------------------------------------------------------

    async def root(self, request: Request) -> Any:
        return {}

    async def schema_types(self, request: Request) -> Any:
        return list(schemas.SUPPORTED_TYPES)

    async def schema_by_id(self, request: Request) -> Any:
        return self.registry.get_schema(
            request.path_params["schema_id"], request.query_params.get("format")
        )

    async def raw_schema_by_id(self, request: Request) -> Any:
        # The stored text is the schema already (JSON, or .proto text): sent as it is.
        return Response(
            self.registry.schema_by_id(request.path_params["schema_id"]).schema,
            media_type=CONTENT_TYPE,
        )

    async def id_referenced_by(self, request: Request) -> Any:
        return page(request, self.registry.id_referenced_by(request.path_params["schema_id"]))

    def _usages(self, request: Request) -> list[Any]:
        """Where an id is used, filtered by the optional `subject` parameter."""
        usages = self.registry.id_usages(
            request.path_params["schema_id"], query_bool(request, "deleted")
        )
        subject = request.query_params.get("subject")
        return [e for e in usages if subject is None or e.subject == subject]

    async def id_versions(self, request: Request) -> Any:
        usages = self._usages(request)
        return page(request, [{"subject": e.subject, "version": e.version} for e in usages])

    async def id_subjects(self, request: Request) -> Any:
        return page(request, sorted({e.subject for e in self._usages(request)}))

    async def subjects(self, request: Request) -> Any:
        prefix = request.query_params.get("subjectPrefix", "")
        return page(request, self.registry.subjects(prefix, query_bool(request, "deleted")))

    async def subject_post(self, request: Request) -> Any:
        body = await read_json(request)
        subject = request.path_params["subject"]
        return self.registry.lookup(
            subject, body, query_bool(request, "normalize"), query_bool(request, "deleted")
        )

    async def subject_delete(self, request: Request) -> Any:
        subject, permanent = request.path_params["subject"], query_bool(request, "permanent")
        return await self.write(request, lambda: self.registry.delete_subject(subject, permanent))

    async def versions_get(self, request: Request) -> Any:
        subject = request.path_params["subject"]
        return page(request, self.registry.versions(subject, query_bool(request, "deleted")))

    async def versions_post(self, request: Request) -> Any:
        body = await read_json(request)
        subject, normalize = request.path_params["subject"], query_bool(request, "normalize")
        return await self.write(request, lambda: self.registry.register(subject, body, normalize))

    async def version_get(self, request: Request) -> Any:
        p = request.path_params
        return self.registry.get_version(
            p["subject"],
            p["version"],
            query_bool(request, "deleted"),
            request.query_params.get("format"),
        )

    async def version_schema(self, request: Request) -> Any:
        p = request.path_params
        text = self.registry.version_schema(
            p["subject"], p["version"], query_bool(request, "deleted")
        )
        return Response(text, media_type=CONTENT_TYPE)

    async def version_referenced_by(self, request: Request) -> Any:
        p = request.path_params
        return page(request, self.registry.referenced_by(p["subject"], p["version"]))

    async def version_delete(self, request: Request) -> Any:
        p, permanent = request.path_params, query_bool(request, "permanent")
        return await self.write(
            request, lambda: self.registry.delete_version(p["subject"], p["version"], permanent)
        )

    async def config(self, request: Request) -> Any:
        subject = request.path_params.get("subject")
        if request.method == "GET":
            return self.registry.get_config(subject, query_bool(request, "defaultToGlobal"))
        if request.method == "PUT":
            body = await read_json(request)
            return await self.write(request, lambda: self.registry.put_config(subject, body))
        return await self.write(request, lambda: self.registry.delete_config(subject))

    async def mode(self, request: Request) -> Any:
        subject = request.path_params.get("subject")
        if request.method == "GET":
            return self.registry.get_mode(subject, query_bool(request, "defaultToGlobal"))
        if request.method == "PUT":
            body = await read_json(request)
            return await self.write(request, lambda: self.registry.put_mode(subject, body))
        if subject is None:
            raise errors.RegistryError(405, 405, "HTTP 405 Method Not Allowed")
        return await self.write(request, lambda: self.registry.delete_mode(subject))

    async def compatibility(self, request: Request) -> Any:
        body = await read_json(request)
        p = request.path_params
        return self.registry.test_compatibility(
            p["subject"],
            p.get("version"),
            body,
            query_bool(request, "normalize"),
            query_bool(request, "verbose"),
        )

    async def contexts(self, request: Request) -> Any:
        return ["."]

    async def leader(self, request: Request) -> Any:
        """Not Confluent's: which instance writes (for operators and the multi-instance tests)."""
        if self.kafka is None:
            return {"leader": None, "is_leader": True}
        url = await run_in_threadpool(self.kafka.leader_url)
        return {"leader": url, "is_leader": self.kafka.is_leader}

    async def all_schemas(self, request: Request) -> Any:
        """GET /schemas: every (subject, version), optionally only the latest of each subject."""
        prefix = request.query_params.get("subjectPrefix", "")
        deleted, latest_only = query_bool(request, "deleted"), query_bool(request, "latestOnly")
        out = []
        for subject in self.registry.subjects(prefix, deleted):
            versions = self.registry.versions(subject, deleted)
            for number in versions[-1:] if latest_only else versions:
                out.append(self.registry.get_version(subject, str(number), deleted))
        return out

    # -- assembly -----------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        e = self.endpoint
        ids = "/schemas/ids/{schema_id:int}"
        # `:path`: a subject may hold a `/` (sent as %2F: Protobuf references are subjects named
        # after files, `acme/money.proto`); the longer patterns come first so that
        # `/subjects/{subject}` never swallows `.../versions/1`.
        subject = "/subjects/{subject:path}"
        version = subject + "/versions/{version}"
        compat = "/compatibility/subjects/{subject:path}/versions"
        return [
            Route("/", e(self.root), methods=["GET"]),
            Route("/schemas/types", e(self.schema_types), methods=["GET"]),
            Route(ids, e(self.schema_by_id), methods=["GET"]),
            Route(ids + "/schema", e(self.raw_schema_by_id), methods=["GET"]),
            Route(ids + "/versions", e(self.id_versions), methods=["GET"]),
            Route(ids + "/subjects", e(self.id_subjects), methods=["GET"]),
            Route(ids + "/referencedby", e(self.id_referenced_by), methods=["GET"]),
            Route("/subjects", e(self.subjects), methods=["GET"]),
            Route(version + "/schema", e(self.version_schema), methods=["GET"]),
            Route(version + "/referencedby", e(self.version_referenced_by), methods=["GET"]),
            Route(version, e(self.version_get), methods=["GET"]),
            Route(version, e(self.version_delete), methods=["DELETE"]),
            Route(subject + "/versions", e(self.versions_get), methods=["GET"]),
            Route(subject + "/versions", e(self.versions_post), methods=["POST"]),
            Route(subject, e(self.subject_post), methods=["POST"]),
            Route(subject, e(self.subject_delete), methods=["DELETE"]),
            Route("/config", e(self.config), methods=["GET", "PUT", "DELETE"]),
            Route("/config/{subject:path}", e(self.config), methods=["GET", "PUT", "DELETE"]),
            Route("/mode", e(self.mode), methods=["GET", "PUT"]),
            Route("/mode/{subject:path}", e(self.mode), methods=["GET", "PUT", "DELETE"]),
            Route(compat + "/{version}", e(self.compatibility), methods=["POST"]),
            Route(compat, e(self.compatibility), methods=["POST"]),
            Route("/contexts", e(self.contexts), methods=["GET"]),
            Route("/schemas", e(self.all_schemas), methods=["GET"]),
            Route("/fraudstream/leader", e(self.leader), methods=["GET"]),
        ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and wrong methods, answered like Confluent's Jersey server does."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    phrase = {404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error")
    return json_response({"error_code": status, "message": f"HTTP {status} {phrase}"}, status)


class StripTrailingSlash:
    """Serve `/config/`, `/subjects/` and the like as their forms without the slash.

    Some clients send the trailing slash; Starlette would answer with a 307 redirect and an
    empty body, which a client that does not follow redirects (or re-sends a PUT body) reads
    as a failure. Confluent's Jersey server serves both forms."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope.get("type") == "http" and len(path) > 1 and path.endswith("/"):
            raw = scope.get("raw_path")
            scope = dict(scope, path=path.rstrip("/") or "/")
            if isinstance(raw, bytes):
                scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


def create_app(registry: Registry, kafka: KafkaLog | None = None) -> Starlette:
    """The ASGI app; `kafka` is None for a registry kept only in memory (unit tests)."""
    routes = RegistryApp(registry, kafka).routes()
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        middleware=[Middleware(StripTrailingSlash)],
    )
