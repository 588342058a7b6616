"""The REST layer's side of bounded streams, with the in-memory engine (no broker):
`/inserts-stream` answers an over-long line or a row that is not JSON with ksqlDB's error ack
(never an empty 200), and a shutdown ends open push-query streams at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from ksql_rest_fakes import FakeEngine, RunningServer

from services.ksql_server.rest import inserts

CREATE = (
    "CREATE STREAM pageviews (viewtime BIGINT, userid VARCHAR, amount DOUBLE) "
    "WITH (kafka_topic='pageviews', value_format='JSON');"
)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    monkeypatch.setattr(inserts, "MAX_LINE_BYTES", 1024)
    running = RunningServer(FakeEngine(), keepalive_s=0.2)
    running.start()
    assert httpx.post(running.url + "/ksql", json={"ksql": CREATE}).status_code == 200
    yield running
    running.stop()


def _post_inserts(server: RunningServer, body: bytes, json_acks: bool = False) -> httpx.Response:
    headers = {"Accept": "application/json"} if json_acks else {}
    return httpx.post(server.url + "/inserts-stream", content=body, headers=headers, timeout=10)


def _acks(response: httpx.Response) -> list[dict[str, object]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_too_long_row_gets_an_error_ack_and_ends_the_stream(server: RunningServer) -> None:
    body = (
        b'{"target":"PAGEVIEWS"}\n{"VIEWTIME":1}\n{"USERID":"' + b"x" * 2000 + b'"}\n{"VIEWTIME":2}'
    )
    response = _post_inserts(server, body)
    assert response.status_code == 200
    ok, error = _acks(response)
    assert ok == {"status": "ok", "seq": 0}
    assert error["status"] == "error" and error["seq"] == 1 and error["error_code"] == 40000
    assert "longer than 1024 bytes" in str(error["message"])
    assert [r[0] for r in server.engine.rows["PAGEVIEWS"]] == [1]


def test_too_long_row_in_the_json_framing_is_still_one_json_array(server: RunningServer) -> None:
    body = b'{"target":"PAGEVIEWS"}\n' + b"[" * 5000
    acks = _post_inserts(server, body, json_acks=True).json()
    assert [a["status"] for a in acks] == ["error"] and acks[0]["seq"] == 0


def test_too_long_first_line_is_a_400(server: RunningServer) -> None:
    response = _post_inserts(server, b'{"target":"' + b"P" * 5000 + b'"}\n')
    assert response.status_code == 400
    assert response.json()["@type"] == "generic_error"
    assert response.json()["error_code"] == 40000


def test_row_that_is_not_json_gets_ksqldbs_ack(server: RunningServer) -> None:
    response = _post_inserts(server, b'{"target":"PAGEVIEWS"}\n{ijqwdijqw\n{"VIEWTIME":2}')
    assert response.status_code == 200
    assert _acks(response) == [
        {
            "status": "error",
            "seq": 0,
            "error_code": 40000,
            "message": "Invalid JSON in inserts stream",
        }
    ]


def test_long_line_in_small_chunks_is_read_in_linear_time(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1 MB row sent 64 bytes at a time: each chunk is searched once, not the whole line."""
    monkeypatch.setattr(inserts, "MAX_LINE_BYTES", 4 * 1024 * 1024)
    row = json.dumps({"VIEWTIME": 7, "USERID": "u" * 1_000_000}).encode()
    data = b'{"target":"PAGEVIEWS"}\n' + row

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 64):
            yield data[start : start + 64]

    started = time.monotonic()
    response = httpx.post(server.url + "/inserts-stream", content=chunks(), timeout=60)
    assert _acks(response) == [{"status": "ok", "seq": 0}]
    assert time.monotonic() - started < 30


def test_shutdown_ends_open_push_streams(server: RunningServer) -> None:
    """`begin_shutdown` (run on SIGTERM) ends a stream whose query has no rows, and refuses
    new queries with 50300."""
    lines: list[bytes] = []

    def read() -> None:
        body = {"sql": "SELECT * FROM PAGEVIEWS EMIT CHANGES;"}
        with httpx.stream("POST", server.url + "/query-stream", json=body, timeout=30) as response:
            for line in response.iter_lines():
                lines.append(line.encode())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while not lines:
        assert time.monotonic() < deadline, "no header"
        time.sleep(0.02)
    assert server._loop is not None
    server._loop.call_soon_threadsafe(server.app.state.api.begin_shutdown)
    reader.join(5)
    assert not reader.is_alive(), "the stream stayed open"
    refused = httpx.post(server.url + "/query-stream", json={"sql": "SELECT * FROM PAGEVIEWS;"})
    assert refused.status_code == 503 and refused.json()["error_code"] == 50300
