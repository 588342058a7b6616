"""Pull queries over tables at run time: read the materialised state, filter, project, done.

The engine plans the SELECT as for any transient query (plan.batch: WHERE and projection over a
source row) and planner/pull.py says which keys to read; here the rows come from the `TableView`
of the query that materialises the table (runtime/table.py), by key or by scan, instead of from
the topic. Nothing is consumed and no thread is started: the answer is computed at once, under
the view's store lock, and served as a finished `PushQuery` (`Query Completed`).

ROWTIME is the timestamp of the record that last updated the row (for an aggregate, the largest
record time of its group or window), as ksqlDB returns it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from services.ksql_server.engine_api import PushQuery
from services.ksql_server.planner.plan import QueryPlan
from services.ksql_server.planner.pull import PullPlan, not_queryable
from services.ksql_server.runtime.table import TableView, find_view
from services.ksql_server.values import to_json

WINDOW_BOUNDS = ("WINDOWSTART", "WINDOWEND")


def table_view(queries: Iterable[Any], name: str) -> TableView:
    """The materialised state of table `name`, or ksqlDB's 'isn't queryable' error."""
    view = find_view(queries, name)
    if view is None:
        raise not_queryable(name)
    return view


def source_rows(view: TableView, pull: PullPlan, n_meta: int) -> list[list[Any]]:
    """Rows in the planner's source layout: keys, values, then the pseudo columns (ROWTIME:
    the last update's timestamp; ROWPARTITION and ROWOFFSET, which pull queries refuse, null)."""
    rest = [None] * (n_meta - 1)
    if pull.keys is None:
        return [[*k, *values, t, *rest] for k, values, t in view.entries()]
    out = []
    for key in pull.keys:
        entry = view.lookup(key)
        if entry is not None:
            out.append([*key, *entry[0], entry[1], *rest])
    return out


def answer(plan: QueryPlan, rows: list[list[Any]]) -> list[list[Any]]:
    """WHERE, projection and LIMIT over the rows read, as JSON-ready lists."""
    errors: list[str] = []

    def log(_row: Any, column: str, exc: BaseException) -> None:
        errors.append(f"Error computing expression {column}: {exc}")

    types = [t for _, t in plan.output]
    limit = plan.select.limit
    out: list[list[Any]] = []
    for _row, values in plan.batch(rows, log):
        if values is None:
            continue
        out.append([to_json(v, t) for v, t in zip(values, types, strict=True)])
        if limit is not None and len(out) >= limit:
            break
    return out


def table_pull_query(
    query_id: str,
    plan: QueryPlan,
    pull: PullPlan,
    queries: Iterable[Any],
    properties: dict[str, Any],
) -> PushQuery:
    """Answer a pull query over a materialised table (the engine's /query entry point)."""
    source = plan.source
    view = table_view(queries, source.name)
    n_meta = len(plan.row_columns) - len(source.columns)
    rows = answer(plan, source_rows(view, pull, n_meta))
    keys = {n for n, _ in source.key_columns} | set(WINDOW_BOUNDS)

    async def serve() -> AsyncIterator[list[Any]]:
        for row in rows:
            yield row

    return PushQuery(
        query_id=query_id,
        column_names=[n for n, _ in plan.output],
        column_types=[str(t) for _, t in plan.output],
        rows=serve(),
        is_pull=True,
        properties=dict(properties),
        key_columns=frozenset(n for n, _ in plan.output if n in keys),
    )


__all__ = ["answer", "source_rows", "table_pull_query", "table_view"]
