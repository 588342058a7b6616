"""`SHOW STREAMS|TABLES|QUERIES|TOPICS|PROPERTIES|FUNCTIONS`: ksqlDB's list entities.

Next to `entities.py` and `describe.py` rather than in the Engine: a SHOW reads what the server
holds (metastore, running queries, topics, properties) and changes nothing, so it takes those
as plain arguments; the engine only gathers them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.ksql_server import entities as E
from services.ksql_server.errors import UnsupportedError
from services.ksql_server.metastore import DataSource, MetaStore
from services.ksql_server.parser import ast as A


@dataclass
class ServerView:
    """What a SHOW may read: the server's state, gathered by the engine."""

    metastore: MetaStore
    queries: Iterable[Any]
    """The running persistent queries."""
    list_topics: Callable[[], Mapping[str, int]]
    """Physical topic name → partition count."""
    topic_prefix: str
    describe: Callable[[DataSource, bool], dict[str, Any]]
    """A source's description (SHOW ... EXTENDED)."""
    server_properties: Mapping[str, Any]
    """The server's own properties (what a session's overwrite is compared with)."""
    identity: Mapping[str, Any]
    """`ksql.service.id`, bootstrap servers, registry URL: shown by SHOW PROPERTIES."""


def show_entity(
    stmt: A.Show, text: str, props: Mapping[str, Any], view: ServerView
) -> dict[str, Any]:
    """The entity `SHOW <what>` answers with."""
    what = stmt.what
    if what in ("STREAMS", "TABLES"):
        kind = "STREAM" if what == "STREAMS" else "TABLE"
        sources = sorted(
            (s for s in view.metastore.sources.values() if s.kind == kind), key=lambda s: s.name
        )
        return E.sources_list(text, kind, sources, stmt.extended, view.describe)
    if what == "QUERIES":
        return {
            "@type": "queries",
            "statementText": text,
            "queries": [E.running_query(q) for q in view.queries],
            "warnings": [],
        }
    if what == "TOPICS":
        return topics_entity(text, view.list_topics(), view.topic_prefix, stmt.extended)
    if what == "PROPERTIES":
        return properties_entity(text, props, view.server_properties, view.identity)
    if what == "FUNCTIONS":
        return functions_entity(text)
    raise UnsupportedError(f"SHOW {what}")


def topics_entity(
    text: str, physical: Mapping[str, int], prefix: str, extended: bool
) -> dict[str, Any]:
    """`kafka_topics`: this server's topics (its prefix removed); internal ones when EXTENDED."""
    topics = []
    for name, parts in sorted(physical.items()):
        if not name.startswith(prefix):
            continue
        logical = name[len(prefix) :]
        if logical.startswith("_") and not extended:
            continue
        topics.append({"name": logical, "replicaInfo": [1] * parts})
    return {"@type": "kafka_topics", "statementText": text, "topics": topics, "warnings": []}


def properties_entity(
    text: str,
    props: Mapping[str, Any],
    server_properties: Mapping[str, Any],
    identity: Mapping[str, Any],
) -> dict[str, Any]:
    """`properties`: the session's properties as ksqlDB names them, and those it overwrote."""
    base = {
        **identity,
        "ksql.extension.dir": "ext",
        "ksql.persistent.prefix": "query_",
        "ksql.transient.prefix": "transient_",
        "ksql.output.topic.name.prefix": "",
    }
    for k, v in props.items():
        base[f"ksql.streams.{k}" if not k.startswith("ksql.") else k] = v
    overwritten = [f"ksql.streams.{k}" for k, v in props.items() if server_properties.get(k) != v]
    return {
        "@type": "properties",
        "statementText": text,
        "properties": [
            {"name": k, "scope": "KSQL", "value": None if v is None else str(v)}
            for k, v in sorted(base.items())
        ],
        "overwrittenProperties": overwritten,
        "defaultProperties": [],
        "warnings": [],
    }


def functions_entity(text: str) -> dict[str, Any]:
    """`function_names`: every scalar and lambda function the compiler knows."""
    from services.ksql_server.functions import FUNCTIONS
    from services.ksql_server.functions.lambdas import LAMBDA_FUNCTIONS

    names = sorted({*FUNCTIONS, *LAMBDA_FUNCTIONS})
    return {
        "@type": "function_names",
        "statementText": text,
        "functions": [{"name": n, "type": "SCALAR", "category": "OTHER"} for n in names],
        "warnings": [],
    }
