"""A tiny in-memory engine implementing the `KsqlEngine` protocol, for testing the REST layer alone.

It understands just enough statements (CREATE STREAM, SHOW STREAMS, DROP STREAM, SELECT with
EMIT CHANGES / LIMIT) to drive every endpoint; the real engine is tested through the real server.
No broker is involved and none is faked: rows live in this object.
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from hypercorn.asyncio import serve

from services.common.http import hypercorn_config
from services.common.process import free_port
from services.ksql_server.engine_api import KsqlStatementError, PushQuery
from services.ksql_server.rest import create_app

_CREATE = re.compile(
    r"^\s*CREATE\s+STREAM\s+(\w+)\s*\((.*)\)\s*WITH\s*\(.*\)\s*;?\s*$", re.I | re.S
)
_SELECT = re.compile(
    r"^\s*SELECT\s+\*\s+FROM\s+(\w+)(\s+EMIT\s+CHANGES)?(?:\s+LIMIT\s+(\d+))?\s*;?\s*$", re.I | re.S
)
_DROP = re.compile(r"^\s*DROP\s+STREAM\s+(\w+)\s*;?\s*$", re.I)


class FakeQuery(PushQuery):
    closed: bool = False

    async def close(self) -> None:
        self.closed = True


class FakeEngine:
    service_id = "fake_"

    def __init__(self) -> None:
        self.streams: dict[str, list[tuple[str, str]]] = {}
        self.rows: dict[str, list[list[Any]]] = {}
        self.listeners: dict[str, list[asyncio.Queue[list[Any] | None]]] = {}
        self.queries: dict[str, FakeQuery] = {}
        self.fail_rows_with: Exception | None = None
        self.crash_on_boom = True
        self.executed: list[tuple[str, dict[str, Any]]] = []

    # -- /ksql ---------------------------------------------------------------------------------

    def execute(
        self, sql: str, properties: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        self.executed.append((sql, dict(properties or {})))
        entities: list[dict[str, Any]] = []
        for statement in [s.strip() for s in sql.split(";") if s.strip()]:
            entities.append(self._one(statement + ";", entities))
        return entities

    def _one(self, statement: str, done: list[dict[str, Any]]) -> dict[str, Any]:
        if statement.upper().startswith("SHOW STREAMS") or statement.upper().startswith(
            "LIST STREAMS"
        ):
            streams = [
                {
                    "type": "STREAM",
                    "name": n,
                    "topic": n.lower(),
                    "keyFormat": "KAFKA",
                    "valueFormat": "JSON",
                    "isWindowed": False,
                }
                for n in self.streams
            ]
            return {
                "@type": "streams",
                "statementText": statement,
                "streams": streams,
                "warnings": [],
            }
        if self.crash_on_boom and statement.upper().startswith("BOOM"):
            raise RuntimeError("engine exploded")
        if statement.upper().startswith("SELECT"):
            raise KsqlStatementError(
                "The following statement types should be issued to the websocket endpoint "
                "'/query': * PRINT * SELECT",
                statement,
                40002,
                list(done),
            )
        match = _CREATE.match(statement)
        if match:
            name = match.group(1).upper()
            if name in self.streams:
                raise KsqlStatementError(
                    f"Cannot add stream '{name}': A stream with the same name already exists",
                    statement,
                    40001,
                    list(done),
                )
            columns = []
            for part in match.group(2).split(","):
                col_name, col_type = part.split()[:2]
                columns.append((col_name.upper(), col_type.upper()))
            self.streams[name] = columns
            self.rows[name] = []
            return self._status(statement, f"stream/`{name}`/create", "Stream created")
        match = _DROP.match(statement)
        if match:
            name = match.group(1).upper()
            if self.streams.pop(name, None) is None:
                raise KsqlStatementError(
                    f"Source {name} does not exist.", statement, 40001, list(done)
                )
            return self._status(statement, f"stream/`{name}`/drop", f"Source `{name}` dropped.")
        raise KsqlStatementError(
            f"line 1:1: Syntax Error: no viable alternative at input '{statement[:20]}'",
            statement,
            40001,
            list(done),
        )

    def _status(self, statement: str, command_id: str, message: str) -> dict[str, Any]:
        return {
            "@type": "currentStatus",
            "statementText": statement,
            "commandId": command_id,
            "commandStatus": {"status": "SUCCESS", "message": message, "queryId": None},
            "commandSequenceNumber": 2,
            "warnings": [],
        }

    # -- queries -------------------------------------------------------------------------------

    async def start_query(self, sql: str, properties: Mapping[str, Any] | None = None) -> PushQuery:
        match = _SELECT.match(sql)
        if not match:
            raise KsqlStatementError(f"line 1:1: Syntax Error: {sql[:30]}", sql, 40001)
        name, push, limit = match.group(1).upper(), bool(match.group(2)), match.group(3)
        if name not in self.streams:
            raise KsqlStatementError(f"{name} does not exist.", sql, 40001)
        query_id = f"transient_{name}_{uuid.uuid4().int % 10**12}"
        queue: asyncio.Queue[list[Any] | None] = asyncio.Queue()
        if push:
            self.listeners.setdefault(name, []).append(queue)
        else:
            for row in self.rows[name]:
                queue.put_nowait(row)
            queue.put_nowait(None)
        columns = self.streams[name]
        query = FakeQuery(
            query_id=query_id,
            column_names=[c for c, _ in columns],
            column_types=[t for _, t in columns],
            rows=self._rows(queue, int(limit) if limit else None),
            is_pull=not push,
        )
        self.queries[query_id] = query
        return query

    async def _rows(
        self, queue: asyncio.Queue[list[Any] | None], limit: int | None
    ) -> AsyncIterator[list[Any]]:
        sent = 0
        while limit is None or sent < limit:
            row = await queue.get()
            if row is None:
                return
            if self.fail_rows_with is not None:
                raise self.fail_rows_with
            sent += 1
            yield row

    async def close_query(self, query_id: str) -> bool:
        query = self.queries.pop(query_id, None)
        if query is None:
            return False
        for queues in self.listeners.values():
            for queue in queues:
                queue.put_nowait(None)
        await query.close()
        return True

    async def insert_row(self, target: str, row: Mapping[str, Any]) -> None:
        name = target.upper()
        if name not in self.streams:
            raise KsqlStatementError(f"Cannot insert into unknown stream {name}", "", 40001)
        values = [row.get(c, row.get(c.lower())) for c, _ in self.streams[name]]
        self.rows[name].append(values)
        for queue in self.listeners.get(name, []):
            queue.put_nowait(values)

    def close(self) -> None:
        return None


class RunningServer:
    def __init__(self, engine: FakeEngine, keepalive_s: float) -> None:
        self.engine = engine
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(engine, keepalive_s=keepalive_s)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            await serve(
                self.app,  # type: ignore[arg-type]
                hypercorn_config("127.0.0.1", self.port),
                shutdown_trigger=self._stop.wait,
            )

        asyncio.run(main())

    def start(self) -> None:
        self._thread.start()
        for _ in range(200):
            try:
                httpx.get(self.url + "/info", timeout=0.5)
                return
            except httpx.TransportError:
                threading.Event().wait(0.05)
        raise RuntimeError("test server did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
