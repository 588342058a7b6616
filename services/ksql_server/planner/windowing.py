"""Planning rules of windows: what ksqlDB refuses, windowed sources' rows, and the sink's window.

A windowed GROUP BY writes a *windowed* table: its key is framed with the window
(formats/windowed.py), so the sink's `DataSource.window` records the window type and size for
readers (DESCRIBE, pull queries, a CREATE TABLE over the topic, the conformance harness).

A *windowed source* (that sink, or `CREATE STREAM/TABLE ... WITH (WINDOW_TYPE=...)` over a
windowed topic) has the window bounds as key columns after its own: a row of it is
`keys, WINDOWSTART, WINDOWEND, values, pseudo columns` (`source_columns`), as ksqlDB shows it
(`SELECT *` of a push query: `K, WINDOWSTART, WINDOWEND, ...`). A projection or filter over it
writes a windowed sink again, each record's key framed with its row's window (`window_info`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from services.ksql_server.errors import KsqlError, UnsupportedError
from services.ksql_server.formats.registry import uses_registry
from services.ksql_server.formats.windowed import WindowInfo
from services.ksql_server.functions.aggregates import is_aggregate
from services.ksql_server.metastore import DataSource
from services.ksql_server.parser import ast as A
from services.ksql_server.planner.aggregate import WINDOW_COLUMNS, AggregationPlan
from services.ksql_server.types import ColumnDef

WINDOW_BOUNDS = ("WINDOWSTART", "WINDOWEND")
INTERMEDIATE_ERROR = (
    "One of the functions used in the statement has an intermediate type that the value format "
    "can not handle. Please remove the function or change the format."
)


REPARTITION_WINDOWED = (
    "Implicit repartitioning of windowed sources is not supported. See "
    "https://github.com/confluentinc/ksql/issues/4385."
)


def _walk(e: Any) -> Iterator[Any]:
    """`e` and every expression under it (fields, tuples and lists of fields)."""
    if isinstance(e, tuple | list):
        for x in e:
            yield from _walk(x)
        return
    if not isinstance(e, A.Expr):
        return
    yield e
    for f in dataclasses.fields(e):  # type: ignore[arg-type]
        yield from _walk(getattr(e, f.name))


def _bound_used(exprs: list[Any]) -> str | None:
    for e in exprs:
        for x in _walk(e):
            if isinstance(x, A.ColumnRef) and x.name.upper() in WINDOW_BOUNDS:
                return x.name.upper()
    return None


def check_window_bounds(
    select: A.Select, windowed_source: bool = False, persistent: bool = False
) -> None:
    """WINDOWSTART/WINDOWEND may only be selected (aliased, into a sink: the sink's own bounds
    are in its key), not grouped by, aggregated or in HAVING; in the WHERE of a windowed
    aggregation over an unwindowed source they do not exist yet."""
    if persistent:
        for item in select.items:
            name = item.alias or (item.expr.name if isinstance(item.expr, A.ColumnRef) else None)
            if name is not None and name.upper() in WINDOW_BOUNDS:
                raise KsqlError(
                    f"Reserved column name in select: `{name.upper()}`. "
                    "Please remove or alias the column."
                )
    if select.window is not None and not windowed_source and select.where is not None:
        bound = _bound_used([select.where])
        if bound is not None:
            raise KsqlError(f"Error in WHERE expression: Unknown column {bound}.")
    in_calls = [
        a
        for item in select.items
        if item.expr is not None
        for x in _walk(item.expr)
        if isinstance(x, A.Call) and is_aggregate(x.name)
        for a in x.args
    ]
    having = [select.having] if select.having is not None else []
    name = _bound_used(in_calls) or _bound_used(list(select.group_by)) or _bound_used(having)
    if name is not None:
        raise KsqlError(
            f"Window bounds column {name} can only be used in the SELECT clause of windowed "
            "aggregations"
        )


def check_windowed(spec: Any, emit_final: bool, value_format: str = "") -> None:
    """ksqlDB's refusals for windowed aggregations and EMIT FINAL (`spec`: AggregationPlan),
    and for aggregates whose accumulator the (source) value format cannot hold."""
    if value_format == "DELIMITED" and any(
        getattr(c.function, "complex_state", False) for c in getattr(spec, "calls", [])
    ):
        raise KsqlError(INTERMEDIATE_ERROR)
    window = getattr(spec, "window", None)
    if emit_final and window is None:
        raise KsqlError("EMIT FINAL is only supported for windowed aggregations.")
    if window is not None and getattr(spec, "table_source", False):
        raise KsqlError("Windowing not supported for table aggregations.")


def source_columns(source: DataSource) -> list[ColumnDef]:
    """A source's columns in row order (before the pseudo columns): keys, the window bounds
    of a windowed source, values."""
    if source.window is None:
        return source.columns
    return [*source.key_columns, *WINDOW_COLUMNS, *source.value_columns]


def key_width(source: DataSource) -> int:
    """How many leading row columns identify a record's key (a windowed key: its window too)."""
    return len(source.key_columns) + (len(WINDOW_COLUMNS) if source.window is not None else 0)


def window_info(plan: Any) -> WindowInfo | None:
    """The window a query's sink is keyed by: a windowed aggregation's, or the source's for a
    projection/filter of a windowed source that keeps its key (None: not windowed)."""
    stateful = getattr(plan, "stateful", None)
    if isinstance(stateful, AggregationPlan):
        window = stateful.window
        if window is None:
            return None
        kind = window.kind.upper()
        return WindowInfo(kind, None if kind == "SESSION" else window.size_ms)
    source = plan.source
    if (
        source.window is None
        or plan.join is not None
        or plan.partition_by
        or plan.keyless_partition
    ):
        return None
    return source.window


def check_windowed_join(
    left: DataSource, right: DataSource, on_keys: bool, foreign_key: bool = False
) -> None:
    """ksqlDB's refusals for a join with a windowed side (`on_keys`: both sides join on their
    own key). A join ksqlDB accepts (matching windowed keys) is not run here: it would have to
    match the windows too, so it is reported as unsupported rather than joined wrongly."""
    lw, rw = left.window, right.window
    if lw is None and rw is None:
        return
    if foreign_key:
        raise KsqlError("Foreign-key table-table joins are not supported on windowed tables.")
    if lw is None or rw is None:
        windowed, plain = (left, right) if lw is not None else (right, left)
        raise KsqlError(
            "Can not join windowed source to non-windowed source.\n"
            f"`{windowed.name}` is {windowed.window.type} windowed\n`{plain.name}` is not windowed"
        )
    if lw.is_session != rw.is_session:
        raise KsqlError(
            f"Incompatible windowed sources.\nLeft source: {lw.type}\nRight source: {rw.type}\n"
            "Session windowed sources can only be joined to other session windowed sources, and "
            "may still not result in expected behaviour as session bounds must be an exact match "
            "for the join to work\nHopping and tumbling windowed sources can only be joined to "
            "other hopping and tumbling windowed sources"
        )
    # different windows are different KAFKA key formats: the right side would be repartitioned
    if not on_keys or (lw != rw and not uses_registry(left.key_format.name)):
        raise KsqlError(REPARTITION_WINDOWED)
    raise UnsupportedError("JOIN of windowed sources")
