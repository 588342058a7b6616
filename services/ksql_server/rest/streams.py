"""The three wire formats in which query results stream back, and the row pump that feeds them.

ksqlDB has two query endpoints with different framings, and clients parse them line by line:
- `/query` (HTTP/1.1, chunked): one JSON array spread over lines, one element per line —
  `[{"header":{"queryId":…,"schema":…}},` / `{"row":{"columns":[…]}},` /
  `{"finalMessage":"Limit Reached"}]` — with bare newlines as keep-alives while no row arrives.
- `/query-stream`, `application/vnd.ksqlapi.delimited.v1` (the default): a header object
  (`queryId`, `columnNames`, `columnTypes`) then one JSON array per row, each on its own line.
- `/query-stream`, `application/json`: the same header and rows as one valid JSON array.
Each line goes out as its own body chunk: ksql-python-ng's HTTP/2 reader parses every received
DATA frame as one JSON document, so a frame must never carry two lines.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.ksql_server import pull_rules
from services.ksql_server.engine_api import KsqlStatementError, PushQuery

log = logging.getLogger(__name__)

DELIMITED = "application/vnd.ksqlapi.delimited.v1"
JSON = "application/json"
KEEP_ALIVE = b"\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: Any) -> str:
    """Compact JSON as ksqlDB writes it; values the engine hands over unconverted still encode."""
    return json.dumps(value, separators=(",", ":"), default=_json_default, allow_nan=True)


@dataclass
class Keepalive:
    """Marker the pump yields when no row arrived within the keep-alive interval."""


@dataclass
class StreamFailed:
    """Marker the pump yields when the query failed after its header was sent."""

    message: str
    error_code: int = 50000


async def pump_rows(
    query: PushQuery, keepalive_s: float | None
) -> AsyncIterator[list[Any] | Keepalive | StreamFailed]:
    """Rows of `query`, keep-alive markers while idle, and a failure marker if it breaks.

    The next row is awaited in its own task so that a keep-alive timeout never cancels the
    engine's iterator halfway through a row; the query is always closed on the way out (end,
    LIMIT, client gone), which is what frees its consumer.
    """
    iterator = query.rows.__aiter__()
    pending: asyncio.Future[list[Any]] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=keepalive_s)
            if not done:
                yield Keepalive()
                continue
            finished, pending = pending, None
            try:
                row = finished.result()
            except StopAsyncIteration:
                return
            except KsqlStatementError as exc:
                yield StreamFailed(exc.message, exc.error_code)
                return
            except Exception as exc:
                log.exception("query %s failed while streaming", query.query_id)
                yield StreamFailed(f"query failed: {exc}")
                return
            yield row
    finally:
        if pending is not None:
            pending.cancel()
        try:
            await query.close()
        except Exception:
            log.exception("closing query %s failed", query.query_id)


def final_message(query: PushQuery) -> str:
    """ksqlDB says 'Query Completed' at the end of a pull query, 'Limit Reached' after LIMIT."""
    return pull_rules.final_message(query.is_pull, query.limit_reached())


def error_object(message: str, error_code: int) -> dict[str, Any]:
    return {"@type": "generic_error", "error_code": error_code, "message": message}


async def legacy_query_lines(query: PushQuery, keepalive_s: float) -> AsyncIterator[bytes]:
    """`/query`: ksqlDB's chunked JSON array, one element per line."""
    header = {"header": {"queryId": query.query_id, "schema": query.schema}}
    yield f"[{dumps(header)},\n".encode()
    async for item in pump_rows(query, keepalive_s):
        if isinstance(item, Keepalive):
            yield KEEP_ALIVE
        elif isinstance(item, StreamFailed):
            error = {"errorMessage": error_object(item.message, item.error_code)}
            yield f"{dumps(error)}]\n".encode()
            return
        else:
            yield f'{{"row":{{"columns":{dumps(item)}}}}},\n'.encode()
    yield f"{dumps({'finalMessage': final_message(query)})}]\n".encode()


def stream_header(query: PushQuery) -> dict[str, Any]:
    return {
        "queryId": query.query_id,
        "columnNames": query.column_names,
        "columnTypes": query.column_types,
    }


async def delimited_lines(query: PushQuery) -> AsyncIterator[bytes]:
    """`/query-stream` in `application/vnd.ksqlapi.delimited.v1`: header, then one array a line."""
    yield (dumps(stream_header(query)) + "\n").encode()
    async for item in pump_rows(query, None):
        if isinstance(item, StreamFailed):
            yield (dumps(error_object(item.message, item.error_code)) + "\n").encode()
            return
        if not isinstance(item, Keepalive):
            yield (dumps(item) + "\n").encode()


async def json_array_chunks(query: PushQuery) -> AsyncIterator[bytes]:
    """`/query-stream` in `application/json`: the whole response is one JSON array."""
    yield ("[" + dumps(stream_header(query))).encode()
    async for item in pump_rows(query, None):
        if isinstance(item, StreamFailed):
            yield (",\n" + dumps(error_object(item.message, item.error_code))).encode()
            break
        if not isinstance(item, Keepalive):
            yield (",\n" + dumps(item)).encode()
    yield b"]\n"


def choose_stream_format(accept: str | None) -> str | None:
    """The content type for `/query-stream` from the Accept header; None when none fits.

    ksqlDB answers in the delimited format unless the client asks for `application/json` (and not
    the delimited type as well); `*/*` or no header means delimited.
    """
    if not accept:
        return DELIMITED
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if DELIMITED in kinds:
        return DELIMITED
    if JSON in kinds:
        return JSON
    if any(k in ("*/*", "application/*", "") for k in kinds):
        return DELIMITED
    if any(k.startswith("application/vnd.ksql") for k in kinds):
        return DELIMITED
    return None
