"""Fuzzed requests never crash the REST layer or answer 500 with a stack trace.

Arbitrary bytes, arbitrary JSON, wrong field types, odd Accept headers and unknown paths go to
every endpoint of a real hypercorn server (HTTP/1.1 and h2c); each answer must be a 2xx/3xx or a
ksqlDB error object with a 4xx status, and the server must stay healthy afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ksql_rest_fakes import FakeEngine, RunningServer

ENDPOINTS = [
    "/ksql",
    "/query",
    "/query-stream",
    "/inserts-stream",
    "/close-query",
    "/info",
    "/healthcheck",
    "/status",
    "/status/stream/X/create",
    "/clusterStatus",
    "/",
]
FIELDS = ["ksql", "sql", "streamsProperties", "properties", "queryId", "target", "x"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
sqlish = st.lists(
    st.sampled_from(
        [
            "SELECT",
            "*",
            "FROM",
            "pageviews",
            "EMIT",
            "CHANGES",
            "LIMIT",
            "1",
            "CREATE",
            "STREAM",
            "(",
            ")",
            "WITH",
            "'",
            "`",
            ";",
            "SHOW",
            "STREAMS",
            "DROP",
            "x",
            ",",
            "\n",
            "--",
            "\x00",
        ]
    ),
    max_size=12,
).map(" ".join)
bodies = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(FIELDS), json_values | sqlish, max_size=4).map(
        lambda d: json.dumps(d).encode()
    ),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.tuples(sqlish, st.lists(json_values, max_size=3)).map(
        lambda t: "\n".join([json.dumps({"target": t[0]}), *map(json.dumps, t[1])]).encode()
    ),
)
accepts = st.sampled_from(
    [
        None,
        "*/*",
        "application/json",
        "application/vnd.ksqlapi.delimited.v1",
        "text/html",
        "application/vnd.ksql.v1+json",
        ",,;",
        "application/json;q=0.5, */*",
    ]
)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    engine = FakeEngine()
    engine.crash_on_boom = False
    engine.execute(
        "CREATE STREAM pageviews (viewtime BIGINT, userid VARCHAR) "
        "WITH (kafka_topic='pageviews', value_format='JSON');"
    )
    running = RunningServer(engine, keepalive_s=0.2)
    running.start()
    yield running
    running.stop()


def _send(client: httpx.Client, method: str, url: str, **kwargs: Any) -> None:
    """Send and check the answer; a successful (possibly endless) stream is not read further."""
    with client.stream(method, url, **kwargs) as response:
        if response.status_code < 400:
            return
        response.read()
        assert response.status_code < 500, response.text
        assert "Traceback" not in response.text
        body: Any = response.json()
        assert body["@type"] in ("generic_error", "statement_error")
        assert isinstance(body["error_code"], int) and isinstance(body["message"], str)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(ENDPOINTS) | st.text(max_size=20).map(lambda t: "/" + t.lstrip("/")),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    body=bodies,
    accept=accepts,
    http2=st.booleans(),
)
def test_fuzzed_requests_get_ksqldb_errors_not_crashes(
    server: RunningServer, path: str, method: str, body: bytes, accept: str | None, http2: bool
) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    with httpx.Client(http2=http2, http1=not http2, timeout=5) as client:
        try:
            content = body if method != "GET" else None
            _send(client, method, server.url + path, content=content, headers=headers)
        except httpx.InvalidURL:
            return  # the client refuses to send it; nothing reached the server


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sql=sqlish | st.text(max_size=80),
    props=json_values,
    endpoint=st.sampled_from(["/ksql", "/query"]),
)
def test_fuzzed_statements(server: RunningServer, sql: str, props: Any, endpoint: str) -> None:
    body = {"ksql": sql, "streamsProperties": props}
    with httpx.Client(timeout=5) as client:
        _send(client, "POST", server.url + endpoint, json=body)


def test_server_still_healthy_after_fuzzing(server: RunningServer) -> None:
    assert httpx.get(server.url + "/healthcheck").json()["isHealthy"] is True
