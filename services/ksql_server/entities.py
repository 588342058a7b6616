"""ksqlDB's /ksql response entities, built as plain dicts in ksqlDB's exact shapes."""

from __future__ import annotations

from typing import Any

from services.ksql_server.metastore import DataSource


def current_status(
    text: str,
    command_id: str,
    message: str,
    seq: int,
    query_id: str | None = None,
    status: str = "SUCCESS",
) -> dict[str, Any]:
    return {
        "@type": "currentStatus",
        "statementText": text,
        "commandId": command_id,
        "commandStatus": {"status": status, "message": message, "queryId": query_id},
        "commandSequenceNumber": seq,
        "warnings": [],
    }


def source_info(src: DataSource) -> dict[str, Any]:
    return {
        "type": src.kind,
        "name": src.name,
        "topic": src.topic,
        "keyFormat": src.key_format.name,
        "valueFormat": src.value_format.name,
        "isWindowed": False,
    }


def sources_list(
    text: str, kind: str, sources: list[DataSource], extended: bool, describe: Any = None
) -> dict[str, Any]:
    plural = "streams" if kind == "STREAM" else "tables"
    if extended and describe is not None:
        return {
            "@type": "source_descriptions",
            "statementText": text,
            "sourceDescriptions": [describe(s, True) for s in sources],
            "warnings": [],
        }
    return {
        "@type": plural,
        "statementText": text,
        plural: [source_info(s) for s in sources],
        "warnings": [],
    }


def field_json(name: str, typ: Any, key: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "schema": typ.schema_json()}
    if key:
        out["type"] = "KEY"
    return out


def running_query(query: Any) -> dict[str, Any]:
    return {
        "queryString": query.sql,
        "sinks": [query.sink.name],
        "sinkKafkaTopics": [query.sink.topic],
        "id": query.query_id,
        "statusCount": {query.state: 1},
        "queryType": "PERSISTENT",
        "state": query.state,
    }


def source_description(
    src: DataSource,
    extended: bool,
    read_queries: list[Any],
    write_queries: list[Any],
    stats: str = "",
    error_stats: str = "",
    partitions: int = 0,
    replication: int = 0,
) -> dict[str, Any]:
    fields = [field_json(n, t, True) for n, t in src.key_columns]
    fields += [field_json(n, t, False) for n, t in src.value_columns]
    return {
        "name": src.name,
        "windowType": src.window.describe() if src.window is not None else None,
        "readQueries": [running_query(q) for q in read_queries],
        "writeQueries": [running_query(q) for q in write_queries],
        "fields": fields,
        "type": src.kind,
        "timestamp": src.timestamp_column or "",
        "statistics": stats,
        "errorStats": error_stats,
        "extended": extended,
        "keyFormat": src.key_format.name,
        "valueFormat": src.value_format.name,
        "topic": src.topic,
        "partitions": partitions,
        "replication": replication,
        "statement": src.sql,
        "queryOffsetSummaries": [],
        "sourceConstraints": [],
        "clusterStatistics": [],
        "clusterErrorStats": [],
    }
