"""`DESCRIBE <source> [EXTENDED]` (and the older `DESCRIBE EXTENDED <source>`): ksqlDB's
`sourceDescription` entity, and the descriptions `SHOW STREAMS EXTENDED` lists.

Kept out of the Engine class: a description reads the metastore's source, the persistent
queries that read and write it and, when extended, the topic's partition count and the
processing log's size; it changes nothing. ksql-python-ng's `get_dependent_queries` reads
`readQueries`/`writeQueries` from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.ksql_server import entities as E
from services.ksql_server.errors import KsqlError
from services.ksql_server.metastore import DataSource, MetaStore


def source_description(
    source: DataSource,
    extended: bool,
    queries: Iterable[Any],
    partitions: int | None,
    plog_count: int,
) -> dict[str, Any]:
    """The `sourceDescription` object; `partitions` is the topic's count (extended only)."""
    running = list(queries)
    readers = [q for q in running if q.plan.source.name == source.name]
    writers = [q for q in running if q.sink.name == source.name]
    stats = ""
    if extended and readers:
        total = sum(q.processed for q in readers)
        stats = f"consumer-total-messages: {total:>6}"
    return E.source_description(
        source,
        extended,
        readers,
        writers,
        stats,
        f"processing-log-entries: {plog_count}" if extended else "",
        (partitions or 0) if extended else 0,
        1 if extended else 0,
    )


def describe_entity(text: str, name: str, metastore: MetaStore, describe: Any) -> dict[str, Any]:
    """The `sourceDescription` entity of `DESCRIBE`; `describe(source)` builds the object."""
    source = metastore.get(name)
    if source is None:
        raise KsqlError(f"Could not find STREAM/TABLE '{name}' in the Metastore")
    return {
        "@type": "sourceDescription",
        "statementText": text,
        "sourceDescription": describe(source),
        "warnings": [],
    }
