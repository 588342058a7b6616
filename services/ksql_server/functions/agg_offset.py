"""LATEST_BY_OFFSET and EARLIEST_BY_OFFSET, single-value and N forms, with `ignoreNulls`.

Forms (as ksqlDB's): `F(col)`, `F(col, ignoreNulls)`, `F(col, n)`, `F(col, n, ignoreNulls)`;
`ignoreNulls` defaults to true; the N forms return an ARRAY of the column's type, oldest first.
Like ksqlDB, each kept value is stamped with a process-wide sequence number, so that merging two
session windows can tell which value arrived later. The sequence continues past any restored
state (`from_state`), so values added after a restart order after the restored ones.

One deliberate difference: merging LATEST_BY_OFFSET(col, n) keeps the *latest* n values (ksqlDB
keeps the first n after sorting, which contradicts the function); this makes a merge of two
sessions equal to the session that saw both sides' rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from services.ksql_server.errors import KsqlError
from services.ksql_server.functions.agg_values import decode, encode, reject
from services.ksql_server.functions.aggregates import (
    AggregateFunction,
    AggregateSpec,
    register_aggregate,
)
from services.ksql_server.types import SqlType, array

_sequence = itertools.count()
_floor = 0  # the smallest sequence number not yet seen in restored state


def next_sequence() -> int:
    """The next sequence number, above every one restored from state."""
    return next(_sequence)


def _seen(seq: int) -> None:
    global _floor, _sequence
    if seq >= _floor:
        _floor = seq + 1
        _sequence = itertools.count(_floor)


def _forms(name: str, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> tuple:
    """(n or None, ignore_nulls) from the literal parameters."""
    n: int | None = None
    ignore = True
    rest = list(literals)
    if rest and not isinstance(rest[0], bool) and isinstance(rest[0], int):
        n = int(rest.pop(0))
    if rest and isinstance(rest[0], bool):
        ignore = rest.pop(0)
    if rest:
        raise reject(name, list(arg_types) + [None] * len(literals))
    if n is not None and n <= 0:
        raise KsqlError(f"{name.split('_')[0].lower()}N must be 1 or greater")
    return n, ignore


class _ByOffset(AggregateFunction):
    """State: one [seq, value] entry (single form) or a list of them (N form), oldest first."""

    complex_state = True

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        super().__init__(arg_types, literals)
        if len(arg_types) != 1 or arg_types[0] is None:
            raise reject(self.name, arg_types)
        self.item: SqlType = arg_types[0]
        self.n, self.ignore_nulls = _forms(self.name, arg_types, literals)

    @property
    def return_type(self) -> SqlType:
        return self.item if self.n is None else array(self.item)

    def _skip(self, value: Any) -> bool:
        return value is None and self.ignore_nulls

    def result(self, acc: Any) -> Any:
        if self.n is not None:
            return [v for _, v in acc]
        return None if acc is None else acc[1]

    def to_state(self, acc: Any) -> Any:
        if self.n is not None:
            return [[s, encode(v, self.item)] for s, v in acc]
        return None if acc is None else [acc[0], encode(acc[1], self.item)]

    def from_state(self, state: Any) -> Any:
        if state is None:
            return None
        entries = state if self.n is not None else [state]
        out = [[s, decode(v, self.item)] for s, v in entries]
        for s, _ in out:
            _seen(s)
        return out if self.n is not None else out[0]


class LatestByOffset(_ByOffset):
    name = "LATEST_BY_OFFSET"

    def initial(self) -> Any:
        return [] if self.n is not None else [next_sequence(), None]

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        if self._skip(args[0]):
            return acc
        entry = [next_sequence(), args[0]]
        return ([*acc, entry])[-self.n :] if self.n is not None else entry

    def merge(self, a: Any, b: Any) -> Any:
        if self.n is not None:
            return sorted(a + b, key=lambda e: e[0])[-self.n :]
        if self.ignore_nulls and (a[1] is None) != (b[1] is None):
            return a if b[1] is None else b
        return a if a[0] >= b[0] else b


class EarliestByOffset(_ByOffset):
    name = "EARLIEST_BY_OFFSET"

    def initial(self) -> Any:
        return [] if self.n is not None else None

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        if self.n is not None:
            if self._skip(args[0]) or len(acc) >= self.n:
                return acc
            return [*acc, [next_sequence(), args[0]]]
        if acc is not None or self._skip(args[0]):
            return acc
        return [next_sequence(), args[0]]

    def merge(self, a: Any, b: Any) -> Any:
        if self.n is not None:
            return sorted(a + b, key=lambda e: e[0])[: self.n]
        if a is None or b is None:
            return b if a is None else a
        return a if a[0] < b[0] else b


for _cls in (LatestByOffset, EarliestByOffset):
    register_aggregate(AggregateSpec(_cls.name, _cls, 1, 1, literal_args=2))
