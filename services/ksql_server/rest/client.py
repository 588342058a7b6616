"""A small client of ksqlDB's REST API, used by `fraudstream ksql apply|query`, tests and bench.

It speaks only the public API, so it works the same against this server and a real ksqlDB.
Statement files are split here, and `SET`/`UNSET` are kept client-side and sent as
`streamsProperties` with the statements that follow, exactly as ksqlDB's own CLI does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.common.errors import ServiceUnavailable
from services.common.http.clients import httpx_options
from services.ksql_server.errors import KsqlServiceError, statement_error_code

_SET = re.compile(r"^\s*SET\s+'([^']+)'\s*=\s*'((?:[^']|'')*)'\s*;?\s*$", re.I | re.S)
_UNSET = re.compile(r"^\s*UNSET\s+'([^']+)'\s*;?\s*$", re.I | re.S)
_ALREADY_EXISTS = re.compile(
    r"(stream|table|source|type)[^.]*with the same name already exists"
    r"|already exists as a (stream|table)",
    re.I,
)
"""ksqlDB's refusals of a CREATE whose stream/table is there already, e.g. "Cannot add stream
'X': A stream with the same name already exists"; a topic that exists with another partition
count ("A Kafka topic with the name 'x' already exists, with different ...") is a real error."""


class KsqlServerError(KsqlServiceError):
    """The server refused a statement or a query; carries ksqlDB's numeric `error_code`."""

    def __init__(self, message: str, error_code: int | None = None) -> None:
        super().__init__(message, code=statement_error_code(error_code))
        self.message = message
        self.error_code = error_code


def split_statements(text: str) -> list[str]:
    """Split a script at top-level semicolons; quotes, backquotes and comments are respected.

    Each statement ends with ';' and keeps the comments inside it; comments before its first
    token belong to no statement and are dropped (so `SET` is recognised after a file header).
    Chunks that hold only comments or blanks are dropped.
    """
    statements: list[str] = []
    current: list[str] = []
    has_code = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'`\"":
            end = _quoted_end(text, i)
            current.append(text[i:end])
            has_code = True
            i = end
        elif text.startswith("--", i) or text.startswith("/*", i):
            if text.startswith("--", i):
                end = text.find("\n", i)
                end = n if end < 0 else end
            else:
                end = text.find("*/", i + 2)
                end = n if end < 0 else end + 2
            if has_code:
                current.append(text[i:end])
            i = end
        elif ch == ";":
            if has_code:
                statements.append("".join(current).strip() + ";")
            current, has_code = [], False
            i += 1
        else:
            if has_code or not ch.isspace():
                current.append(ch)
            has_code = has_code or not ch.isspace()
            i += 1
    if has_code:
        statements.append("".join(current).strip() + ";")
    return statements


def _quoted_end(text: str, start: int) -> int:
    """Index after the quote that closes the one at `start` (a doubled quote escapes itself)."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return len(text)


def statement_files(paths: Iterable[Path]) -> list[Path]:
    """`.sql` files to apply: a folder's own files in file-name order (not its subfolders)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".sql"))
        elif path.is_file():
            files.append(path)
        else:
            raise KsqlServiceError(f"no such file or folder: {path}", code="no_statements")
    return files


@dataclass
class KsqlClient:
    url: str
    timeout: float = 30.0

    def _error(self, response: httpx.Response) -> KsqlServerError:
        try:
            body = response.json()
        except ValueError:
            return KsqlServerError(f"HTTP {response.status_code}: {response.text[:200]}")
        if isinstance(body, dict) and "message" in body:
            return KsqlServerError(str(body["message"]), body.get("error_code"))
        return KsqlServerError(f"HTTP {response.status_code}: {response.text[:200]}")

    def ksql(self, sql: str, properties: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """POST /ksql; the entities, or KsqlServerError with the server's message."""
        body = {"ksql": sql, "streamsProperties": dict(properties or {})}
        try:
            response = httpx.post(
                f"{self.url}/ksql", json=body, timeout=self.timeout, **httpx_options("ksql")
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"KSQL server at {self.url} is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise self._error(response)
        entities: list[dict[str, Any]] = response.json()
        for entity in entities:
            status = entity.get("commandStatus") if isinstance(entity, dict) else None
            if isinstance(status, dict) and status.get("status") == "ERROR":
                raise KsqlServerError(str(status.get("message")))
        return entities

    def apply_files(
        self, files: Iterable[Path], on_statement: Callable[[Path, str], None] | None = None
    ) -> int:
        """Submit every statement of `files` in order; re-applying is harmless.

        A statement whose object already exists is counted as applied (ksqlDB says so for a
        CREATE without IF NOT EXISTS); any other refusal stops with the file and the message.
        """
        properties: dict[str, Any] = {}
        count = 0
        for file in files:
            for statement in split_statements(file.read_text(encoding="utf-8")):
                if _apply_property(statement, properties):
                    count += 1
                    continue
                try:
                    self.ksql(statement, properties)
                except KsqlServerError as exc:
                    if not _ALREADY_EXISTS.search(exc.message):
                        first_line = statement.splitlines()[0][:80]
                        raise KsqlServerError(
                            f"{file.name}: {first_line}: {exc.message}", exc.error_code
                        ) from exc
                count += 1
                if on_statement is not None:
                    on_statement(file, statement)
        return count

    def stream_query(
        self, sql: str, properties: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> Iterator[dict[str, Any] | list[Any]]:
        """POST /query-stream over HTTP/2 (prior knowledge): the header object, then each row.

        `timeout` bounds the wait for each next row (None: wait forever, for push queries);
        when it passes, the iteration simply ends.
        """
        body = {"sql": sql, "properties": dict(properties or {})}
        headers = {"Accept": "application/vnd.ksqlapi.delimited.v1"}
        limits = httpx.Timeout(self.timeout, read=timeout)
        try:
            with (
                httpx.Client(
                    http2=True, http1=False, timeout=limits, **httpx_options("ksql")
                ) as client,
                client.stream("POST", f"{self.url}/query-stream", json=body, headers=headers) as r,
            ):
                if r.status_code != 200:
                    r.read()
                    raise self._error(r)
                for line in r.iter_lines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if isinstance(item, dict) and "@type" in item and "message" in item:
                        raise KsqlServerError(str(item["message"]), item.get("error_code"))
                    yield item
        except httpx.ReadTimeout:
            return  # no row within `timeout`: the caller asked to stop waiting
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"KSQL server at {self.url} is unreachable: {exc}") from exc


def _apply_property(statement: str, properties: dict[str, Any]) -> bool:
    """Handle SET/UNSET locally (they scope the statements after them); True if it was one."""
    match = _SET.match(statement)
    if match:
        properties[match.group(1)] = match.group(2).replace("''", "'")
        return True
    match = _UNSET.match(statement)
    if match:
        properties.pop(match.group(1), None)
        return True
    return False
