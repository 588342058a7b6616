"""Planning rules of windowed aggregations: what ksqlDB refuses, and the sink's window.

A windowed GROUP BY writes a *windowed* table: its key is framed with the window
(formats/windowed.py), so the sink's `DataSource.window` records the window type and size for
readers (DESCRIBE, pull queries, a CREATE TABLE over the topic, the conformance harness).
"""

from __future__ import annotations

from typing import Any

from services.ksql_server.errors import KsqlError
from services.ksql_server.formats.windowed import WindowInfo


def check_windowed(spec: Any, emit_final: bool) -> None:
    """ksqlDB's refusals for windowed aggregations and EMIT FINAL (`spec`: AggregationPlan)."""
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
