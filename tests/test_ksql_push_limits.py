"""Push queries are bounded and released, and the KSQL server shuts down cleanly under load.

Each test starts its own KSQL server process (`fraudstream ksql serve`, a free port, its own
service id) on the real broker, and watches it from outside the way an operator would: resident
memory and thread count from /proc, /info latency, /close-query, the exit code after SIGTERM.
Clients are raw sockets (HTTP/1.1) and an `h2` connection (HTTP/2 stream reset), so a client
that reads a few rows and leaves, or never reads at all, is exactly that.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest

from services.common.kafka import (
    delete_topics,
    ensure_topic,
    make_admin,
    make_producer,
    produce_many,
)
from services.common.process import free_port, rss_of

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROWS = 60_000
PAYLOAD = "x" * 200
MB = 1024 * 1024


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no thread count for {pid}")


def _rss_mb(pid: int) -> float:
    rss = rss_of(pid)
    assert rss is not None, f"process {pid} is gone"
    return rss / MB


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ksql(self, sql: str) -> None:
        response = httpx.post(self.url + "/ksql", json={"ksql": sql}, timeout=60)
        assert response.status_code == 200, response.text

    def info_seconds(self) -> float:
        started = time.perf_counter()
        response = httpx.get(self.url + "/info", timeout=30)
        assert response.status_code == 200
        return time.perf_counter() - started

    def close_query(self, query_id: str) -> int:
        response = httpx.post(self.url + "/close-query", json={"queryId": query_id}, timeout=10)
        return response.status_code

    def settle(self, baseline_threads: int, timeout: float) -> float:
        """Seconds until the thread count is back to `baseline_threads` (fails after timeout)."""
        started = time.monotonic()
        while _threads(self.pid) > baseline_threads:
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"{_threads(self.pid)} threads, baseline {baseline_threads}, after {timeout} s"
                )
            time.sleep(0.02)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def source_topic() -> Iterator[str]:
    topic = f"push_limits_{uuid.uuid4().hex[:8]}"
    ensure_topic(topic, 1)
    producer = make_producer()
    produce_many(producer, topic, [f"{i},{PAYLOAD},{i / 2}".encode() for i in range(SOURCE_ROWS)])
    assert producer.flush(60) == 0
    yield topic
    delete_topics([topic])


@contextlib.contextmanager
def ksql_server(source_topic: str, *properties: str) -> Iterator[Server]:
    """A KSQL server of its own on a free port, with the stream PQ_SRC over `source_topic`."""
    port = free_port()
    service_id = f"pushlim_{uuid.uuid4().hex[:8]}_"
    log = Path(os.environ.get("FRAUDSTREAM_HOME", ".fraudstream")) / f"logs/{service_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "services.cli", "ksql", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--service-id", service_id]
    for prop in properties:
        cmd += ["--property", prop]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    server = Server(proc, port, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(server.url + "/info", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "KSQL server did not start"
            time.sleep(0.3)
        server.ksql(
            "CREATE STREAM PQ_SRC (ID BIGINT, TXT VARCHAR, V DOUBLE) "
            f"WITH (KAFKA_TOPIC='{source_topic}', VALUE_FORMAT='DELIMITED');"
        )
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        topics = make_admin(quiet=True).list_topics(timeout=10).topics
        delete_topics([t for t in topics if service_id in t])


# -- clients ------------------------------------------------------------------------------------

PUSH_SQL = "SELECT ID, TXT, V FROM PQ_SRC EMIT CHANGES;"
EARLIEST = {"auto.offset.reset": "earliest"}


def _request(path: str, sql: str) -> bytes:
    body = json.dumps({"sql": sql, "ksql": sql, "properties": EARLIEST}).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def open_query(
    port: int, path: str = "/query-stream", sql: str = PUSH_SQL, rcvbuf: int | None = None
) -> socket.socket:
    """A connection that has sent a push query and read nothing yet."""
    sock = socket.socket()
    if rcvbuf is not None:  # a client that does not read: keep the kernel's share small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", port))
    sock.sendall(_request(path, sql))
    return sock


def read_until(sock: socket.socket, done: Callable[[bytes], bool]) -> bytes:
    data = b""
    while not done(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def _query_id(data: bytes) -> str:
    start = data.index(b'"queryId":"') + len(b'"queryId":"')
    return data[start : data.index(b'"', start)].decode()


def read_rows_and_leave(port: int, rows: int = 5) -> int:
    """Open a push query, read its header and `rows` rows, hang up; the HTTP status."""
    with open_query(port) as sock:
        data = read_until(sock, lambda d: d.count(b"\n[") >= rows or d.startswith(b"HTTP/1.1 4"))
        return _status(data)


# -- tests --------------------------------------------------------------------------------------


def test_churning_clients_leave_no_memory_or_threads_behind(source_topic: str) -> None:
    """200 clients that read 5 rows and leave, three rounds: RSS and threads come back."""
    with ksql_server(source_topic) as server:
        with ThreadPoolExecutor(50) as pool:  # warm-up: imports, kernels, executor threads
            assert set(pool.map(lambda _: read_rows_and_leave(server.port), range(50))) == {200}
        time.sleep(2)
        base_threads, base_rss = _threads(server.pid), _rss_mb(server.pid)
        rounds: list[tuple[float, float, int, float]] = []
        for _ in range(3):
            with ThreadPoolExecutor(50) as pool:
                started = time.monotonic()
                statuses = list(pool.map(lambda _: read_rows_and_leave(server.port), range(200)))
                took = time.monotonic() - started
            peak_threads = _threads(server.pid)
            info_s = server.info_seconds()
            server.settle(base_threads, timeout=5)
            rounds.append((_rss_mb(server.pid), took, peak_threads, info_s))
            assert statuses.count(200) == 200, statuses
        deltas = [rss - base_rss for rss, *_ in rounds]
        print(
            f"\nchurn: baseline rss {base_rss:.0f} MB threads {base_threads}; "
            + "; ".join(
                f"round {n + 1}: {took:.1f} s, rss {rss:.0f} MB ({rss - base_rss:+.0f}), "
                f"threads after {peak} → baseline, /info {info * 1000:.0f} ms"
                for n, (rss, took, peak, info) in enumerate(rounds)
            )
            + f"; rss delta mean {statistics.mean(deltas):+.0f} MB, spread "
            f"{max(deltas) - min(deltas):.0f} MB"
        )
        assert max(deltas) < 100, deltas
        assert _threads(server.pid) <= base_threads


def test_clients_that_never_read_are_bounded_and_released(source_topic: str) -> None:
    with ksql_server(source_topic) as server:
        read_rows_and_leave(server.port)
        time.sleep(2)
        base_threads, base_rss = _threads(server.pid), _rss_mb(server.pid)
        clients = [open_query(server.port, rcvbuf=4096) for _ in range(20)]
        time.sleep(8)  # every query fills what it may hold, then waits for its client
        held_rss = _rss_mb(server.pid)
        info_s = server.info_seconds()
        for sock in clients:
            sock.close()
        released_s = server.settle(base_threads, timeout=5)
        time.sleep(1)
        after_rss = _rss_mb(server.pid)
        print(
            f"\nnon-reading: baseline {base_rss:.0f} MB, 20 stuck clients {held_rss:.0f} MB "
            f"({(held_rss - base_rss) / 20:.1f} MB each; topic "
            f"{SOURCE_ROWS * (len(PAYLOAD) + 12) / MB:.0f} MB), /info {info_s * 1000:.0f} ms, "
            f"threads back in {released_s:.2f} s, after {after_rss:.0f} MB"
        )
        assert held_rss - base_rss < 20 * 15, "more than 15 MB per stuck push query"
        assert after_rss - base_rss < 50
        assert info_s < 2.0


def test_http2_clients_that_do_not_grant_flow_control_are_bounded(source_topic: str) -> None:
    """HTTP/2 clients that read their socket but never send WINDOW_UPDATE: the server's stream
    window closes after 64 KiB, its send waits, and the query behind it stops fetching."""
    with ksql_server(source_topic) as server:
        read_rows_and_leave(server.port)
        time.sleep(2)
        base_threads, base_rss = _threads(server.pid), _rss_mb(server.pid)
        clients = [_h2_open_query(server.port, acknowledge=False) for _ in range(10)]
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # keep the sockets drained: only h2 holds back
            for conn, sock, _stream_id, _query_id in clients:
                sock.settimeout(0.01)
                with contextlib.suppress(TimeoutError):
                    conn.receive_data(sock.recv(65536))
        held_rss = _rss_mb(server.pid)
        for conn, sock, stream_id, _query_id in clients:
            conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            sock.sendall(conn.data_to_send())
        released_s = server.settle(base_threads, timeout=5)
        for _conn, sock, _stream_id, _query_id in clients:
            sock.close()
        print(
            f"\nh2 without WINDOW_UPDATE: baseline {base_rss:.0f} MB, 10 clients {held_rss:.0f} MB "
            f"({(held_rss - base_rss) / 10:.1f} MB each), released in {released_s:.2f} s"
        )
        assert held_rss - base_rss < 10 * 15


def test_disconnect_close_query_and_limit_release_within_a_second(source_topic: str) -> None:
    with ksql_server(source_topic) as server:
        read_rows_and_leave(server.port)
        time.sleep(2)
        base = _threads(server.pid)
        timings: dict[str, float] = {}

        # HTTP/1.1: the client reads its header and one row, then closes the connection.
        sock = open_query(server.port)
        query_id = _query_id(read_until(sock, lambda d: b"\n[" in d))
        sock.close()
        timings["http/1.1 disconnect"] = server.settle(base, timeout=1.0)
        assert server.close_query(query_id) == 400  # no longer registered

        # HTTP/2: the stream is reset, the connection stays open.
        conn, h2sock, stream_id, query_id = _h2_open_query(server.port)
        conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        h2sock.sendall(conn.data_to_send())
        timings["http/2 stream reset"] = server.settle(base, timeout=1.0)
        assert server.close_query(query_id) == 400
        h2sock.close()

        # /close-query ends the stream and frees the query.
        sock = open_query(server.port, path="/query")
        query_id = _query_id(read_until(sock, lambda d: b'"row"' in d))
        assert server.close_query(query_id) == 200
        timings["/close-query"] = server.settle(base, timeout=1.0)
        assert read_until(sock, lambda d: d.endswith(b"0\r\n\r\n"))
        sock.close()

        # LIMIT: the query ends by itself.
        sock = open_query(server.port, sql="SELECT ID FROM PQ_SRC EMIT CHANGES LIMIT 5;")
        data = read_until(sock, lambda d: d.endswith(b"0\r\n\r\n"))
        assert data.count(b"\n[") == 5
        timings["LIMIT 5"] = server.settle(base, timeout=1.0)
        assert server.close_query(_query_id(data)) == 400
        sock.close()
        print(
            "\nreleased after: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items())
        )


def _h2_open_query(
    port: int, acknowledge: bool = True
) -> tuple[h2.connection.H2Connection, socket.socket, int, str]:
    """An HTTP/2 (prior knowledge) push query with its header and a first row read; without
    `acknowledge` the client never grants the server more flow-control window."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    stream_id = conn.get_next_available_stream_id()
    body = json.dumps({"sql": PUSH_SQL, "properties": EARLIEST}).encode()
    headers = [
        (":method", "POST"),
        (":path", "/query-stream"),
        (":scheme", "http"),
        (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/json"),
    ]
    conn.send_headers(stream_id, headers)
    conn.send_data(stream_id, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    data = b""
    while b"\n[" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        for event in conn.receive_data(chunk):
            if isinstance(event, h2.events.DataReceived):
                data += event.data
                if acknowledge:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        sock.sendall(conn.data_to_send())
    return conn, sock, stream_id, _query_id(data)


def test_cap_answers_ksqldb_error_on_both_endpoints(source_topic: str) -> None:
    with ksql_server(source_topic, "ksql.max.push.queries=5") as server:
        clients = [open_query(server.port, rcvbuf=4096) for _ in range(5)]
        for sock in clients:  # each query has started (its header came back)
            assert read_until(sock, lambda d: b"queryId" in d).startswith(b"HTTP/1.1 200")
        for path in ("/query-stream", "/query"):
            body = {"sql": PUSH_SQL, "ksql": PUSH_SQL}
            response = httpx.post(server.url + path, json=body, timeout=10)
            assert response.status_code == 400
            assert response.json() == {
                "@type": "generic_error",
                "error_code": 40003,
                "message": "Maximum number of push queries exceeded",
            }
        clients.pop().close()  # one leaves: one more may start
        deadline = time.monotonic() + 2
        while read_rows_and_leave(server.port) != 200:
            assert time.monotonic() < deadline, "a freed slot was not given back"
            time.sleep(0.05)
        for sock in clients:
            sock.close()


def test_sigterm_with_open_non_reading_clients_exits_cleanly(source_topic: str) -> None:
    with ksql_server(source_topic) as server:
        sink = f"PQ_SINK_{uuid.uuid4().hex[:6]}"
        server.ksql(f"CREATE STREAM {sink} AS SELECT ID, V FROM PQ_SRC;")  # a persistent query
        clients = [open_query(server.port, rcvbuf=4096) for _ in range(50)]
        for sock in clients:
            assert read_until(sock, lambda d: b"queryId" in d).startswith(b"HTTP/1.1 200")
        info_s = server.info_seconds()
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(30)
        took = time.monotonic() - started
        for sock in clients:
            sock.close()
        print(f"\nSIGTERM with 50 open non-reading clients: exit {code} after {took:.1f} s")
        print(f"/info under that load: {info_s * 1000:.0f} ms")
        assert code == 0, server.log.read_text()[-3000:]
        assert took < 10
        assert "Traceback" not in server.log.read_text()
