"""The REST layer alone: ksqlDB's JSON shapes on every endpoint, over a real hypercorn server
(HTTP/1.1 and h2c) and through ksql-python-ng, with the in-memory engine of ksql_rest_fakes."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ksql_rest_fakes import FakeEngine, RunningServer

from services.ksql_server.rest.client import KsqlClient, split_statements
from services.ksql_server.rest.streams import choose_stream_format

JSON_BODY = {"Content-Type": "application/json"}
"""What real clients send: served behind the guard (docs/security.md), an untyped body is a 415."""

CREATE = (
    "CREATE STREAM pageviews (viewtime BIGINT, userid VARCHAR, amount DOUBLE) "
    "WITH (kafka_topic='pageviews', value_format='JSON');"
)


@pytest.fixture
def server() -> Iterator[RunningServer]:
    running = RunningServer(FakeEngine(), keepalive_s=0.2)
    running.start()
    yield running
    running.stop()


def _insert(url: str, target: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = json.dumps({"target": target}) + "".join("\n" + json.dumps(r) for r in rows)
    with httpx.Client(http2=True, http1=False) as client:
        response = client.post(url + "/inserts-stream", content=body, headers=JSON_BODY)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def _with_stream(server: RunningServer, rows: int = 0) -> None:
    assert httpx.post(server.url + "/ksql", json={"ksql": CREATE}).status_code == 200
    if rows:
        _insert(
            server.url,
            "PAGEVIEWS",
            [{"VIEWTIME": i, "USERID": f"u{i}", "AMOUNT": i / 2} for i in range(rows)],
        )


# -- /ksql ------------------------------------------------------------------------------------


def test_ksql_returns_entities_and_status(server: RunningServer) -> None:
    response = httpx.post(server.url + "/ksql", json={"ksql": CREATE + " SHOW STREAMS;"})
    assert response.status_code == 200
    created, shown = response.json()
    assert created["@type"] == "currentStatus"
    assert created["commandStatus"]["status"] == "SUCCESS"
    assert shown["@type"] == "streams" and shown["streams"][0]["name"] == "PAGEVIEWS"
    status = httpx.get(f"{server.url}/status/{created['commandId']}")
    assert status.status_code == 200 and status.json()["status"] == "SUCCESS"
    assert httpx.get(server.url + "/status").json()["commandStatuses"] == {
        created["commandId"]: "SUCCESS"
    }
    assert httpx.get(server.url + "/status/stream/NOPE/create").json()["error_code"] == 40400


def test_ksql_statement_error_carries_executed_entities(server: RunningServer) -> None:
    response = httpx.post(server.url + "/ksql", json={"ksql": CREATE + " CREAT oops;"})
    assert response.status_code == 400
    body = response.json()
    assert body["@type"] == "statement_error" and body["error_code"] == 40001
    assert body["statementText"].startswith("CREAT oops")
    assert [e["@type"] for e in body["entities"]] == ["currentStatus"]


def test_ksql_query_on_wrong_endpoint_is_40002(server: RunningServer) -> None:
    response = httpx.post(server.url + "/ksql", json={"ksql": "SELECT * FROM X;"})
    assert response.status_code == 400 and response.json()["error_code"] == 40002


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1,2]",
        b'{"ksql": 5}',
        b'{"streamsProperties": {}}',
        b'{"ksql": "SHOW STREAMS;", "streamsProperties": []}',
        b"\xff\xfe",
    ],
)
def test_ksql_bad_request_is_generic_error(server: RunningServer, body: bytes) -> None:
    response = httpx.post(server.url + "/ksql", content=body, headers=JSON_BODY)
    assert response.status_code == 400
    assert response.json()["@type"] == "generic_error"
    assert response.json()["error_code"] == 40000


def test_engine_crash_is_50000_without_trace(server: RunningServer) -> None:
    response = httpx.post(server.url + "/ksql", json={"ksql": "BOOM;"})
    assert response.status_code == 500
    assert response.json()["error_code"] == 50000
    assert "Traceback" not in response.text
    assert httpx.get(server.url + "/healthcheck").status_code == 200


# -- /query (HTTP/1.1, chunked) ----------------------------------------------------------------


def test_query_streams_ksqldb_chunked_array(server: RunningServer) -> None:
    _with_stream(server, rows=3)
    body = {"ksql": "SELECT * FROM pageviews;", "streamsProperties": {}}
    response = httpx.post(server.url + "/query", json=body)
    assert response.status_code == 200 and response.http_version == "HTTP/1.1"
    assert response.headers.get("transfer-encoding") == "chunked"
    lines = response.text.splitlines()
    assert lines[0].startswith("[{") and lines[-1].endswith("}]")
    assert json.loads(response.text) == [
        {
            "header": {
                "queryId": json.loads(lines[0][1:-1])["header"]["queryId"],
                "schema": "`VIEWTIME` BIGINT, `USERID` VARCHAR, `AMOUNT` DOUBLE",
            }
        },
        {"row": {"columns": [0, "u0", 0.0]}},
        {"row": {"columns": [1, "u1", 0.5]}},
        {"row": {"columns": [2, "u2", 1.0]}},
        {"finalMessage": "Query Completed"},
    ]


def test_push_query_keepalive_then_limit_reached(server: RunningServer) -> None:
    _with_stream(server)
    body = {"ksql": "SELECT * FROM pageviews EMIT CHANGES LIMIT 2;"}
    chunks: list[bytes] = []
    with httpx.stream("POST", server.url + "/query", json=body, timeout=10) as response:
        for chunk in response.iter_raw():
            chunks.append(chunk)
            if len(chunks) == 1:
                threading.Timer(
                    0.5,
                    _insert,
                    (
                        server.url,
                        "PAGEVIEWS",
                        [
                            {"VIEWTIME": 7, "USERID": "a", "AMOUNT": 1.5},
                            {"VIEWTIME": 8, "USERID": "b", "AMOUNT": None},
                            {"VIEWTIME": 9, "USERID": "c", "AMOUNT": 3.0},
                        ],
                    ),
                ).start()
    text = b"".join(chunks).decode()
    assert b"\n" in chunks[1:], "keep-alive newlines are sent while no row arrives"
    parsed = json.loads(text)
    assert parsed[1:] == [
        {"row": {"columns": [7, "a", 1.5]}},
        {"row": {"columns": [8, "b", None]}},
        {"finalMessage": "Limit Reached"},
    ]
    assert all(q.closed for q in server.engine.queries.values())


@pytest.mark.parametrize(("endpoint", "http2"), [("/query", False), ("/query-stream", True)])
def test_client_going_away_closes_the_query(
    server: RunningServer, endpoint: str, http2: bool
) -> None:
    _with_stream(server)
    body = {"ksql": "SELECT * FROM pageviews EMIT CHANGES;"}
    with (
        httpx.Client(http2=http2, http1=not http2) as client,
        client.stream("POST", server.url + endpoint, json=body) as response,
    ):
        chunks = response.iter_raw()
        next(chunks)
        time.sleep(0.5)  # keep-alives flow meanwhile
        (query,) = server.engine.queries.values()
        assert not query.closed
    deadline = time.monotonic() + 5
    while not query.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert query.closed, "the engine's query must be closed when its client disconnects"


def test_query_failure_midstream_is_error_message(server: RunningServer) -> None:
    _with_stream(server, rows=2)
    server.engine.fail_rows_with = RuntimeError("disk on fire")
    response = httpx.post(server.url + "/query", json={"ksql": "SELECT * FROM pageviews;"})
    last = json.loads(response.text)[-1]
    assert last["errorMessage"]["error_code"] == 50000
    assert "disk on fire" in last["errorMessage"]["message"]


def test_query_unknown_source_is_statement_error(server: RunningServer) -> None:
    response = httpx.post(server.url + "/query", json={"ksql": "SELECT * FROM nope EMIT CHANGES;"})
    assert response.status_code == 400
    assert response.json()["@type"] == "statement_error"


# -- /query-stream (h2c and HTTP/1.1) ----------------------------------------------------------


@pytest.mark.parametrize("http2", [True, False])
def test_query_stream_delimited(server: RunningServer, http2: bool) -> None:
    _with_stream(server, rows=2)
    with httpx.Client(http2=http2, http1=not http2) as client:
        response = client.post(
            server.url + "/query-stream", json={"sql": "SELECT * FROM pageviews;", "properties": {}}
        )
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert response.headers["content-type"].startswith("application/vnd.ksqlapi.delimited.v1")
    header, *rows = [json.loads(line) for line in response.text.splitlines()]
    assert header["columnNames"] == ["VIEWTIME", "USERID", "AMOUNT"]
    assert header["columnTypes"] == ["BIGINT", "VARCHAR", "DOUBLE"]
    assert header["queryId"].startswith("transient_")
    assert rows == [[0, "u0", 0.0], [1, "u1", 0.5]]


def test_query_stream_json_is_one_array(server: RunningServer) -> None:
    _with_stream(server, rows=2)
    with httpx.Client(http2=True, http1=False) as client:
        response = client.post(
            server.url + "/query-stream",
            json={"sql": "SELECT * FROM pageviews;"},
            headers={"Accept": "application/json"},
        )
    assert response.headers["content-type"].startswith("application/json")
    header, *rows = response.json()
    assert header["columnNames"] == ["VIEWTIME", "USERID", "AMOUNT"]
    assert rows == [[0, "u0", 0.0], [1, "u1", 0.5]]


def test_query_stream_errors(server: RunningServer) -> None:
    with httpx.Client(http2=True, http1=False) as client:
        bad = client.post(server.url + "/query-stream", json={"sql": "SELECT * FROM nope;"})
        accept = client.post(
            server.url + "/query-stream", json={"sql": "SELECT 1;"}, headers={"Accept": "text/html"}
        )
    assert bad.status_code == 400 and bad.json()["@type"] == "generic_error"
    assert accept.status_code == 406 and accept.json()["error_code"] == 40600


def test_close_query_ends_push_query(server: RunningServer) -> None:
    _with_stream(server)
    with (
        httpx.Client(http2=True, http1=False) as client,
        client.stream(
            "POST",
            server.url + "/query-stream",
            json={"sql": "SELECT * FROM pageviews EMIT CHANGES;"},
        ) as response,
    ):
        lines = response.iter_lines()
        query_id = json.loads(next(lines))["queryId"]
        closed = httpx.post(server.url + "/close-query", json={"queryId": query_id})
        assert closed.status_code == 200
        assert list(lines) == []
    again = httpx.post(server.url + "/close-query", json={"queryId": query_id})
    assert again.status_code == 400 and "No query" in again.json()["message"]


# -- /inserts-stream ---------------------------------------------------------------------------


def test_inserts_stream_acks_each_row(server: RunningServer) -> None:
    _with_stream(server)
    acks = _insert(server.url, "pageviews", [{"VIEWTIME": 1, "USERID": "x", "AMOUNT": 2.0}] * 3)
    assert acks == [{"status": "ok", "seq": i} for i in range(3)]
    assert len(server.engine.rows["PAGEVIEWS"]) == 3
    bad = _insert(server.url, "nope", [{"A": 1}])
    assert bad[0]["status"] == "error" and bad[0]["error_code"] == 40001
    head = httpx.post(server.url + "/inserts-stream", content=b'["no target"]', headers=JSON_BODY)
    assert head.status_code == 400 and head.json()["error_code"] == 40000


def test_inserts_stream_json_and_stop_at_first_bad_row(server: RunningServer) -> None:
    _with_stream(server)
    body = '{"target":"PAGEVIEWS"}\n{"VIEWTIME":1}\n[1]\n{"VIEWTIME":3}'
    with httpx.Client(http2=True, http1=False) as client:
        response = client.post(
            server.url + "/inserts-stream",
            content=body,
            headers={**JSON_BODY, "Accept": "application/json"},
        )
    acks = response.json()
    assert acks[0] == {"status": "ok", "seq": 0}
    assert acks[1]["status"] == "error" and acks[1]["seq"] == 1 and len(acks) == 2
    assert [r[0] for r in server.engine.rows["PAGEVIEWS"]] == [1]


def test_inserts_stream_acks_each_row_before_the_next_arrives(server: RunningServer) -> None:
    """A client may wait for a row's ack before sending the next one (chunked HTTP/1.1)."""
    _with_stream(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /inserts-stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )

        def chunk(data: bytes) -> None:
            sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

        received = b""
        chunk(b'{"target":"PAGEVIEWS"}\n')
        for i in range(3):
            chunk(b'{"VIEWTIME":%d}\n' % i)
            while b'"seq":%d}' % i not in received:
                received += sock.recv(4096)
        chunk(b"")
        while not received.endswith(b"0\r\n\r\n"):
            received += sock.recv(4096)
    assert received.startswith(b"HTTP/1.1 200")
    assert [r[0] for r in server.engine.rows["PAGEVIEWS"]] == [0, 1, 2]


# -- server endpoints --------------------------------------------------------------------------


def test_info_health_cluster_and_redirect(server: RunningServer) -> None:
    info = httpx.get(server.url + "/info").json()["KsqlServerInfo"]
    assert info["ksqlServiceId"] == "fake_" and info["serverStatus"] == "RUNNING"
    assert "version" in info and "kafkaClusterId" in info
    health = httpx.get(server.url + "/healthcheck").json()
    assert health["isHealthy"] is True and health["details"]["kafka"]["isHealthy"] is True
    cluster = httpx.get(server.url + "/clusterStatus").json()["clusterStatus"]
    assert next(iter(cluster.values()))["hostAlive"] is True
    root = httpx.get(server.url + "/")
    assert root.status_code == 302 and root.headers["location"].endswith("/info")
    missing = httpx.get(server.url + "/nope")
    assert missing.status_code == 404 and missing.json()["error_code"] == 40400
    wrong = httpx.get(server.url + "/ksql")
    assert wrong.status_code == 405 and wrong.json()["@type"] == "generic_error"


def test_healthcheck_reports_an_unreachable_broker() -> None:
    import asyncio

    from services.ksql_server.rest.app import KsqlRestApi

    calls: list[int] = []

    def broker_down() -> bool:
        calls.append(1)
        return False

    api = KsqlRestApi(FakeEngine(), kafka_check=broker_down)
    for _ in range(3):
        response = asyncio.run(api.healthcheck(None))  # type: ignore[arg-type]
        body = json.loads(bytes(response.body))
        assert response.status_code == 503 and body["isHealthy"] is False
        assert body["details"]["kafka"]["isHealthy"] is False
        assert body["details"]["metastore"]["isHealthy"] is True
    assert len(calls) == 1, "the broker verdict is cached between probes"


# -- ksql-python-ng, unchanged -----------------------------------------------------------------


def test_ksql_python_ng_calls(server: RunningServer) -> None:
    from ksql.errors import KSQLError

    from ksql import KSQLAPI  # type: ignore[attr-defined]

    client = KSQLAPI(server.url)
    assert client.create_stream(
        table_name="pageviews",
        columns_type=["viewtime bigint", "userid varchar", "amount double"],
        topic="pageviews",
        value_format="DELIMITED",
    )
    assert client.ksql("SHOW STREAMS")[0]["streams"][0]["name"] == "PAGEVIEWS"
    with pytest.raises(KSQLError):
        client.ksql("CREAT nothing")
    acks = client.inserts_stream(
        "PAGEVIEWS", [{"VIEWTIME": i, "USERID": f"u{i}", "AMOUNT": 1.0} for i in range(200)]
    )
    assert [a["status"] for a in acks] == ["ok"] * 200

    http1 = "".join(client.query("SELECT * FROM pageviews"))
    assert json.loads(http1)[1] == {"row": {"columns": [0, "u0", 1.0]}}
    rows = list(client.query("SELECT * FROM pageviews", use_http2=True, parse=True))
    assert rows[:2] == [
        {"VIEWTIME": 0, "USERID": "u0", "AMOUNT": 1.0},
        {"VIEWTIME": 1, "USERID": "u1", "AMOUNT": 1.0},
    ]
    assert len(rows) == 200
    assert client.close_query("transient_nope") is False


# -- client helpers ----------------------------------------------------------------------------


def test_split_statements_respects_quotes_and_comments() -> None:
    script = """
    -- a comment; with a semicolon
    SET 'auto.offset.reset' = 'earliest';
    CREATE STREAM `a;b` (x VARCHAR) WITH (kafka_topic='t;1', value_format='JSON');
    /* block; comment */
    SELECT 'it''s; here' FROM s;
    -- trailing comment only
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[0] == "SET 'auto.offset.reset' = 'earliest';"
    assert statements[1].startswith("CREATE STREAM `a;b`") and statements[1].endswith(");")
    assert statements[2].endswith("'it''s; here' FROM s;")


def test_apply_is_idempotent_and_sends_set_properties(server: RunningServer, tmp_path: Any) -> None:
    (tmp_path / "01_a.sql").write_text("-- header\nSET 'auto.offset.reset'='earliest';\n" + CREATE)
    (tmp_path / "02_b.sql").write_text("SHOW STREAMS;")
    from services.ksql_server.rest.client import statement_files

    client = KsqlClient(server.url)
    files = statement_files([tmp_path])
    assert [f.name for f in files] == ["01_a.sql", "02_b.sql"]
    assert client.apply_files(files) == 3
    assert server.engine.executed[0] == (CREATE, {"auto.offset.reset": "earliest"})
    assert not any(sql.startswith("SET") for sql, _ in server.engine.executed)
    assert client.apply_files(files) == 3  # "already exists" is tolerated on re-apply
    (tmp_path / "03_c.sql").write_text("CREAT broken;")
    with pytest.raises(Exception, match=r"03_c\.sql"):
        client.apply_files(statement_files([tmp_path]))


def test_accept_header_negotiation() -> None:
    assert choose_stream_format(None) == "application/vnd.ksqlapi.delimited.v1"
    assert choose_stream_format("*/*") == "application/vnd.ksqlapi.delimited.v1"
    assert choose_stream_format("application/json") == "application/json"
    assert choose_stream_format("application/json, application/vnd.ksqlapi.delimited.v1") == (
        "application/vnd.ksqlapi.delimited.v1"
    )
    assert choose_stream_format("text/html") is None
