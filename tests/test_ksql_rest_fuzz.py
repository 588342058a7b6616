"""Fuzzed requests never crash the REST layer or answer 500 with a stack trace.

Arbitrary bytes, arbitrary JSON, wrong field types, odd Accept headers and unknown paths go to
every endpoint of a real hypercorn server (HTTP/1.1 and h2c); each answer must be a 2xx/3xx or a
ksqlDB error object with a 4xx status, and the server must stay healthy afterwards. Statements
then go through the real parser, planner and expression compiler (deep nesting, huge literals,
lone surrogates, random grammar tokens) with the same promise, and a slow test asks the real
server.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ksql_rest_fakes import FakeEngine, FakeQuery, RunningServer

from services.ksql_server import types as T
from services.ksql_server.engine_api import PushQuery, as_statement_error
from services.ksql_server.errors import KsqlError
from services.ksql_server.expressions import ExpressionCompiler, Scope
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.metastore import DataSource, MetaStore
from services.ksql_server.parser import ast as A
from services.ksql_server.parser import parse, split_statements
from services.ksql_server.parser.limits import ensure_recursion_headroom
from services.ksql_server.planner.plan import plan_select

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


# ---------------------------------------------------------------------------------------------
# Statements through the real parser → planner → expression compiler (issue #11): deep nesting,
# huge literals, lone surrogates and random tokens of the grammar never answer 500, and every
# error is ksqlDB's shape without a Python exception's name.

PYTHON_EXCEPTIONS = [
    *sorted(n for n in dir(builtins) if n.endswith(("Error", "Exception")) and n != "Exception"),
    *["KafkaException", "ParseError", "KsqlError", "Traceback"],
]
ensure_recursion_headroom()  # as the server's first statement does; hypothesis warns otherwise


class StatementEngine(FakeEngine):
    """The real front half of the engine (split, parse, limits, plan, compile, evaluate VALUES)
    over an in-memory metastore with one stream, SRC; nothing reaches a broker. Failures go
    through the engine's own mapping (`as_statement_error`), as in `Engine.execute`."""

    service_id = "statements_"

    def __init__(self) -> None:
        super().__init__()
        self.metastore = MetaStore()
        self.metastore.put(
            DataSource(
                name="SRC",
                kind="STREAM",
                topic="src",
                key_columns=[("ID", T.BIGINT)],
                value_columns=[("A", T.INTEGER), ("S", T.STRING), ("F", T.BOOLEAN)],
                key_format=FormatInfo("KAFKA"),
                value_format=FormatInfo("JSON"),
                sql="CREATE STREAM SRC …",
            )
        )

    def execute(
        self, sql: str, properties: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        entities: list[dict[str, Any]] = []
        try:
            texts = split_statements(sql)
        except Exception as exc:
            raise as_statement_error(exc, sql) from exc
        for text in texts:
            try:
                self._statement(parse(text))
            except Exception as exc:
                raise as_statement_error(exc, text, entities) from exc
            entities.append({"@type": "currentStatus", "statementText": text, "warnings": []})
        return entities

    def _statement(self, stmt: A.Statement) -> None:
        if isinstance(stmt, A.Query):
            plan_select(stmt.select, self.metastore, persistent=False)
        elif isinstance(stmt, A.CreateSource) and stmt.query is not None:
            plan_select(stmt.query, self.metastore, persistent=True, sink_name=stmt.name)
        elif isinstance(stmt, A.InsertValues):
            compiler = ExpressionCompiler(Scope([]))
            for value in stmt.values:
                compiled = compiler.compile(value)
                try:
                    eval(compiled.code, dict(compiler.namespace), {"r": []})
                except Exception as exc:  # as Engine._insert_values: the client's values
                    raise KsqlError(f"Could not evaluate a value: {exc}") from exc

    async def start_query(self, sql: str, properties: Mapping[str, Any] | None = None) -> PushQuery:
        self.execute(sql)

        async def no_rows() -> AsyncIterator[list[Any]]:
            empty: list[list[Any]] = []
            for row in empty:
                yield row

        return FakeQuery("q1", ["A"], ["INTEGER"], no_rows(), is_pull=True)


GRAMMAR_TOKENS = [
    *[
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "CAST",
        "AS",
        "IS",
        "NULL",
        "LIKE",
        "BETWEEN",
        "IN",
    ],
    *[
        "ARRAY",
        "MAP",
        "STRUCT",
        "EMIT",
        "CHANGES",
        "LIMIT",
        "INSERT",
        "INTO",
        "VALUES",
        "CREATE",
        "STREAM",
        "WITH",
        "TRUE",
        "FALSE",
    ],
    *[
        "SRC",
        "A",
        "S",
        "F",
        "ID",
        "ABS",
        "CONCAT",
        "UCASE",
        "INT",
        "STRING",
        "DOUBLE",
        "DECIMAL",
        "ESCAPE",
        "PARTITION",
        "BY",
    ],
    *["(", ")", "[", "]", ",", ";", "+", "-", "*", "/", "%", "||", "=", "<>", "<", ">="],
    *[":=", "->", "=>", "'x'", "''", "'it''s'", "1", "0", "2147483648", "1.5", "2e3", "`q`"],
]
deep = st.tuples(
    st.sampled_from(["(", "NOT ", "ABS(", "- ", "ARRAY[", "CASE WHEN F THEN ", "CAST("]),
    st.integers(1, 400),
).map(
    lambda t: (
        "SELECT "
        + t[0] * t[1]
        + ("F" if t[0] == "NOT " else "A")
        + {
            "(": ")",
            "NOT ": "",
            "ABS(": ")",
            "- ": "",
            "ARRAY[": "]",
            "CASE WHEN F THEN ": " END",
            "CAST(": " AS INT)",
        }[t[0]]
        * t[1]
        + " AS X FROM SRC WHERE "
        + " AND ".join(["A > 0"] * min(t[1], 300))
        + " EMIT CHANGES;"
    )
)
grammar_soup = st.lists(st.sampled_from(GRAMMAR_TOKENS), max_size=40).map(" ".join)
weird_text = st.text(
    alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010) | st.sampled_from("'`\";"),
    max_size=6,
).map(lambda t: f"INSERT INTO SRC (S) VALUES ('{t}');")
statements = st.one_of(
    grammar_soup,
    deep,
    weird_text,
    st.sampled_from(["SELECT A FROM SRC", "INSERT INTO SRC (A) VALUES (1/0)"]).map(
        lambda s: s + ";"
    ),
)


@pytest.fixture(scope="module")
def statement_server() -> Iterator[RunningServer]:
    running = RunningServer(StatementEngine(), keepalive_s=0.2)  # type: ignore[arg-type]
    running.start()
    yield running
    running.stop()


def _check_statement_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:2000]
    if response.status_code < 400:
        return
    body = response.json()
    assert body["@type"] in ("statement_error", "generic_error"), body
    assert isinstance(body["error_code"], int) and body["error_code"] // 100 == response.status_code
    if body["@type"] == "statement_error":
        assert isinstance(body["statementText"], str) and isinstance(body["entities"], list)
    for name in PYTHON_EXCEPTIONS:
        assert name not in body["message"], body["message"][:500]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sql=statements, endpoint=st.sampled_from(["/ksql", "/query", "/query-stream"]))
def test_fuzzed_statements_through_the_real_parser_never_500(
    statement_server: RunningServer, sql: str, endpoint: str
) -> None:
    field = "sql" if endpoint == "/query-stream" else "ksql"
    with httpx.Client(timeout=60) as client:
        response = client.post(statement_server.url + endpoint, content=json.dumps({field: sql}))
        _check_statement_answer(response)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(1, 15 * 1024 * 1024),
    where=st.sampled_from(["insert", "where", "unterminated"]),
)
def test_huge_literals_within_the_body_limit_never_500(
    statement_server: RunningServer, size: int, where: str
) -> None:
    literal = "y" * size
    sql = {
        "insert": f"INSERT INTO SRC (S) VALUES ('{literal}');",
        "where": f"CREATE STREAM OUT AS SELECT * FROM SRC WHERE S = '{literal}';",
        "unterminated": f"SELECT * FROM SRC WHERE S = '{literal}",
    }[where]
    with httpx.Client(timeout=120) as client:
        response = client.post(statement_server.url + "/ksql", content=json.dumps({"ksql": sql}))
        _check_statement_answer(response)
        if response.status_code >= 400:  # errors quote a bounded part of the statement
            assert len(response.content) < 200_000


@pytest.mark.parametrize(
    "raw",
    [
        b'{"ksql": "SELECT \'\\ud800\' FROM SRC;"}',
        b'{"ksql": "SHOW STREAMS;", "streamsProperties": {"\\udfff": 1}}',
        b'{"sql": "SELECT * FROM SRC;", "properties": {"p": ["\\udc00"]}}',
    ],
)
def test_lone_surrogates_in_bodies_are_bad_requests(
    statement_server: RunningServer, raw: bytes
) -> None:
    for endpoint in ("/ksql", "/query", "/query-stream"):
        response = httpx.post(statement_server.url + endpoint, content=raw, timeout=10)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == 40000
        assert "surrogate" in response.json()["message"]


@pytest.mark.slow
def test_real_server_answers_deep_huge_and_surrogate_statements(ksql_url: str, unique: str) -> None:
    """The same promises from the real KSQL server (its engine, command topic and broker)."""
    src = f"FUZZ_SRC_{unique}".upper()
    client = httpx.Client(timeout=120)

    def ksql(sql: str) -> httpx.Response:
        response = client.post(
            ksql_url + "/ksql",
            content=json.dumps({"ksql": sql}),
            headers={"Content-Type": "application/vnd.ksql.v1+json"},
        )
        _check_statement_answer(response)
        return response

    created = ksql(
        f"CREATE STREAM {src} (ID BIGINT KEY, A INT, S VARCHAR) WITH (KAFKA_TOPIC='{src}', "
        "VALUE_FORMAT='JSON', PARTITIONS=1);"
    )
    assert created.status_code == 200, created.text
    ands = " AND ".join(f"A <> {1000 + i}" for i in range(200))
    nested = "(" * 100 + "A" + " + 1)" * 100
    ok = ksql(f"CREATE STREAM {src}_ANDS AS SELECT ID, {nested} AS N FROM {src} WHERE {ands};")
    assert ok.status_code == 200, ok.text[:500]
    too_deep = ksql(f"SELECT {'(' * 300}A{')' * 300} FROM {src};")
    assert too_deep.status_code == 400 and too_deep.json()["error_code"] == 40001
    huge = ksql(f"INSERT INTO {src} (ID, A, S) VALUES (1, 2, '{'z' * 15_000_000}');")
    assert huge.status_code == 400 and huge.json()["error_code"] == 40001
    surrogate = client.post(
        ksql_url + "/ksql",
        content=b'{"ksql": "INSERT INTO X (S) VALUES (\'\\ud800\');"}',
        headers={"Content-Type": "application/vnd.ksql.v1+json"},
    )
    assert surrogate.status_code == 400 and surrogate.json()["error_code"] == 40000
    ksql(f"DROP STREAM {src}_ANDS;")
    assert httpx.get(ksql_url + "/healthcheck").status_code == 200
