"""The contract between the KSQL engine (parser → planner → runtime) and the REST layer.

The REST layer (`rest/`) only speaks HTTP and ksqlDB's JSON envelopes; everything about
statements, sources and queries sits behind `KsqlEngine` (`engine.py`). Keeping this seam narrow
means a new function or clause never touches the REST code, and the REST code never parses SQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.ksql_server.errors import KsqlServiceError, statement_error_code

ERROR_MAX_PUSH_QUERIES_EXCEEDED = 40003
"""ksqlDB's error code when `ksql.max.push.queries` queries already run (HTTP 400)."""


class KsqlStatementError(KsqlServiceError):
    """A statement failed. `error_code` follows ksqlDB: 40001 bad statement, 40002 a query was
    sent to /ksql (use /query), 40000 bad request, 50000 server error; `code` is the stable name
    of the cause (the engine error's own, else the one of `error_code`). `entities` are the
    results of the statements of the same request that ran before the failing one."""

    def __init__(
        self,
        message: str,
        statement_text: str = "",
        error_code: int = 40001,
        entities: list[dict[str, Any]] | None = None,
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code or statement_error_code(error_code))
        self.message = message
        self.statement_text = statement_text
        self.error_code = error_code
        self.entities = entities or []


def as_statement_error(
    exc: BaseException, statement_text: str, entities: list[dict[str, Any]] | None = None
) -> KsqlStatementError:
    """The ksqlDB error a statement's failure answers with.

    A statement the grammar, the limits or the planner refuse (ParseError, KsqlError) is the
    client's mistake: 40001 with the engine's message. So are the two ways Python itself can
    refuse a statement that slipped past the explicit limits (RecursionError, and a character
    no encoder accepts). Anything else is the server's fault: 50000 with a fixed message, never
    the exception's class or text (which can quote the statement's literals); the caller logs
    the details."""
    from services.ksql_server.errors import KsqlError
    from services.ksql_server.parser.lexer import ParseError

    if isinstance(exc, KsqlStatementError):
        if entities is not None:
            exc.entities = entities
        return exc
    if isinstance(exc, (ParseError, KsqlError)):
        return KsqlStatementError(str(exc), statement_text, 40001, entities, code=exc.code)
    if isinstance(exc, RecursionError):
        message = "Statement too complex: its expressions are nested too deeply"
        return KsqlStatementError(message, statement_text, 40001, entities, code="too_complex")
    if _record_too_large(exc):
        message = (
            "Statement too large: Kafka refused its record (message size too large); "
            "make the statement or its values smaller"
        )
        return KsqlStatementError(message, statement_text, 40001, entities, code="too_large")
    if isinstance(exc, UnicodeError):
        reason = getattr(exc, "reason", "invalid text")
        message = f"Statement contains text that cannot be encoded: {reason}"
        return KsqlStatementError(message, statement_text, 40001, entities, code="bad_text")
    message = "Internal error while running the statement; the server log has the details"
    return KsqlStatementError(message, statement_text, 50000, entities)


def _record_too_large(exc: BaseException) -> bool:
    """A produce the broker or the client refused for its size: the statement (written to the
    command topic) or an INSERT's values were too big — the client's doing, not the server's."""
    from confluent_kafka import KafkaError, KafkaException

    if not isinstance(exc, KafkaException) or not exc.args:
        return False
    error = exc.args[0]
    return isinstance(error, KafkaError) and error.code() == KafkaError.MSG_SIZE_TOO_LARGE


@dataclass
class PushQuery:
    """A running transient query (push `EMIT CHANGES`, or a pull query's finite result)."""

    query_id: str
    column_names: list[str]
    column_types: list[str]
    """ksqlDB type names, e.g. 'BIGINT', 'STRING', 'DOUBLE', 'DECIMAL(10, 2)'."""
    rows: AsyncIterator[list[Any]]
    """Rows as JSON-ready lists in column order; ends at LIMIT, for pull queries, or on close."""
    is_pull: bool = False
    properties: dict[str, Any] = field(default_factory=dict)
    on_close: Callable[[], Awaitable[None]] | None = None
    """What ends the query (stops its consumer, awaits its thread): given by the runtime, so a
    served query never reaches back into the engine."""
    limit_reached: Callable[[], bool] = lambda: False
    """Whether the rows ended because the query's LIMIT was reached (the runtime knows)."""
    key_columns: frozenset[str] = frozenset()
    """Columns the header marks `KEY` (a pull query over a table shows the table's key)."""

    @property
    def schema(self) -> str:
        """The header's schema string, e.g. "`ID` BIGINT, `USER` STRING"."""
        return ", ".join(
            f"`{n}` {t}{' KEY' if n in self.key_columns else ''}"
            for n, t in zip(self.column_names, self.column_types, strict=True)
        )

    async def close(self) -> None:
        if self.on_close is not None:
            await self.on_close()


class KsqlEngine(Protocol):
    """What the REST layer needs from the engine."""

    service_id: str

    def execute(
        self, sql: str, properties: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run every statement of a /ksql request; return one ksqlDB entity per statement
        (`@type`, `statementText`, `warnings`, …), or raise KsqlStatementError."""
        ...

    async def start_query(self, sql: str, properties: Mapping[str, Any] | None = None) -> PushQuery:
        """Start a push or pull query (one SELECT statement) for /query and /query-stream."""
        ...

    async def close_query(self, query_id: str) -> bool: ...

    async def insert_row(self, target: str, row: Mapping[str, Any]) -> None:
        """Insert one JSON row into a stream (for /inserts-stream)."""
        ...

    def close(self) -> None: ...


class ServedEngine(KsqlEngine, Protocol):
    """How `server.py` and the REST layer drive an engine (added by the REST side; optional parts
    are looked up with getattr, so an engine without them still serves):

    - built as `Engine(bootstrap_servers=..., schema_registry_url=..., service_id=...,
      properties=...)` (server-wide properties from `fraudstream ksql serve --property`);
    - `start()` (optional, sync or async) runs once on the server's event loop before the first
      request (e.g. command-topic replay); `/healthcheck` answers 200 only after it returned;
    - `execute()` runs in a worker thread (never on the event loop), one request at a time;
      `start_query`, `close_query` and `insert_row` are awaited on the event loop;
    - `healthy()` (optional, sync or async → bool) backs `/healthcheck` (503 when False);
    - `kafka_cluster_id` (optional attribute) is reported by `/info`;
    - `stop_transient_queries()` (optional, sync) runs on the event loop when SIGTERM arrives,
      before the connections are drained: every push query is told to end;
    - `close()` runs at shutdown, in a worker thread.
    """
