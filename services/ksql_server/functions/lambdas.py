"""ksqlDB's lambda ("invocation") functions TRANSFORM, FILTER and REDUCE over arrays and maps.

Their last arguments are lambdas (`x => x * 2`, `(k, v) => …`), so they cannot be typed from
argument types alone: the expression compiler types each lambda's parameters from the
collection (`lambda_params`), compiles the body into a Python lambda and calls the runtime
helpers below. Null handling is ksqlDB's (udf/lambda/*.java): a null collection gives null for
TRANSFORM and FILTER; REDUCE gives null for a null initial state and the initial state for a
null collection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.ksql_server.errors import KsqlError
from services.ksql_server.types import SqlType

LAMBDA_FUNCTIONS = frozenset({"TRANSFORM", "FILTER", "REDUCE"})

ARITY = {
    ("TRANSFORM", "ARRAY"): (2, [1]),
    ("TRANSFORM", "MAP"): (3, [2, 2]),
    ("FILTER", "ARRAY"): (2, [1]),
    ("FILTER", "MAP"): (2, [2]),
    ("REDUCE", "ARRAY"): (3, [2]),
    ("REDUCE", "MAP"): (3, [3]),
}
"""(function, collection kind) → (argument count, parameter count of each lambda argument)."""


def lambda_shape(name: str, collection: SqlType | None, n_args: int) -> list[int]:
    """The parameter counts of the call's lambdas, or ksqlDB's error for a bad call."""
    kind = collection.base if collection is not None else ""
    shape = ARITY.get((name, kind))
    if shape is None or shape[0] != n_args:
        raise KsqlError(
            f"Function '{name}' does not accept parameters "
            f"({collection or 'null'}, {n_args - 1} more argument(s))."
        )
    return shape[1]


def lambda_params(
    name: str, collection: SqlType, state: SqlType | None, index: int
) -> list[SqlType | None]:
    """The types of the parameters of lambda argument `index` (0-based among the lambdas)."""
    if collection.base == "ARRAY":
        item = collection.item
        return [state, item] if name == "REDUCE" else [item]
    key, value = collection.key, collection.item
    return [state, key, value] if name == "REDUCE" else [key, value]


def transform_array(items: list[Any] | None, fn: Callable[[Any], Any]) -> list[Any] | None:
    return None if items is None else [fn(x) for x in items]


def transform_map(
    entries: dict[Any, Any] | None,
    key_fn: Callable[[Any, Any], Any],
    value_fn: Callable[[Any, Any], Any],
) -> dict[Any, Any] | None:
    if entries is None:
        return None
    return {key_fn(k, v): value_fn(k, v) for k, v in entries.items()}


def filter_array(items: list[Any] | None, fn: Callable[[Any], Any]) -> list[Any] | None:
    return None if items is None else [x for x in items if fn(x) is True]


def filter_map(
    entries: dict[Any, Any] | None, fn: Callable[[Any, Any], Any]
) -> dict[Any, Any] | None:
    if entries is None:
        return None
    return {k: v for k, v in entries.items() if fn(k, v) is True}


def reduce_array(items: list[Any] | None, state: Any, fn: Callable[[Any, Any], Any]) -> Any:
    if state is None:
        return None
    for x in items or []:
        state = fn(state, x)
    return state


def reduce_map(entries: dict[Any, Any] | None, state: Any, fn: Callable[..., Any]) -> Any:
    if state is None:
        return None
    for k, v in (entries or {}).items():
        state = fn(state, k, v)
    return state


RUNTIME = {
    ("TRANSFORM", "ARRAY"): transform_array,
    ("TRANSFORM", "MAP"): transform_map,
    ("FILTER", "ARRAY"): filter_array,
    ("FILTER", "MAP"): filter_map,
    ("REDUCE", "ARRAY"): reduce_array,
    ("REDUCE", "MAP"): reduce_map,
}
