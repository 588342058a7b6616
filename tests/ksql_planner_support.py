"""What the planner's unit tests share: a metastore holding given sources, and the SELECT of a
CREATE … AS statement (no Kafka, no engine)."""

from __future__ import annotations

from services.ksql_server.metastore import DataSource, MetaStore
from services.ksql_server.parser import ast as A
from services.ksql_server.parser import parse


def metastore_of(*sources: DataSource) -> MetaStore:
    """A metastore that knows exactly these sources."""
    store = MetaStore()
    for source in sources:
        store.put(source)
    return store


def select_of(sql: str) -> A.Select:
    """The query of a `CREATE STREAM|TABLE … AS SELECT …` statement."""
    stmt = parse(sql)
    assert isinstance(stmt, A.CreateSource) and stmt.query is not None
    return stmt.query
