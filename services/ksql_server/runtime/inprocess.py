"""A persistent query's stateful operator built from SQL in this process, without Kafka.

The engine builds an operator from a `CREATE … AS SELECT` through the metastore, the planner,
a `BatchProcessor` and `build_operator`, then feeds it consumed batches from its loop. Tests
that compare two execution paths of one operator, and the in-process aggregation bench
(bench/bench_ksql_state.py), need exactly that operator without a broker: this builds it the
same way (no registry: formats that need one are not for this).
"""

from __future__ import annotations

from typing import Any

from services.ksql_server import ddl
from services.ksql_server.metastore import MetaStore
from services.ksql_server.parser.parser import parse
from services.ksql_server.planner.plan import plan_select
from services.ksql_server.planner.windowing import window_info
from services.ksql_server.runtime.processor import BatchProcessor, ProcessingLog
from services.ksql_server.runtime.stateful import Operator, build_operator
from services.ksql_server.state import QueryStores


def operator_from_sql(
    create_source: str,
    create_as: str,
    properties: dict[str, Any] | None = None,
    plog: ProcessingLog | None = None,
) -> tuple[Operator, BatchProcessor, QueryStores]:
    """The operator, processor and stores of `create_as` (a CTAS/CSAS over the one source that
    `create_source` declares), with the query's `properties`."""
    metastore = MetaStore()
    source = ddl.build_source(parse(create_source), create_source, {}, None)  # type: ignore[arg-type]
    source.partitions = 1
    metastore.put(source)
    stmt: Any = parse(create_as)
    plan = plan_select(stmt.query, metastore, persistent=True, sink_name=stmt.name)
    sink = ddl.build_sink(stmt, plan, create_as, {})
    sink.window = window_info(plan)
    log = plog or ProcessingLog(None, "processing_log")
    processor = BatchProcessor("Q", plan, sink, None, log, sink.topic)
    processor.properties = dict(properties or {})
    stores = QueryStores("inprocess", "Q")
    return build_operator(plan.stateful, processor, stores, log, "Q"), processor, stores


__all__ = ["operator_from_sql"]
