"""Planning a persistent query over a TABLE (projection and filter of a changelog).

A table's topic is a changelog: each record is the new value of its key, a null value deletes
it. ksqlDB materialises the source table in the query (store `KsqlTopic-Reduce`), so every
update carries the key's old value too; the projection then runs on the new value, and a row
the WHERE filter drops becomes a tombstone, sent only when the key's old value had passed the
filter (Kafka Streams' table filter with old values: what was never in the output is not
deleted from it). A record with a null key is dropped. runtime/table.py runs this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SOURCE_STORE = "KsqlTopic-Reduce"
"""ksqlDB's name of the store that materialises a query's source table."""


@dataclass
class TableQueryPlan:
    """A CTAS (or push query) over a table: `plan.batch` filters and projects one row."""

    has_where: bool
    store_name: str = SOURCE_STORE


@dataclass
class MaterializePlan:
    """`CREATE SOURCE TABLE`: a query (`CST_…`) that only keeps the table in a store, for pull
    queries and joins to read; it writes nothing."""

    store_name: str = SOURCE_STORE


def plan_table_query(plan: Any) -> TableQueryPlan:
    """The stateful part of a QueryPlan whose source is a table."""
    return TableQueryPlan(has_where=plan.select.where is not None)


__all__ = ["SOURCE_STORE", "MaterializePlan", "TableQueryPlan", "plan_table_query"]
