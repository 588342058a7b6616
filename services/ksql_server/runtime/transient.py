"""The running transient queries (push `EMIT CHANGES`, and pull over a stream) and their cap.

Kept out of the Engine: a transient query is planned by the engine, then lives here until its
thread ends. `ksql.max.push.queries` counts it until that end (not merely until it was told to
stop), so the cap bounds threads and consumers; the served `PushQuery` closes through the
runtime's own `close`, never by reaching back into the engine.
"""

from __future__ import annotations

import threading
from typing import Any

from services.ksql_server.engine_api import (
    ERROR_MAX_PUSH_QUERIES_EXCEEDED,
    KsqlStatementError,
    PushQuery,
)
from services.ksql_server.runtime.query import CLOSE_WAIT_S, TransientQuery

MAX_PUSH_QUERIES_PROPERTY = "ksql.max.push.queries"
DEFAULT_MAX_PUSH_QUERIES = 100
MAX_PUSH_QUERIES_MESSAGE = "Maximum number of push queries exceeded"


def max_push_queries(properties: dict[str, Any]) -> int:
    """`ksql.max.push.queries`: a server property, so taken out of those every query inherits."""
    raw = properties.pop(MAX_PUSH_QUERIES_PROPERTY, DEFAULT_MAX_PUSH_QUERIES)
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{MAX_PUSH_QUERIES_PROPERTY} must be an integer, not {raw!r}") from exc
    if value < 0:
        raise ValueError(f"{MAX_PUSH_QUERIES_PROPERTY} must not be negative")
    return value


class TransientQueries:
    """Transient queries by id, at most `limit` at once (more get 40003)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: dict[str, TransientQuery] = {}
        self._lock = threading.Lock()

    def start(
        self, runtime: TransientQuery, sql: str, properties: dict[str, Any] | None
    ) -> PushQuery:
        """Count `runtime` against the cap, start its thread, and serve it as a PushQuery."""
        query_id = runtime.query_id
        with self._lock:
            if len(self._running) >= self.limit:
                raise KsqlStatementError(
                    MAX_PUSH_QUERIES_MESSAGE, sql, ERROR_MAX_PUSH_QUERIES_EXCEEDED
                )
            self._running[query_id] = runtime

        def forget() -> None:
            self._running.pop(query_id, None)

        runtime.on_close = forget
        try:
            runtime.start()
        except BaseException:  # no thread (the system's limit): the query never ran
            self._running.pop(query_id, None)
            raise
        output = runtime.plan.output
        return PushQuery(
            query_id=query_id,
            column_names=[n for n, _ in output],
            column_types=[str(t) for _, t in output],
            rows=runtime.rows(),
            is_pull=runtime.pull,
            properties=dict(properties or {}),
            on_close=runtime.close,
            limit_reached=lambda: runtime.limit_reached,
        )

    def ids(self) -> list[str]:
        """Queries whose thread is still running."""
        return list(self._running)

    async def close(self, query_id: str) -> bool:
        """Stop one query and await its end; False for an unknown id."""
        runtime = self._running.get(query_id)
        if runtime is None:
            return False
        runtime.stop()
        await runtime.wait_closed(CLOSE_WAIT_S)
        return True

    def stop_all(self) -> None:
        """Tell every query to end (shutdown): their threads end, their streams finish."""
        for runtime in list(self._running.values()):
            runtime.stop()

    def join_all(self, timeout: float = CLOSE_WAIT_S) -> None:
        for runtime in list(self._running.values()):
            runtime.join(timeout)
