"""`fraudstream ksql apply|query` against a REST server backed by the in-memory test engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ksql_rest_fakes import FakeEngine, RunningServer
from typer.testing import CliRunner

from services.cli import app
from services.common.errors import FraudstreamError, ServiceUnavailable

CREATE = (
    "CREATE STREAM pageviews (viewtime BIGINT, userid VARCHAR) "
    "WITH (kafka_topic='pageviews', value_format='JSON');"
)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    running = RunningServer(FakeEngine(), keepalive_s=0.2)
    running.start()
    monkeypatch.setenv("KSQL_URL", running.url)
    yield running
    running.stop()


def test_apply_prints_count_and_reapplies(server: RunningServer, tmp_path: Path) -> None:
    (tmp_path / "01.sql").write_text("-- streams\nSET 'auto.offset.reset'='earliest';\n" + CREATE)
    (tmp_path / "notes.txt").write_text("not a statement file")
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(app, ["ksql", "apply", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert result.output.strip().splitlines()[-1] == "applied 2 statements"


def test_apply_reports_the_failing_file(server: RunningServer, tmp_path: Path) -> None:
    (tmp_path / "02_bad.sql").write_text("CREAT STREAM nope;")
    result = CliRunner().invoke(app, ["ksql", "apply", str(tmp_path)])
    assert isinstance(result.exception, FraudstreamError)
    assert "02_bad.sql" in str(result.exception) and "Syntax Error" in str(result.exception)


def test_query_prints_rows_then_count(server: RunningServer) -> None:
    httpx.post(server.url + "/ksql", json={"ksql": CREATE})
    rows = [{"VIEWTIME": i, "USERID": f"u{i}"} for i in range(3)]
    body = json.dumps({"target": "PAGEVIEWS"}) + "".join("\n" + json.dumps(r) for r in rows)
    httpx.post(
        server.url + "/inserts-stream", content=body, headers={"Content-Type": "application/json"}
    )
    result = CliRunner().invoke(app, ["ksql", "query", "SELECT * FROM pageviews;"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == [
        "VIEWTIME | USERID",
        "0 | u0",
        "1 | u1",
        "2 | u2",
        "3 rows",
    ]
    result = CliRunner().invoke(app, ["ksql", "query", "--json", "SELECT * FROM pageviews;"])
    assert json.loads(result.output.splitlines()[0]) == {"VIEWTIME": 0, "USERID": "u0"}


def test_push_query_timeout_ends_with_count(server: RunningServer) -> None:
    httpx.post(server.url + "/ksql", json={"ksql": CREATE})
    sql = "SELECT * FROM pageviews EMIT CHANGES;"
    result = CliRunner().invoke(app, ["ksql", "query", "--timeout", "0.5", sql])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "0 rows"


def test_query_errors_are_one_line(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(app, ["ksql", "query", "SELECT * FROM nope;"])
    assert isinstance(result.exception, FraudstreamError)
    assert "does not exist" in str(result.exception)
    monkeypatch.setenv("KSQL_URL", "http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["ksql", "query", "SELECT 1;"])
    assert isinstance(result.exception, ServiceUnavailable)
