"""COUNT, SUM, MIN and MAX: the aggregates GROUP BY needs first (the rest of ksqlDB's library is
in its own modules, against the same contract in aggregates.py).

ksqlDB's semantics: COUNT(*) / COUNT() count rows, COUNT(x) counts rows where x is not null;
SUM returns the argument's type (INT, BIGINT, DOUBLE, DECIMAL) and treats nulls as absent, an
empty sum being 0; MIN/MAX ignore nulls and are null until a non-null value arrives. COUNT and
SUM are undoable (a table aggregation takes a row back out), MIN and MAX are not (ksqlDB's
MIN/MAX over a table are not allowed either).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError, KsqlFunctionException
from services.ksql_server.functions.aggregates import (
    AggregateFunction,
    AggregateSpec,
    register_aggregate,
)
from services.ksql_server.types import SqlType

_NUMERIC = ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL")
_COMPARABLE = (*_NUMERIC, "STRING", "BYTES", "DATE", "TIME", "TIMESTAMP", "BOOLEAN")


class Count(AggregateFunction):
    name = "COUNT"
    undoable = True

    @property
    def return_type(self) -> SqlType:
        return T.BIGINT

    def initial(self) -> Any:
        return 0

    def _counts(self, args: tuple[Any, ...]) -> bool:
        return not args or args[0] is not None

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        return acc + 1 if self._counts(args) else acc

    def undo(self, acc: Any, args: tuple[Any, ...]) -> Any:
        return acc - 1 if self._counts(args) else acc

    def merge(self, a: Any, b: Any) -> Any:
        return a + b

    def result(self, acc: Any) -> Any:
        return acc


class Sum(AggregateFunction):
    """The accumulator is the running sum in the argument's type (DECIMAL as text in state)."""

    name = "SUM"
    undoable = True

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        super().__init__(arg_types, literals)
        typ = arg_types[0] if arg_types else None
        if typ is None or typ.base not in _NUMERIC:
            shown = "null" if typ is None else str(typ)
            raise KsqlError(f"Function 'SUM' does not accept parameters ({shown}).")
        self._type = typ
        self._decimal = typ.base == "DECIMAL"
        self._limit = 10 ** (typ.precision - typ.scale) if self._decimal else 0
        """ksqlDB's DecimalSumKudaf: a sum whose integer digits pass the type's stops the query"""

    @property
    def return_type(self) -> SqlType:
        return self._type

    def initial(self) -> Any:
        return Decimal(0) if self._decimal else (0.0 if self._type.base == "DOUBLE" else 0)

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        return acc if args[0] is None else self._wrap(acc + args[0])

    def undo(self, acc: Any, args: tuple[Any, ...]) -> Any:
        return acc if args[0] is None else self._wrap(acc - args[0])

    def merge(self, a: Any, b: Any) -> Any:
        return self._wrap(a + b)

    def _wrap(self, v: Any) -> Any:
        """Java's overflow for INT and BIGINT sums."""
        base = self._type.base
        if base == "INTEGER":
            return (v + 2**31) % 2**32 - 2**31
        if base == "BIGINT":
            return (v + 2**63) % 2**64 - 2**63
        if self._decimal and abs(v) >= self._limit:
            raise KsqlFunctionException("Numeric field overflow")
        return v

    def result(self, acc: Any) -> Any:
        if self._decimal:
            return Decimal(acc).quantize(Decimal(1).scaleb(-self._type.scale))
        return acc

    def to_state(self, acc: Any) -> Any:
        return str(acc) if self._decimal else acc

    def from_state(self, state: Any) -> Any:
        return Decimal(state) if self._decimal else state


class SumList(Sum):
    """SUM_LIST(ARRAY<INT | BIGINT | DOUBLE>): the sum of every element of every row's list,
    in the element type (null lists and null elements count as absent), as ksqlDB's
    ListSumUdaf."""

    name = "SUM_LIST"

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        typ = arg_types[0] if arg_types else None
        item = typ.item if typ is not None and typ.base == "ARRAY" else None
        if item is None or item.base not in ("INTEGER", "BIGINT", "DOUBLE"):
            shown = "null" if typ is None else str(typ)
            raise KsqlError(f"Function 'SUM_LIST' does not accept parameters ({shown}).")
        super().__init__([item], literals)

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        return super().add(acc, (_list_sum(args[0]),))

    def undo(self, acc: Any, args: tuple[Any, ...]) -> Any:
        return super().undo(acc, (_list_sum(args[0]),))


def _list_sum(values: list[Any] | None) -> Any:
    return None if values is None else sum(v for v in values if v is not None)


class _Extreme(AggregateFunction):
    """MIN / MAX: the accumulator is the best value so far (None before the first)."""

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        super().__init__(arg_types, literals)
        typ = arg_types[0] if arg_types else None
        if typ is None or typ.base not in _COMPARABLE:
            shown = "null" if typ is None else str(typ)
            raise KsqlError(f"Function '{self.name}' does not accept parameters ({shown}).")
        self._type = typ

    @property
    def return_type(self) -> SqlType:
        return self._type

    def initial(self) -> Any:
        return None

    def _better(self, a: Any, b: Any) -> bool:
        raise NotImplementedError

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        v = args[0]
        if v is None:
            return acc
        return v if acc is None or self._better(v, acc) else acc

    def merge(self, a: Any, b: Any) -> Any:
        return self.add(a, (b,))

    def result(self, acc: Any) -> Any:
        return acc

    def to_state(self, acc: Any) -> Any:
        if isinstance(acc, Decimal | bytes):
            return str(acc) if isinstance(acc, Decimal) else acc.hex()
        return acc

    def from_state(self, state: Any) -> Any:
        if state is None:
            return None
        if self._type.base == "DECIMAL":
            return Decimal(state)
        if self._type.base == "BYTES":
            return bytes.fromhex(state)
        return state


class Min(_Extreme):
    name = "MIN"

    def _better(self, a: Any, b: Any) -> bool:
        return bool(a < b)


class Max(_Extreme):
    name = "MAX"

    def _better(self, a: Any, b: Any) -> bool:
        return bool(a > b)


register_aggregate(AggregateSpec("COUNT", Count, 0, 1, star=True))
register_aggregate(AggregateSpec("SUM", Sum, 1, 1))
register_aggregate(AggregateSpec("SUM_LIST", SumList, 1, 1))
register_aggregate(AggregateSpec("MIN", Min, 1, 1))
register_aggregate(AggregateSpec("MAX", Max, 1, 1))

__all__ = ["Count", "Max", "Min", "Sum"]
