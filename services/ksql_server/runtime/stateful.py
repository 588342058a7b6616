"""Stateful operators: what a persistent query runs instead of the stateless filter/projection.

A planner module describes a stateful query as a plain plan object (planner/aggregate.py's
`AggregationPlan`, `TableQueryPlan`, …) in `QueryPlan.stateful`; the runtime module that runs
it registers a factory for that plan type here (`register_operator`). `PersistentQuery` asks
`build_operator` for the query's operator, hands it each consumed batch as deserialized rows,
and produces what it returns; the operator keeps its state in the query's `QueryStores`, which
the query restores before the first batch and flushes into each transaction.

So adding a stateful operator (windows, joins) is: a plan type in planner/, an operator in
runtime/, one `register_operator` call; neither the engine nor the query loop change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from services.ksql_server.runtime.processor import BatchProcessor, OutRecord, ProcessingLog
from services.ksql_server.state import QueryStores


class Operator(Protocol):
    """Turns a batch of deserialized rows (`BatchProcessor.rows`) into output records, in
    input order, updating its stores."""

    def process(self, rows: list[list[Any]]) -> list[OutRecord]: ...


OperatorFactory = Callable[[Any, BatchProcessor, QueryStores, ProcessingLog, str], Operator]
"""(plan.stateful, the query's processor, its stores, the processing log, the query id)"""

OPERATORS: dict[type, OperatorFactory] = {}


def register_operator(plan_type: type, factory: OperatorFactory) -> None:
    OPERATORS[plan_type] = factory


def run_operator(
    operator: Operator, processor: BatchProcessor, messages: list[Any]
) -> list[OutRecord]:
    """A consumed batch through the operator: its `process_messages` when it reads the messages
    itself (the aggregations: column-wise, record cache), else `process` of the batch's rows."""
    direct = getattr(operator, "process_messages", None)
    if direct is not None:
        out: list[OutRecord] = direct(messages)
        return out
    return operator.process(processor.rows(messages))


def build_operator(
    stateful: Any, processor: BatchProcessor, stores: QueryStores, plog: ProcessingLog, qid: str
) -> Operator:
    _load()
    factory = OPERATORS.get(type(stateful))
    if factory is None:
        raise TypeError(f"no operator for {type(stateful).__name__}")
    return factory(stateful, processor, stores, plog, qid)


def _load() -> None:
    """Import the operator modules (each registers itself)."""
    from services.ksql_server.runtime import aggregate, table, windowed_aggregate  # noqa: F401


__all__ = ["OPERATORS", "Operator", "build_operator", "register_operator", "run_operator"]
