"""Windowed sources and push queries over windows (planner/windowing.py and the runtime paths).

Kafka-free: statements are parsed and planned against an in-memory metastore, records are
`confluent_kafka.Message`s built here, and the expected values are ksqlDB's (push-queries.json,
tumbling-windows.json, session-windows.json, joins.json of its query-validation tests).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from confluent_kafka import Message
from ksql_planner_support import metastore_of

from services.ksql_server import types as T
from services.ksql_server.ddl import build_source
from services.ksql_server.errors import KsqlError, UnsupportedError
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.formats.windowed import (
    WindowInfo,
    flat_key_deserializer,
    session_windowed,
    split_windowed,
    time_windowed,
)
from services.ksql_server.metastore import DataSource, MetaStore
from services.ksql_server.parser.parser import parse
from services.ksql_server.planner.plan import QueryPlan, plan_select
from services.ksql_server.planner.windowing import window_info
from services.ksql_server.runtime.processor import BatchProcessor, ProcessingLog
from services.ksql_server.runtime.stateful import build_operator
from services.ksql_server.state import QueryStores

TUMBLING_1S = WindowInfo("TUMBLING", 1000)


def _source(name: str, window: WindowInfo | None, topic: str | None = None) -> DataSource:
    return DataSource(
        name,
        "STREAM",
        topic or name.lower(),
        [("K", T.STRING)],
        [("ID", T.INTEGER)],
        FormatInfo("KAFKA"),
        FormatInfo("JSON"),
        "",
        window=window,
    )


def _plan(sql: str, metastore: MetaStore, persistent: bool) -> QueryPlan:
    stmt: Any = parse(sql)
    query = stmt.query if hasattr(stmt, "query") else stmt.select  # CREATE ... AS, or a SELECT
    return plan_select(query, metastore, persistent=persistent, sink_name="OUT")


def _message(key: bytes | None, value: dict[str, Any] | None, ts: int, offset: int) -> Message:
    return Message(
        topic="t",
        key=key,
        value=None if value is None else json.dumps(value).encode(),
        partition=0,
        offset=offset,
        timestamp=(1, ts),
    )


def _processor(plan: QueryPlan, sink: DataSource | None = None) -> BatchProcessor:
    plog = ProcessingLog(None, "plog")
    return BatchProcessor("Q", plan, sink, None, plog, "out" if sink else "")


# ---------------------------------------------------------------------- DDL
def test_create_with_window_type_declares_a_windowed_source() -> None:
    stmt: Any = parse(
        "CREATE STREAM S (K INT KEY, ID BIGINT) WITH (kafka_topic='t', value_format='JSON', "
        "WINDOW_TYPE='Tumbling', WINDOW_SIZE='30 seconds');"
    )
    source = build_source(stmt, "", {}, lambda *_: None)
    assert source.window == WindowInfo("TUMBLING", 30_000)
    session: Any = parse(
        "CREATE TABLE T (K INT PRIMARY KEY, C BIGINT) WITH (kafka_topic='t', "
        "value_format='JSON', window_type='session');"
    )
    assert build_source(session, "", {}, lambda *_: None).window == WindowInfo("SESSION")


def test_windowed_source_without_key_is_refused() -> None:
    stmt: Any = parse(
        "CREATE STREAM S (F0 INT) WITH (kafka_topic='t', value_format='JSON', "
        "window_type='SESSION');"
    )
    with pytest.raises(KsqlError, match=r"Windowed sources require a key column\."):
        build_source(stmt, "", {}, lambda *_: None)


# ---------------------------------------------------------------------- rows and plans
def test_flat_key_deserializer_appends_the_window() -> None:
    def decode(b: bytes | None) -> list[Any] | None:
        return None if b is None else [b.decode()]

    de = flat_key_deserializer(decode, TUMBLING_1S, 1)
    assert de(time_windowed(b"k", 12_000)) == ["k", 12_000, 13_000]
    session = flat_key_deserializer(decode, WindowInfo("SESSION"), 1)
    assert session(session_windowed(b"k", 5, 9)) == ["k", 5, 9]
    assert de(None) is None


def test_push_query_star_shows_window_bounds_after_the_key() -> None:
    metastore = metastore_of(_source("S", WindowInfo("SESSION")))
    plan = _plan("SELECT * FROM S EMIT CHANGES;", metastore, persistent=False)
    assert [n for n, _ in plan.output] == ["K", "WINDOWSTART", "WINDOWEND", "ID"]
    proc = _processor(plan)
    key = session_windowed(b"11", 12_345, 34_555)
    rows = proc.rows([_message(key, {"id": 100}, 34_555, 0)])
    assert [values for _row, values in proc.evaluate(rows)] == [("11", 12_345, 34_555, 100)]


def test_projection_of_a_windowed_stream_writes_a_windowed_sink() -> None:
    """tumbling-windows.json 'import tumbling stream' and session-windows.json 'session start
    stream': the sink keeps the window in its key, and WHERE can read the bounds."""
    metastore = metastore_of(_source("S", TUMBLING_1S))
    plan = _plan("CREATE STREAM OUT AS SELECT * FROM S WHERE WINDOWSTART >= 1000;", metastore, True)
    assert [n for n, _ in plan.output] == ["K", "ID"]
    assert window_info(plan) == TUMBLING_1S
    sink = DataSource(
        "OUT",
        "STREAM",
        "out",
        plan.key_columns,
        plan.value_columns,
        FormatInfo("KAFKA"),
        FormatInfo("JSON"),
        "",
    )
    proc = _processor(plan, sink)
    messages = [
        _message(time_windowed(b"a", 0), {"id": 1}, 10, 0),
        _message(time_windowed(b"a", 2000), {"id": 2}, 2010, 1),
    ]
    records = proc.serialize(proc.evaluate(proc.rows(messages)))
    assert len(records) == 1
    assert records[0].key is not None
    assert split_windowed(records[0].key, TUMBLING_1S) == (b"a", 2000, 3000)
    assert json.loads(records[0].value or b"") == {"ID": 2}


def test_partition_by_of_a_windowed_stream_is_not_windowed() -> None:
    metastore = metastore_of(_source("S", TUMBLING_1S))
    plan = _plan("CREATE STREAM OUT AS SELECT * FROM S PARTITION BY ID;", metastore, True)
    assert window_info(plan) is None


# ---------------------------------------------------------------------- push over windows
def _updates(sql: str, messages: list[Message]) -> list[tuple[Any, ...] | None]:
    metastore = metastore_of(_source("S", None))
    plan = _plan(sql, metastore, persistent=False)
    proc = _processor(plan)
    operator: Any = build_operator(plan.stateful, proc, QueryStores("svc", "Q"), proc.plog, "Q")
    return [values for _group, values, _ts in operator.updates(proc.rows(messages))]


def test_push_query_over_a_windowed_aggregation_sees_the_window() -> None:
    """push-queries.json 'windowed GROUP BY - window bounds in SELECT' and '- key not in
    projection': each record counts in its own window."""
    messages = [_message(b"0", {"id": 2}, 10_345, 0), _message(b"1", {"id": 2}, 13_251, 1)]
    bounds = _updates(
        "SELECT WINDOWSTART, WINDOWEND, COUNT(1) AS C FROM S WINDOW TUMBLING (SIZE 1 SECOND) "
        "GROUP BY ID EMIT CHANGES;",
        messages,
    )
    assert bounds == [(10_000, 11_000, 1), (13_000, 14_000, 1)]


def test_window_bounds_in_where_of_a_windowed_aggregation() -> None:
    metastore = metastore_of(_source("S", None))
    with pytest.raises(KsqlError, match=r"Error in WHERE expression: Unknown column WINDOWSTART\."):
        _plan(
            "SELECT COUNT(1) FROM S WINDOW TUMBLING (SIZE 1 SECOND) WHERE WINDOWSTART > 1000 "
            "GROUP BY K EMIT CHANGES;",
            metastore,
            persistent=False,
        )


def test_window_bounds_selected_into_a_sink_must_be_aliased() -> None:
    metastore = metastore_of(_source("S", None))
    with pytest.raises(KsqlError, match="Reserved column name in select: `WINDOWSTART`"):
        _plan(
            "CREATE TABLE OUT AS SELECT K, WINDOWSTART, COUNT(*) AS C FROM S GROUP BY WINDOWSTART;",
            metastore,
            persistent=True,
        )


# ---------------------------------------------------------------------- joins
@pytest.mark.parametrize(
    ("left", "right", "on", "error"),
    [
        (WindowInfo("SESSION"), None, "L.K = R.K", "Can not join windowed source to non-windowed"),
        (WindowInfo("SESSION"), TUMBLING_1S, "L.K = R.K", "Incompatible windowed sources."),
        (WindowInfo("HOPPING", 5000), TUMBLING_1S, "L.K = R.K", "Implicit repartitioning"),
        (WindowInfo("SESSION"), WindowInfo("SESSION"), "L.ID = R.ID", "Implicit repartitioning"),
    ],
)
def test_windowed_join_refusals(
    left: WindowInfo, right: WindowInfo | None, on: str, error: str
) -> None:
    metastore = metastore_of(_source("L", left), _source("R", right))
    with pytest.raises(KsqlError, match=error):
        _plan(
            f"CREATE STREAM OUT AS SELECT * FROM L JOIN R WITHIN 1 MINUTE ON {on};",
            metastore,
            persistent=True,
        )


def test_matching_windowed_join_is_reported_unsupported() -> None:
    metastore = metastore_of(
        _source("L", WindowInfo("SESSION")), _source("R", WindowInfo("SESSION"))
    )
    with pytest.raises(UnsupportedError):
        _plan(
            "CREATE STREAM OUT AS SELECT * FROM L JOIN R WITHIN 1 MINUTE ON L.K = R.K;",
            metastore,
            persistent=True,
        )


def test_describe_names_the_window_type() -> None:
    from services.ksql_server.entities import source_description

    assert source_description(_source("S", TUMBLING_1S), False, [], [])["windowType"] == "TUMBLING"
    assert source_description(_source("S", None), False, [], [])["windowType"] is None


def test_foreign_key_join_of_windowed_tables_is_refused() -> None:
    left = dataclasses.replace(_source("L", TUMBLING_1S), kind="TABLE")
    right = dataclasses.replace(
        _source("R", TUMBLING_1S), kind="TABLE", key_columns=[("ID", T.INTEGER)], value_columns=[]
    )
    with pytest.raises(KsqlError, match="Foreign-key table-table joins are not supported"):
        _plan(
            "SELECT * FROM L JOIN R ON L.ID = R.ID EMIT CHANGES;",
            metastore_of(left, right),
            persistent=False,
        )
