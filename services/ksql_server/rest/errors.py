"""ksqlDB's error envelopes, so clients that branch on `@type` and `error_code` work unchanged.

ksqlDB answers a failed statement with `statement_error` (it names the statement and carries the
entities of the statements of the same request that already ran) and anything else with
`generic_error`. The HTTP status follows the first three digits of `error_code`.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from services.ksql_server.engine_api import (
    ERROR_MAX_PUSH_QUERIES_EXCEEDED as ERROR_MAX_PUSH_QUERIES_EXCEEDED,
)

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
    body = {"@type": "generic_error", "error_code": error_code, "message": message}
    return JSONResponse(body, status_code=http_status(error_code))


def statement_error(
    error_code: int, message: str, statement_text: str, entities: list[dict[str, Any]]
) -> JSONResponse:
    body = {
        "@type": "statement_error",
        "error_code": error_code,
        "message": message,
        "statementText": statement_text,
        "entities": entities,
    }
    return JSONResponse(body, status_code=http_status(error_code))


class BadRequest(Exception):
    """A request the server cannot even read (bad JSON, missing field): `generic_error` 40000."""

    def __init__(self, message: str, error_code: int = ERROR_BAD_REQUEST) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
