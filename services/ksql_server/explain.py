"""`EXPLAIN <query id>` and `EXPLAIN <statement>`: ksqlDB's `queryDescription` entity.

Kept out of the Engine class: explaining reads the metastore and the running queries and plans
a statement without running it (no topic is created, nothing goes to the command topic), so it
needs only the planner and the entity shapes. The texts follow ksqlDB: `executionPlan` is its
plan summary (one `> [ STEP ] | Schema: … | Logger: …` line per step, each level indented by
two tabs) and `topology` has the layout of Kafka Streams' `TopologyDescription`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from services.ksql_server.entities import field_json
from services.ksql_server.errors import KsqlError
from services.ksql_server.metastore import DataSource, MetaStore
from services.ksql_server.parser import ast as A
from services.ksql_server.planner.plan import PSEUDO_COLUMNS, QueryPlan, plan_select
from services.ksql_server.types import ColumnDef

NOT_A_QUERY = "The provided statement does not run a ksql query"


def unknown_query(query_id: str) -> str:
    return (
        f"Query with id:{query_id} does not exist, use SHOW QUERIES to view the full set of "
        "queries."
    )


def description_entity(text: str, description: dict[str, Any]) -> dict[str, Any]:
    return {
        "@type": "queryDescription",
        "statementText": text,
        "queryDescription": description,
        "warnings": [],
    }


def query_description(
    query_id: str,
    statement_text: str,
    plan: QueryPlan,
    sink: str | None,
    sink_topic: str | None,
    overridden: Mapping[str, Any],
    host_status: dict[str, str],
    consumer_group: str,
    persistent: bool,
) -> dict[str, Any]:
    """ksqlDB's QueryDescription, in its JSON field order; `state` is RUNNING or ERROR when a
    host reports a status, absent (null) for a statement that only was planned."""
    keys = {n for n, _ in plan.key_columns}
    fields = [field_json(n, t, n in keys) for n, t in plan.key_columns + plan.value_columns]
    state = None
    if host_status:
        state = "ERROR" if "ERROR" in host_status.values() else "RUNNING"
    return {
        "id": query_id,
        "statementText": statement_text,
        "windowType": None,
        "fields": fields,
        "sources": [plan.source.name],
        "sinks": [sink] if sink else [],
        "topology": topology_text(plan, sink_topic),
        "executionPlan": execution_plan_text(query_id, plan, sink),
        "overriddenProperties": dict(overridden),
        "ksqlHostQueryStatus": host_status,
        "queryType": "PERSISTENT" if persistent else "PUSH",
        "queryErrors": [],
        "tasksMetadata": [],
        "consumerGroupId": consumer_group,
        "state": state,
    }


def _schema(columns: list[ColumnDef], keys: set[str]) -> str:
    return ", ".join(f"{n} {t}{' KEY' if n in keys else ''}" for n, t in columns)


def execution_plan_text(query_id: str, plan: QueryPlan, sink: str | None) -> str:
    """The plan summary: sink (persistent only), projection, filter, source, outermost first."""
    source = plan.source
    src_keys = {n for n, _ in source.key_columns}
    out_keys = {n for n, _ in plan.key_columns}
    out_schema = _schema(plan.key_columns + plan.value_columns, out_keys)
    src_schema = _schema(source.columns + PSEUDO_COLUMNS, src_keys)
    steps: list[tuple[str, str, str]] = []
    if sink is not None:
        steps.append(("SINK", out_schema, sink))
    steps.append(("PROJECT", out_schema, "Project"))
    if plan.select.where is not None:
        steps.append(("FILTER", src_schema, "WhereFilter"))
    steps.append(("SOURCE", src_schema, "KsqlTopic.Source"))
    lines = []
    for depth, (step, schema, logger) in enumerate(steps):
        lines.append(
            f"{chr(9) * 2 * depth} > [ {step} ] | Schema: {schema} | Logger: {query_id}.{logger}\n"
        )
    return "".join(lines)


def topology_text(plan: QueryPlan, sink_topic: str | None) -> str:
    """Kafka Streams' TopologyDescription text for the single sub-topology a projection runs."""
    nodes = ["KSTREAM-SOURCE-0000000000", "KSTREAM-TRANSFORMVALUES-0000000001"]
    if plan.select.where is not None:
        nodes.append("WhereFilter")
    nodes.append("Project")
    sink = f"KSTREAM-SINK-{len(nodes):010d}" if sink_topic else None
    if sink:
        nodes.append(sink)
    lines = ["Topologies:", "   Sub-topology: 0"]
    for i, node in enumerate(nodes):
        if i == 0:
            lines.append(f"    Source: {node} (topics: [{plan.source.topic}])")
        elif node == sink:
            lines.append(f"    Sink: {node} (topic: {sink_topic})")
        else:
            lines.append(f"    Processor: {node} (stores: [])")
        if i + 1 < len(nodes):
            lines.append(f"      --> {nodes[i + 1]}")
        elif node != sink:
            lines.append("      --> none")
        if i > 0:
            lines.append(f"      <-- {nodes[i - 1]}")
    return "\n".join(lines) + "\n\n"


def explain_running(
    text: str,
    query_id: str,
    queries: Mapping[str, Any],
    host: str,
    server_properties: Mapping[str, Any],
) -> dict[str, Any]:
    """EXPLAIN of a running persistent query (ksqlDB's error when there is none)."""
    query = queries.get(query_id) or next(
        (q for q_id, q in queries.items() if q_id.upper() == query_id.upper()), None
    )
    if query is None:
        raise KsqlError(unknown_query(query_id))
    status = "ERROR" if query.state == "ERROR" else "RUNNING"
    description = query_description(
        query.query_id,
        query.sql,
        query.plan,
        query.sink.name,
        query.sink.topic,
        _overrides(query.properties, server_properties),
        {host: status},
        query.group,
        persistent=True,
    )
    return description_entity(text, description)


def explain_statement(
    text: str,
    stmt: A.Statement,
    metastore: MetaStore,
    next_seq: int,
    service_id: str,
    props: Mapping[str, Any],
) -> dict[str, Any]:
    """EXPLAIN of a statement that runs a query (SELECT, CREATE STREAM AS SELECT, INSERT INTO
    … SELECT): planned, never run; the id is the one it would get if it ran next."""
    inner_text = stmt.text
    sink: DataSource | None = None
    if isinstance(stmt, A.Query):
        plan = plan_select(stmt.select, metastore, persistent=False)
        query_id = f"transient_{plan.source.name}_{uuid.uuid4().int % 10**19}"
        return description_entity(
            text,
            query_description(query_id, inner_text, plan, None, None, {}, {}, "", persistent=False),
        )
    if isinstance(stmt, A.CreateSource) and stmt.query is not None:
        if stmt.kind == "TABLE":
            raise KsqlError(NOT_A_QUERY)
        plan = plan_select(stmt.query, metastore, persistent=True, sink_name=stmt.name)
        query_id = f"CSAS_{stmt.name}_{next_seq}"
        sink_name = stmt.name
        topic = str(
            stmt.props.get("KAFKA_TOPIC")
            or (props.get("ksql.output.topic.name.prefix") or "") + stmt.name
        )
    elif isinstance(stmt, A.InsertSelect):
        sink = metastore.get(stmt.target)
        if sink is None:
            raise KsqlError(f"{stmt.target} does not exist.")
        plan = plan_select(stmt.query, metastore, persistent=True, sink_name=sink.name)
        query_id = f"INSERTQUERY_{next_seq}"
        sink_name, topic = sink.name, sink.topic
    else:
        raise KsqlError(NOT_A_QUERY)
    group = f"_confluent-ksql-{service_id}query_{query_id}"
    description = query_description(
        query_id, inner_text, plan, sink_name, topic, {}, {}, group, persistent=True
    )
    return description_entity(text, description)


def _overrides(properties: Mapping[str, Any], server: Mapping[str, Any]) -> dict[str, Any]:
    """The properties the statement's request set over the server's."""
    return {k: v for k, v in properties.items() if v is not None and server.get(k) != v}
