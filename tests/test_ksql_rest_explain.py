"""DESCRIBE <source> EXTENDED and EXPLAIN on the real engine and broker, through ksqlDB's REST
shapes and ksql-python-ng's own helpers (marked slow; one engine, one stream, one query).

- `DESCRIBE <source> EXTENDED` (ksqlDB's documented form, what ksql-python-ng sends) and the
  older `DESCRIBE EXTENDED <source>` give the same `sourceDescription`, so
  `ksql.utils.get_dependent_queries` finds the persistent query that reads and writes them;
- `EXPLAIN <query id>` gives the `queryDescription` entity of the running query;
  `EXPLAIN <statement>` plans without running; unknown ids and statements that run no query are
  40001 statement errors with ksqlDB's messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ksql.errors import KSQLError
from ksql.utils import get_dependent_queries
from ksql_rest_fakes import RunningServer

from ksql import KSQLAPI  # type: ignore[attr-defined]
from services.ksql_server.engine import Engine

pytestmark = pytest.mark.slow

QUERY_DESCRIPTION_KEYS = [
    "id",
    "statementText",
    "windowType",
    "fields",
    "sources",
    "sinks",
    "topology",
    "executionPlan",
    "overriddenProperties",
    "ksqlHostQueryStatus",
    "queryType",
    "queryErrors",
    "tasksMetadata",
    "consumerGroupId",
    "state",
]
"""ksqlDB's QueryDescription JSON properties, in its order."""

CSAS = "CREATE STREAM BIG AS SELECT ID, UCASE(NAME) AS NAME FROM SMALL WHERE ID > 1 EMIT CHANGES;"


@pytest.fixture(scope="module")
def served(kafka_bootstrap: str) -> Iterator[tuple[RunningServer, str]]:
    """A real engine behind the real REST app, with SMALL and the persistent query BIG."""
    import uuid

    unique = uuid.uuid4().hex[:8]
    engine = Engine(
        kafka_bootstrap,
        None,
        service_id=f"x{unique}_",
        topic_prefix=f"explain_{unique}_",
        command_topic=False,
    )
    server = RunningServer(engine, keepalive_s=0.5)  # type: ignore[arg-type]
    server.start()
    created = engine.execute(
        "CREATE STREAM SMALL (ID INT KEY, NAME STRING) "
        "WITH (KAFKA_TOPIC='small', VALUE_FORMAT='JSON', PARTITIONS=1);" + CSAS
    )
    query_id = created[1]["commandStatus"]["queryId"]
    yield server, query_id
    server.stop()
    engine.close()
    from services.common.kafka import delete_topics, make_admin

    topics = make_admin(kafka_bootstrap).list_topics(timeout=10).topics
    delete_topics([t for t in topics if t.startswith(engine.ctx.topic_prefix)], kafka_bootstrap)


def _ksql(url: str, sql: str) -> httpx.Response:
    return httpx.post(url + "/ksql", json={"ksql": sql, "streamsProperties": {}}, timeout=30)


def test_describe_source_extended_both_forms(served: tuple[RunningServer, str]) -> None:
    server, query_id = served
    client = KSQLAPI(server.url)
    new_form = client.ksql("DESCRIBE SMALL EXTENDED")
    old_form = client.ksql("DESCRIBE EXTENDED SMALL")
    for entity, text in ((new_form[0], "DESCRIBE SMALL EXTENDED;"), (old_form[0], None)):
        assert entity["@type"] == "sourceDescription"
        if text:
            assert entity["statementText"] == text
        description = entity["sourceDescription"]
        assert description["extended"] is True
        assert description["name"] == "SMALL"
        assert [q["id"] for q in description["readQueries"]] == [query_id]
        assert description["writeQueries"] == []
        assert description["partitions"] == 1
    plain = client.ksql("DESCRIBE SMALL")[0]["sourceDescription"]
    assert plain["extended"] is False


def test_get_dependent_queries_finds_the_query(served: tuple[RunningServer, str]) -> None:
    server, query_id = served
    client = KSQLAPI(server.url)
    assert get_dependent_queries(client, "SMALL") == ([query_id], [])
    assert get_dependent_queries(client, "BIG") == ([], [query_id])
    with pytest.raises(KSQLError) as missing:  # ksql-python-ng maps 40001 to "no such stream"
        client.ksql("DESCRIBE NOPE EXTENDED")
    assert missing.value.error_code == 40001


def test_explain_running_query(served: tuple[RunningServer, str]) -> None:
    server, query_id = served
    response = _ksql(server.url, f"EXPLAIN {query_id};")
    assert response.status_code == 200, response.text
    [entity] = response.json()
    assert list(entity) == ["@type", "statementText", "queryDescription", "warnings"]
    assert entity["@type"] == "queryDescription"
    assert entity["statementText"] == f"EXPLAIN {query_id};"
    assert entity["warnings"] == []
    description: dict[str, Any] = entity["queryDescription"]
    assert list(description) == QUERY_DESCRIPTION_KEYS
    assert description["id"] == query_id
    assert description["statementText"] == CSAS
    assert description["windowType"] is None
    assert description["fields"] == [
        {
            "name": "ID",
            "schema": {"type": "INTEGER", "fields": None, "memberSchema": None},
            "type": "KEY",
        },
        {"name": "NAME", "schema": {"type": "STRING", "fields": None, "memberSchema": None}},
    ]
    assert description["sources"] == ["SMALL"]
    assert description["sinks"] == ["BIG"]
    assert description["queryType"] == "PERSISTENT"
    assert description["state"] == "RUNNING"
    assert list(description["ksqlHostQueryStatus"].values()) == ["RUNNING"]
    assert description["consumerGroupId"].endswith(f"query_{query_id}")
    plan = description["executionPlan"].splitlines()
    assert [line.split("]")[0].strip() for line in plan] == [
        "> [ SINK",
        "> [ PROJECT",
        "> [ FILTER",
        "> [ SOURCE",
    ]
    assert plan[0].endswith(f"| Logger: {query_id}.BIG")
    assert "| Schema: ID INTEGER KEY, NAME STRING |" in plan[0]
    assert description["topology"].startswith("Topologies:\n   Sub-topology: 0\n")
    assert "(topics: [small])" in description["topology"]


def test_explain_errors_are_ksqldb_statement_errors(served: tuple[RunningServer, str]) -> None:
    server, _ = served
    response = _ksql(server.url, "EXPLAIN CSAS_NOPE_42;")
    assert response.status_code == 400
    assert response.json() == {
        "@type": "statement_error",
        "error_code": 40001,
        "message": "Query with id:CSAS_NOPE_42 does not exist, use SHOW QUERIES to view the "
        "full set of queries.",
        "statementText": "EXPLAIN CSAS_NOPE_42;",
        "entities": [],
    }
    response = _ksql(server.url, "EXPLAIN SHOW STREAMS;")
    assert response.status_code == 400
    body = response.json()
    assert (body["error_code"], body["message"]) == (
        40001,
        "The provided statement does not run a ksql query",
    )


def test_explain_statement_plans_without_running(served: tuple[RunningServer, str]) -> None:
    server, _ = served
    engine: Engine = server.engine  # type: ignore[assignment]
    before = set(engine.queries)
    text = "EXPLAIN CREATE STREAM NEWS AS SELECT ID, NAME FROM SMALL;"
    [entity] = _ksql(server.url, text).json()
    description = entity["queryDescription"]
    assert description["id"].startswith("CSAS_NEWS_")
    assert description["statementText"] == "CREATE STREAM NEWS AS SELECT ID, NAME FROM SMALL;"
    assert description["sinks"] == ["NEWS"]
    assert description["state"] is None
    assert description["ksqlHostQueryStatus"] == {}
    assert set(engine.queries) == before
    assert engine.metastore.get("NEWS") is None
    [select] = _ksql(server.url, "EXPLAIN SELECT * FROM SMALL EMIT CHANGES;").json()
    pushed = select["queryDescription"]
    assert pushed["id"].startswith("transient_SMALL_")
    assert pushed["sinks"] == []
    assert pushed["queryType"] == "PUSH"
    assert [f["name"] for f in pushed["fields"]] == ["ID", "NAME"]
