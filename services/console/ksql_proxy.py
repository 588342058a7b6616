"""The console's KSQL view: catalog, persistent queries and the editor, through ksqlDB's REST API.

Only the public API is used (`/ksql`, `/query-stream`, `/info`) with the project's KSQL client,
so the editor works against the project's KSQL server and a real ksqlDB alike. What a page may
run is bounded: statements per submission, rows per query, and seconds a push query is read
before its stream is closed (closing the HTTP/2 stream ends the query on the server).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.common.errors import FraudstreamError, ServiceUnavailable
from services.common.http.clients import httpx_options
from services.ksql_server.rest.client import KsqlClient, KsqlServerError, split_statements

MAX_STATEMENTS = 20
MAX_ROWS = 500
MAX_QUERY_SECONDS = 30.0
DEFAULT_QUERY_SECONDS = 5.0
_QUERY = re.compile(r"^\s*SELECT\b", re.I)
_SERVICE_ID_TTL_S = 60.0


class EditorError(FraudstreamError):
    """A submission the console refuses before sending it (client mistake: HTTP 400)."""

    default_code = "bad_statement"


@dataclass
class KsqlProxy:
    url: str
    timeout: float = 15.0
    _service_id: tuple[float, str] | None = field(default=None, repr=False)

    @property
    def client(self) -> KsqlClient:
        return KsqlClient(self.url, timeout=self.timeout)

    def service_id(self) -> str:
        """`ksql.service.id` from /info (names the persistent queries' consumer groups)."""
        now = time.monotonic()
        if self._service_id is not None and now - self._service_id[0] < _SERVICE_ID_TTL_S:
            return self._service_id[1]
        try:
            response = httpx.get(f"{self.url}/info", timeout=self.timeout, **httpx_options("ksql"))
            info = response.json().get("KsqlServerInfo", {})
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise ServiceUnavailable(f"KSQL server at {self.url}: /info failed ({exc})") from exc
        service_id = str(info.get("ksqlServiceId", "default_"))
        self._service_id = (now, service_id)
        return service_id

    def persistent_queries(self) -> list[dict[str, Any]]:
        """SHOW QUERIES, each with the consumer group ksqlDB gives it."""
        entities = self.client.ksql("SHOW QUERIES;")
        service_id = self.service_id()
        out = []
        for entity in entities:
            for q in entity.get("queries", []) if isinstance(entity, dict) else []:
                query_id = str(q.get("id", ""))
                out.append(
                    {
                        "id": query_id,
                        "sinks": [str(s) for s in q.get("sinks", [])],
                        "state": str(q.get("state") or q.get("status") or ""),
                        "sql": str(q.get("queryString", ""))[:2000],
                        "type": str(q.get("queryType", "PERSISTENT")),
                        "group": f"_confluent-ksql-{service_id}query_{query_id}"
                        if query_id and q.get("queryType", "PERSISTENT") == "PERSISTENT"
                        else None,
                    }
                )
        return out

    def catalog(self) -> dict[str, Any]:
        """Streams, tables and queries, as SHOW STREAMS/TABLES/QUERIES list them."""
        streams = self._listing("SHOW STREAMS;", "streams")
        tables = self._listing("SHOW TABLES;", "tables")
        queries = self.persistent_queries()
        return {"streams": streams, "tables": tables, "queries": queries}

    def _listing(self, sql: str, key: str) -> list[dict[str, Any]]:
        out = []
        for entity in self.client.ksql(sql):
            for item in entity.get(key, []) if isinstance(entity, dict) else []:
                out.append(
                    {
                        "name": str(item.get("name", "")),
                        "topic": str(item.get("topic", "")),
                        "key_format": str(item.get("keyFormat", "")),
                        "value_format": str(item.get("valueFormat", item.get("format", ""))),
                    }
                )
        return out

    # ------------------------------------------------------------------ the editor
    def run(
        self,
        text: str,
        max_rows: int = 100,
        seconds: float = DEFAULT_QUERY_SECONDS,
        earliest: bool = False,
    ) -> list[dict[str, Any]]:
        """Run each statement of `text` in order; one result per statement. A refused statement
        ends the run with its error as the last result."""
        statements = split_statements(text)
        if not statements:
            raise EditorError("no statement to run")
        if len(statements) > MAX_STATEMENTS:
            raise EditorError(f"at most {MAX_STATEMENTS} statements at a time")
        max_rows = max(1, min(int(max_rows), MAX_ROWS))
        seconds = max(0.5, min(float(seconds), MAX_QUERY_SECONDS))
        properties = {"auto.offset.reset": "earliest"} if earliest else {}
        results = []
        for sql in statements:
            try:
                if _QUERY.match(sql):
                    results.append(self._query(sql, max_rows, seconds, properties))
                else:
                    results.append(self._statement(sql, properties))
            except KsqlServerError as exc:
                results.append({"sql": sql, "kind": "error", "message": exc.message[:2000]})
                break
        return results

    def _query(
        self, sql: str, max_rows: int, seconds: float, properties: dict[str, Any]
    ) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        columns: list[str] = []
        rows: list[list[Any]] = []
        stream = self.client.stream_query(sql, properties, timeout=seconds)
        ended = "completed"
        try:
            for item in stream:
                if isinstance(item, dict):
                    columns = [str(c) for c in item.get("columnNames", [])]
                    continue
                rows.append(item if isinstance(item, list) else [item])
                if len(rows) >= max_rows:
                    ended = f"stopped at {max_rows} rows"
                    break
                if time.monotonic() >= deadline:
                    ended = f"stopped after {seconds:g} s"
                    break
            else:
                if time.monotonic() >= deadline - 0.05:
                    ended = f"stopped after {seconds:g} s"
        finally:
            stream.close()  # type: ignore[attr-defined]
        return {"sql": sql, "kind": "rows", "columns": columns, "rows": rows, "ended": ended}

    def _statement(self, sql: str, properties: dict[str, Any]) -> dict[str, Any]:
        entities = self.client.ksql(sql, properties)
        messages = []
        for entity in entities:
            if not isinstance(entity, dict):
                continue
            status = entity.get("commandStatus")
            if isinstance(status, dict):
                messages.append(str(status.get("message", "")))
            for key in ("streams", "tables", "queries", "topics"):
                if isinstance(entity.get(key), list):
                    return _listing_result(sql, entity[key])
        if not messages:
            messages = [str(e.get("@type", "done")) for e in entities if isinstance(e, dict)]
        return {"sql": sql, "kind": "message", "message": "; ".join(messages)[:2000]}


def _listing_result(sql: str, items: list[Any]) -> dict[str, Any]:
    """A SHOW … answer as a table (columns: the union of the items' scalar fields)."""
    columns: list[str] = []
    for item in items:
        for key, value in item.items() if isinstance(item, dict) else []:
            if key not in columns and not isinstance(value, dict | list):
                columns.append(key)
    rows = [[item.get(c) if isinstance(item, dict) else None for c in columns] for item in items]
    return {
        "sql": sql,
        "kind": "rows",
        "columns": columns,
        "rows": rows[:MAX_ROWS],
        "ended": "completed",
    }
