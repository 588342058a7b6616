"""The console's web app: the page, its JSON API and the live alert stream (Starlette).

Every route that talks to Kafka, the registry or the KSQL server runs in a worker thread, so a
slow service never stalls the event loop that feeds the live table. Request bodies are JSON
objects, bounded in size (the HTTP guard, 64 KiB) and depth, each field type-checked; a client
mistake is a 4xx with `{"error": ...}`. Responses carry a strict Content-Security-Policy (scripts,
styles and connections from this origin only, no inline script), so even a value that slipped
past the page's text-only rendering could not run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import FraudstreamError, ServiceUnavailable
from services.common.json_limits import loads_bounded
from services.console.alerts import AlertFeed
from services.console.backend import FeatureMissing, FeedbackDesk, budget_available, set_budget
from services.console.config import ConsoleConfig
from services.console.drift import DriftView
from services.console.health import HealthSampler
from services.console.ksql_proxy import EditorError, KsqlProxy
from services.console.models import (
    list_versions,
    load_stats,
    normal_ranges,
    plot_bytes,
    version_detail,
)
from services.model_registry.api import InvalidVersion
from services.model_registry.errors import ModelRegistryError
from services.model_registry.registry import VersionNotFound

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 4
SNAPSHOT_ALERTS = 500
KEEPALIVE_S = 15.0
TOP_FEATURES = 5
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class BadRequest(FraudstreamError):
    default_code = "bad_request"


@dataclass
class ConsoleState:
    """What the routes share: the background readers and the writers."""

    config: ConsoleConfig
    feed: AlertFeed
    health: HealthSampler
    ksql: KsqlProxy
    drift: DriftView
    feedback: FeedbackDesk
    _stats: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    @classmethod
    def build(cls, config: ConsoleConfig) -> ConsoleState:
        ksql = KsqlProxy(config.settings.ksql_url.rstrip("/"))
        return cls(
            config=config,
            feed=AlertFeed(config.alerts_topic, recent=config.recent_alerts),
            health=HealthSampler(config, ksql.persistent_queries),
            ksql=ksql,
            drift=DriftView(config),
            feedback=FeedbackDesk(config.feedback_topic),
        )

    def start(self) -> None:
        if self.config.start_readers:
            self.feed.start()
            self.health.start()

    def end_streams(self) -> None:
        """Ends every open alert stream (the server is shutting down)."""
        self.feed.end_streams()

    def stop(self) -> None:
        self.feed.stop()
        self.health.stop()
        self.feedback.close()

    def ranges(self, version: Any) -> dict[str, tuple[float, float]]:
        """Normal ranges of a version's features (cached; {} when unknown)."""
        if not isinstance(version, str):
            return {}
        if version not in self._stats:
            if len(self._stats) > 32:
                self._stats.clear()
            self._stats[version] = normal_ranges(load_stats(self.config.models_path, version))
        return self._stats[version]


# ---------------------------------------------------------------------- helpers
def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message[:500]}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest("request body too large")
    try:
        body = loads_bounded(raw, MAX_JSON_DEPTH)
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, limit: int, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"{name} is required")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(f"{name} must be text of at most {limit} characters")
    return value


def _number(body: dict[str, Any], name: str, default: float | None) -> float | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{name} must be a number")
    return float(value)


def _state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """Client mistakes → 400, unreachable services → 502, missing back ends → 501."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except (BadRequest, EditorError) as exc:
            return _error(400, str(exc))
        except FeatureMissing as exc:
            return _error(501, str(exc))
        except ServiceUnavailable as exc:
            return _error(502, str(exc))
        except (VersionNotFound, InvalidVersion) as exc:
            return _error(404, str(exc))
        except ModelRegistryError as exc:  # what cannot be done with this version
            return _error(409 if not isinstance(exc, ValueError) else 400, str(exc))
        except FraudstreamError as exc:
            status = 400 if isinstance(exc, ValueError) else 502
            return _error(status, str(exc))

    return wrapped


# ---------------------------------------------------------------------- alerts
def explanation(alert: dict[str, Any], ranges: dict[str, tuple[float, float]]) -> list[Any]:
    """The top features of an alert, largest share first, each with its normal range (from the
    record, else from the version's feature_stats.json) and whether its value lies outside."""
    items = alert.get("EXPLANATION")
    if not isinstance(items, list):
        return []
    rows = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("FEATURE"), str):
            continue
        feature = item["FEATURE"]
        low, high = item.get("NORMAL_LOW"), item.get("NORMAL_HIGH")
        if (low is None or high is None) and feature in ranges:
            low, high = ranges[feature]
        value = item.get("VALUE")
        outside = None
        if isinstance(value, int | float) and isinstance(low, int | float):
            outside = value < low or (isinstance(high, int | float) and value > high)
        rows.append(
            {
                "feature": feature,
                "share": item.get("SHARE"),
                "value": value,
                "low": low,
                "high": high,
                "outside": outside,
            }
        )
    rows.sort(key=lambda r: -(r["share"] if isinstance(r["share"], int | float) else 0.0))
    return rows[:TOP_FEATURES]


async def alerts_snapshot(request: Request) -> Response:
    return JSONResponse({"alerts": _state(request).feed.snapshot(SNAPSHOT_ALERTS)})


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def alerts_stream(request: Request) -> Response:
    feed = _state(request).feed
    sub = feed.subscribe()

    async def events() -> AsyncIterator[str]:
        try:
            yield "retry: 1000\n\n"
            yield _sse("snapshot", feed.snapshot(SNAPSHOT_ALERTS))
            while True:
                try:
                    batch = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if batch is None:
                    return
                yield _sse("alerts", batch)
        finally:
            feed.unsubscribe(sub)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def alert_detail(request: Request) -> Response:
    state = _state(request)
    ref = request.path_params["ref"]
    alert = state.feed.get(ref)
    if alert is None:
        return _error(404, "no such alert among the recent ones")
    ranges = await run_in_threadpool(state.ranges, alert.get("MODEL_VERSION"))
    alert_id = alert.get("ID")
    verdict = state.feedback.verdicts.get(alert_id) if isinstance(alert_id, int) else None
    return JSONResponse(
        {
            "alert": alert,
            "explanation": explanation(alert, ranges),
            "has_explanation": isinstance(alert.get("EXPLANATION"), list),
            "verdict": verdict,
        }
    )


async def feedback(request: Request) -> Response:
    state = _state(request)
    body = await _json_body(request)
    submission = _text(body, "submission", 64) or ""
    ref = _text(body, "ref", 64) or ""
    verdict = _text(body, "verdict", 32)
    note = _text(body, "note", 2000, required=False)
    user = request.scope.get("state", {}).get("user")
    analyst = user or _text(body, "analyst", 128)
    alert = state.feed.get(ref)
    if alert is None:
        return _error(404, "no such alert among the recent ones")
    result, created = await run_in_threadpool(
        state.feedback.submit,
        submission,
        alert.get("ID"),
        verdict,
        analyst,
        note,
        alert.get("MODEL_VERSION"),
        alert.get("SCORE"),
    )
    return JSONResponse(
        {"feedback": result, "written": created}, status_code=201 if created else 200
    )


# ---------------------------------------------------------------------- health, models
async def health(request: Request) -> Response:
    state = _state(request)
    report = state.health.report()
    report["alerts_feed"] = {"error": state.feed.error, "received": state.feed.received}
    return JSONResponse(report)


def _scoring_version(state: ConsoleState) -> str | None:
    newest = state.feed.newest()
    version = newest.get("MODEL_VERSION") if newest else None
    return version if isinstance(version, str) else None


async def models(request: Request) -> Response:
    state = _state(request)
    result = await run_in_threadpool(
        list_versions, state.config.models_path, _scoring_version(state)
    )
    result["budget_available"] = budget_available()
    return JSONResponse(result)


async def model_detail(request: Request) -> Response:
    state = _state(request)
    detail = await run_in_threadpool(
        version_detail, state.config.models_path, request.path_params["version"]
    )
    if detail is None:
        return _error(404, "no such model version")
    return JSONResponse(detail)


async def model_plot(request: Request) -> Response:
    state = _state(request)
    data = await run_in_threadpool(
        plot_bytes,
        state.config.models_path,
        request.path_params["version"],
        request.path_params["name"],
    )
    if data is None:
        return _error(404, "no such plot")
    return Response(data, media_type="image/png", headers={"cache-control": "max-age=300"})


async def drift(request: Request) -> Response:
    state = _state(request)
    version = request.query_params.get("version") or _scoring_version(state)
    if version is None:
        from services.model_registry.registry import ModelRefused, ModelRegistry

        try:
            version = ModelRegistry(state.config.models_path).latest()
        except ModelRefused:
            version = None
    if version is None:
        return JSONResponse({"version": None, "features": [], "note": "no model yet"})
    if len(version) > 64:
        raise BadRequest("version is too long")
    return JSONResponse(await run_in_threadpool(state.drift.report, version))


async def budget(request: Request) -> Response:
    body = await _json_body(request)
    version = _text(body, "version", 64)
    per_10k = _number(body, "per_10k", None)
    if per_10k is None or not 0 < per_10k <= 10_000:
        raise BadRequest("per_10k must be above 0 and at most 10000")
    result = await run_in_threadpool(
        set_budget, str(version), per_10k, _state(request).config.models_path
    )
    return JSONResponse(result, status_code=201)


# ---------------------------------------------------------------------- KSQL
async def ksql_catalog(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_state(request).ksql.catalog))


async def ksql_run(request: Request) -> Response:
    body = await _json_body(request)
    sql = _text(body, "sql", 32_000)
    max_rows = _number(body, "max_rows", 100)
    seconds = _number(body, "seconds", 5)
    earliest = body.get("earliest", False)
    if not isinstance(earliest, bool):
        raise BadRequest("earliest must be true or false")
    results = await run_in_threadpool(
        _state(request).ksql.run, str(sql), int(max_rows or 100), float(seconds or 5), earliest
    )
    return JSONResponse({"results": results})


# ---------------------------------------------------------------------- page, status
async def index(_request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})


async def healthz(_request: Request) -> Response:
    return JSONResponse({"ok": True})


async def status(request: Request) -> Response:
    state = _state(request)
    s = state.config.settings
    return JSONResponse(
        {
            "kafka": s.bootstrap_servers,
            "schema_registry": s.schema_registry_url,
            "ksql": s.ksql_url,
            "alerts_topic": state.config.alerts_topic,
            "feedback_topic": state.config.feedback_topic,
            "user": request.scope.get("state", {}).get("user"),
            "budget_available": budget_available(),
        }
    )


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_app(config: ConsoleConfig | None = None) -> Starlette:
    """The console app (not yet behind the HTTP guard: `serve` adds it)."""
    config = config or ConsoleConfig()
    state = ConsoleState.build(config)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            await run_in_threadpool(state.stop)

    g = _guarded
    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/api/status", g(status)),
        Route("/api/alerts", g(alerts_snapshot)),
        Route("/api/alerts/stream", alerts_stream),
        Route("/api/alerts/{ref:str}", g(alert_detail)),
        Route("/api/feedback", g(feedback), methods=["POST"]),
        Route("/api/health", g(health)),
        Route("/api/models", g(models)),
        Route("/api/models/{version:str}", g(model_detail)),
        Route("/api/models/{version:str}/plots/{name:str}", g(model_plot)),
        Route("/api/drift", g(drift)),
        Route("/api/budget", g(budget), methods=["POST"]),
        Route("/api/ksql/catalog", g(ksql_catalog)),
        Route("/api/ksql", g(ksql_run), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.console = state
    app.add_middleware(SecurityHeaders)
    return app
