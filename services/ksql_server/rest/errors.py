"""ksqlDB's error envelopes, so clients that branch on `@type` and `error_code` work unchanged.

ksqlDB answers a failed statement with `statement_error` (it names the statement and carries the
entities of the statements of the same request that already ran) and anything else with
`generic_error`. The HTTP status follows the first three digits of `error_code`.
"""

from __future__ import annotations

import re
import traceback
from typing import Any

from starlette.responses import JSONResponse

from services.ksql_server.engine_api import (
    ERROR_MAX_PUSH_QUERIES_EXCEEDED as ERROR_MAX_PUSH_QUERIES_EXCEEDED,
)
from services.ksql_server.errors import KsqlServiceError, clip, statement_error_code

ERROR_BAD_STATEMENT = 40001
ERROR_QUERY_ENDPOINT = 40002
ERROR_BAD_REQUEST = 40000
ERROR_NOT_FOUND = 40400
ERROR_NOT_ACCEPTABLE = 40600
ERROR_SERVER = 50000


def http_status(error_code: int) -> int:
    """40001 → 400, 50000 → 500: ksqlDB's codes are the HTTP status followed by two digits."""
    status = error_code // 100
    return status if 400 <= status <= 599 else 500


def generic_error(error_code: int, message: str) -> JSONResponse:
    body = {"@type": "generic_error", "error_code": error_code, "message": clip(message)}
    return JSONResponse(body, status_code=http_status(error_code))


def statement_error(
    error_code: int, message: str, statement_text: str, entities: list[dict[str, Any]]
) -> JSONResponse:
    body = {
        "@type": "statement_error",
        "error_code": error_code,
        "message": clip(message),
        "statementText": clip(statement_text),
        "entities": entities,
    }
    return JSONResponse(body, status_code=http_status(error_code))


class BadRequest(KsqlServiceError):
    """A request the server cannot even read (bad JSON, missing field): `generic_error` 40000."""

    def __init__(self, message: str, error_code: int = ERROR_BAD_REQUEST) -> None:
        super().__init__(message, code=statement_error_code(error_code))
        self.message = message
        self.error_code = error_code


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_in(value: Any) -> bool:
    """Whether a decoded JSON value holds a lone UTF-16 surrogate (`"\\ud800"` is valid JSON
    but no UTF-8 encoder, Kafka record or log line accepts it). Walks with a stack, not
    recursion: the value is the client's and as deep as the JSON decoder allowed."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def reject_lone_surrogates(value: Any, what: str = "request body") -> None:
    """BadRequest (40000) when `value` holds a lone UTF-16 surrogate."""
    if lone_surrogate_in(value):
        raise BadRequest(f"{what} contains a lone UTF-16 surrogate (\\ud800-\\udfff)")


def release_frames(exc: BaseException) -> None:
    """Drop the local variables of the frames an answered error's tracebacks hold.

    An exception that crossed the worker thread and the event loop sits in reference cycles
    (futures, tasks) that only the cyclic GC frees, and its frames hold the request: body,
    statement, parsed tree, values — 75 MB for a 15 MB literal — until a full collection runs.
    Once the answer is built nothing needs them."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__]
