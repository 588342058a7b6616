"""The KSQL server's branch of the error family, and the errors raised inside the engine.

`KsqlServiceError` is the server's root (under `FraudstreamError`): statement errors
(`KsqlError`, `ParseError`, `KsqlStatementError` with ksqlDB's numeric `error_code`), record
errors (`SerdeError`, which is also a `RecordRejected`) and the server's own failures all derive
from it. `engine.py` turns statement errors into `KsqlStatementError`.
"""

from __future__ import annotations

from services.common.errors import FraudstreamError

STATEMENT_ERROR_CODES = {
    40000: "bad_request",
    40001: "invalid_statement",
    40002: "query_endpoint",
    40003: "max_push_queries",
    40400: "not_found",
    40600: "not_acceptable",
    50000: "internal",
}
"""The stable `code` of a ksqlDB `error_code` when the failure names none more precise."""


def statement_error_code(error_code: int | None) -> str:
    """The stable code of ksqlDB's numeric `error_code` (`ksql` for one not in the table)."""
    return STATEMENT_ERROR_CODES.get(error_code or 0, "ksql")


class KsqlServiceError(FraudstreamError):
    """Anything the KSQL server (engine, runtime, REST layer, CLI client) raises on purpose."""

    default_code = "ksql"


class KsqlError(KsqlServiceError):
    """A statement is invalid (wrong column, type mismatch, missing source…): error 40001."""

    default_code = "invalid_statement"


class CodegenError(KsqlError):
    """An expression type-checks but cannot be generated (an unsupported CAST, a list whose
    elements have no common type): ksqlDB reports these as `Invalid <clause>: …`, where a
    type error reads `Error in <clause> expression: …` (see `expressions.clauses`)."""


class UnresolvedError(KsqlError):
    """A column or source name does not resolve: ksqlDB's analyzer reports it as it is, with
    no clause prefix."""


def line_col(text: str, pos: int, first_line: int = 1) -> tuple[int, int]:
    """ksqlDB's 1-based line and column of offset `pos` of `text`, which starts on line
    `first_line` of its request."""
    line = text.count("\n", 0, pos) + first_line
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


class LocatedError(KsqlError):
    """An error about one node of the statement, which ksqlDB reports as
    `<prefix>Line: L, Col: C: <message>` with L counted in the whole request.

    The planner knows the node's offset in the statement (`pos`), not the request: the engine
    calls `located` with the statement's text and first line. Unlocated (`pos` < 0, a node a
    rewrite made) it reads as the message alone."""

    def __init__(self, message: str, pos: int, prefix: str = "") -> None:
        super().__init__(prefix + message)
        self.detail = message
        self.pos = pos
        self.prefix = prefix

    def located(self, text: str, first_line: int = 1) -> KsqlError:
        if self.pos < 0 or self.pos > len(text):
            return self
        line, col = line_col(text, self.pos, first_line)
        return KsqlError(f"{self.prefix}Line: {line}, Col: {col}: {self.detail}", code=self.code)


class KsqlFunctionException(KsqlServiceError):
    """A function fails in a way that stops the query, not just the record (ksqlDB's
    KsqlFunctionException inside Kafka Streams, "Exception caught in process"): a DECIMAL sum
    past its precision. The query ends in the ERROR state with this message."""

    default_code = "function_failed"


class UnsupportedError(KsqlError):
    """The statement is valid ksqlDB but uses a feature this server does not implement.

    Kept distinct so the conformance runner can report such cases as skipped (with this reason)
    rather than failed, and never as passed."""

    default_code = "unsupported"


MAX_ECHO_CHARS = 64 * 1024
"""An error quotes at most this much of the statement (and a message that quotes it is cut
to this too): a 15 MB statement's error then costs kilobytes to build and render, not more
15 MB copies."""


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text`, cut to `limit` characters with a note saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [{len(text) - limit} more characters not shown]"
