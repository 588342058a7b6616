"""The aggregate functions (UDAFs) of GROUP BY queries: the contract and the registry.

An aggregate is bound to its argument types once, when the query is planned (so the sink's
schema is known before any record flows), and then works on a plain accumulator value:

- `initial()` starts a group, `add(acc, args)` folds one row's arguments in;
- `undo(acc, args)` takes a row back out: an aggregation over a *table* sees every update as
  "remove the old row, add the new one" (ksqlDB's TableUdaf), so only undoable aggregates are
  allowed there (`undoable`);
- `merge(a, b)` joins two accumulators: session windows merge when a record bridges them;
- `result(acc)` is the column value the query emits.

Accumulators are kept in state stores and written to changelog topics, so they must round-trip
through `to_state`/`from_state` as JSON-able values (the default: the accumulator itself).
Each function module registers its aggregates with `register_aggregate`; the planner looks them
up with `resolve_aggregate`. Kafka-free: everything here is pure and unit-testable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.ksql_server.errors import KsqlError
from services.ksql_server.types import SqlType


class AggregateFunction(ABC):
    """One aggregate bound to its argument types (and literal parameters, e.g. TOPK's k)."""

    name: str = ""
    undoable: bool = False

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        self.arg_types = list(arg_types)
        self.literals = list(literals)

    @property
    @abstractmethod
    def return_type(self) -> SqlType:
        """The SQL type of `result`, decided from the argument types."""

    @abstractmethod
    def initial(self) -> Any:
        """The accumulator of an empty group."""

    @abstractmethod
    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        """`acc` with one row's arguments folded in (may mutate and return `acc`)."""

    def undo(self, acc: Any, args: tuple[Any, ...]) -> Any:
        """`acc` with one earlier row's arguments taken out (table aggregations only)."""
        raise KsqlError(f"The aggregation function {self.name} does not support undo.")

    def merge(self, a: Any, b: Any) -> Any:
        """Two accumulators joined into one (session windows)."""
        raise KsqlError(f"The aggregation function {self.name} cannot merge session windows.")

    @abstractmethod
    def result(self, acc: Any) -> Any:
        """The value the query emits for `acc`."""

    def to_state(self, acc: Any) -> Any:
        """A JSON-able form of `acc` for the state store's changelog."""
        return acc

    def from_state(self, state: Any) -> Any:
        """The accumulator `to_state` wrote."""
        return state


@dataclass(frozen=True)
class AggregateSpec:
    """How to build one aggregate: its arity (value arguments, then literal parameters)."""

    name: str
    build: Callable[[Sequence[SqlType | None], Sequence[Any]], AggregateFunction]
    min_args: int
    max_args: int  # value arguments; -1: variadic
    literal_args: int = 0  # up to this many trailing literal arguments (TOPK's k, …)
    star: bool = False  # accepts `NAME(*)` (COUNT)


AGGREGATES: dict[str, AggregateSpec] = {}


def register_aggregate(spec: AggregateSpec) -> AggregateSpec:
    AGGREGATES[spec.name.upper()] = spec
    return spec


def is_aggregate(name: str) -> bool:
    return name.upper() in AGGREGATES


def resolve_aggregate(
    name: str, arg_types: Sequence[SqlType | None], literals: Sequence[Any] = ()
) -> AggregateFunction:
    """The aggregate `name` bound to these argument types, or ksqlDB's error for a bad call."""
    spec = AGGREGATES.get(name.upper())
    if spec is None:
        raise KsqlError(f"Can't find any functions with the name '{name.upper()}'")
    n = len(arg_types)
    if n < spec.min_args or (spec.max_args >= 0 and n > spec.max_args):
        shown = ", ".join(str(t) if t else "null" for t in arg_types)
        raise KsqlError(f"Function '{spec.name}' does not accept parameters ({shown}).")
    return spec.build(arg_types, literals)
