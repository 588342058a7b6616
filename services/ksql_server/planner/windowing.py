"""Planning rules of windowed aggregations: what ksqlDB refuses, and the sink's window.

A windowed GROUP BY writes a *windowed* table: its key is framed with the window
(formats/windowed.py), so the sink's `DataSource.window` records the window type and size for
readers (DESCRIBE, pull queries, a CREATE TABLE over the topic, the conformance harness).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from services.ksql_server.errors import KsqlError
from services.ksql_server.formats.windowed import WindowInfo
from services.ksql_server.functions.aggregates import is_aggregate
from services.ksql_server.parser import ast as A

WINDOW_BOUNDS = ("WINDOWSTART", "WINDOWEND")
INTERMEDIATE_ERROR = (
    "One of the functions used in the statement has an intermediate type that the value format "
    "can not handle. Please remove the function or change the format."
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


def check_window_bounds(select: A.Select) -> None:
    """WINDOWSTART/WINDOWEND may only be selected, not grouped by, aggregated or in HAVING."""
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


def window_info(plan: Any) -> WindowInfo | None:
    """The window a query's sink is keyed by (None: not a windowed aggregation)."""
    window = getattr(getattr(plan, "stateful", None), "window", None)
    if window is None:
        return None
    kind = window.kind.upper()
    return WindowInfo(kind, None if kind == "SESSION" else window.size_ms)
