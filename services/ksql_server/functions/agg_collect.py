"""Aggregates that keep values: COUNT_DISTINCT, COLLECT_LIST, COLLECT_SET, HISTOGRAM, TOPK and
TOPKDISTINCT.

Their accumulators hold engine values (lists, a dict of counts), so each encodes them for the
state store with the argument's type (`agg_values.encode`). Undo exists where ksqlDB's is a
TableUdaf (COLLECT_LIST, HISTOGRAM); the others can only aggregate streams. Merges follow
ksqlDB's: lists concatenate up to their limit, top-k lists merge in sort order.

COUNT_DISTINCT is exact here (ksqlDB's is a HyperLogLog estimate, exact at small counts): its
state is the set of distinct values rather than 16k registers. COLLECT_LIST and COLLECT_SET
honour `ksql.functions.collect_list.limit` / `collect_set.limit` through `configure`, as ksqlDB's
Configurable UDAFs do; HISTOGRAM keeps at most 1,000 distinct strings, as ksqlDB does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from services.ksql_server.functions.agg_values import decode, encode, java_key, reject, require
from services.ksql_server.functions.aggregates import (
    AggregateFunction,
    AggregateSpec,
    register_aggregate,
)
from services.ksql_server.types import BIGINT, STRING, SqlType, array, map_of, struct

UNLIMITED = 2**31 - 1
HISTOGRAM_LIMIT = 1000
TOPK_TYPES = ("INTEGER", "BIGINT", "DOUBLE", "STRING")
TOPK_DISTINCT_TYPES = (*TOPK_TYPES, "DECIMAL", "DATE", "TIME", "TIMESTAMP", "BYTES")


class _Typed(AggregateFunction):
    """An aggregate over one typed value argument; the state is a list of encoded values."""

    complex_state = True  # the intermediate type is an ARRAY/MAP/STRUCT (not DELIMITED-able)

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        super().__init__(arg_types, literals)
        if not arg_types or arg_types[0] is None:
            raise reject(self.name, arg_types)
        self.item: SqlType = arg_types[0]

    def to_state(self, acc: Any) -> Any:
        return [encode(v, self.item) for v in acc]

    def from_state(self, state: Any) -> Any:
        return [decode(v, self.item) for v in state]


class CountDistinct(_Typed):
    """COUNT_DISTINCT: the number of distinct non-null values (exact)."""

    name = "COUNT_DISTINCT"

    @property
    def return_type(self) -> SqlType:
        return BIGINT

    def initial(self) -> Any:
        return []

    def _canonical(self, value: Any) -> str:
        return json.dumps(encode(value, self.item), sort_keys=True)

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        if args[0] is None:
            return acc
        token = self._canonical(args[0])
        return acc if token in acc else [*acc, token]

    def merge(self, a: Any, b: Any) -> Any:
        return a + [t for t in b if t not in a]

    def result(self, acc: Any) -> Any:
        return len(acc)

    def to_state(self, acc: Any) -> Any:
        return list(acc)

    def from_state(self, state: Any) -> Any:
        return list(state)


class _Limited(_Typed):
    """A collecting aggregate with ksqlDB's configurable size limit."""

    limit_config = ""

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        super().__init__(arg_types, literals)
        self.limit = UNLIMITED

    def configure(self, props: Mapping[str, Any]) -> None:
        """Read the limit property (a negative limit means none), as ksqlDB's Configurable."""
        raw = props.get(self.limit_config)
        if raw is not None:
            self.limit = int(raw)
        if self.limit < 0:
            self.limit = UNLIMITED

    @property
    def return_type(self) -> SqlType:
        return array(self.item)

    def initial(self) -> Any:
        return []

    def result(self, acc: Any) -> Any:
        return list(acc)


class CollectList(_Limited):
    """COLLECT_LIST: every value in arrival order, nulls included."""

    name = "COLLECT_LIST"
    undoable = True
    limit_config = "ksql.functions.collect_list.limit"

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        return [*acc, args[0]] if len(acc) < self.limit else acc

    def undo(self, acc: Any, args: tuple[Any, ...]) -> Any:
        for i in range(len(acc) - 1, -1, -1):
            if acc[i] == args[0]:
                return acc[:i] + acc[i + 1 :]
        return acc

    def merge(self, a: Any, b: Any) -> Any:
        return a + b[: max(0, self.limit - len(a))]


class CollectSet(_Limited):
    """COLLECT_SET: distinct values in first-arrival order."""

    name = "COLLECT_SET"
    limit_config = "ksql.functions.collect_set.limit"

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        if len(acc) < self.limit and args[0] not in acc:
            return [*acc, args[0]]
        return acc

    def merge(self, a: Any, b: Any) -> Any:
        out = list(a)
        for value in b:
            if len(out) >= self.limit:
                break
            if value not in out:
                out.append(value)
        return out


class Histogram(AggregateFunction):
    """HISTOGRAM(string): value → count, at most 1,000 distinct values; nulls skipped."""

    name = "HISTOGRAM"
    undoable = True
    complex_state = True

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        super().__init__(arg_types, literals)
        require(self.name, arg_types, ("STRING",))

    @property
    def return_type(self) -> SqlType:
        return map_of(STRING, BIGINT)

    def initial(self) -> Any:
        return {}

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        value = args[0]
        if value is None or (len(acc) >= HISTOGRAM_LIMIT and value not in acc):
            return acc
        return {**acc, value: acc.get(value, 0) + 1}

    def undo(self, acc: Any, args: tuple[Any, ...]) -> Any:
        value = args[0]
        if value not in acc:
            return acc
        out = dict(acc)
        if out[value] <= 1:
            del out[value]
        else:
            out[value] -= 1
        return out

    def merge(self, a: Any, b: Any) -> Any:
        out = dict(a)
        for value, n in b.items():
            if len(out) < HISTOGRAM_LIMIT or value in out:
                out[value] = out.get(value, 0) + n
        return out

    def result(self, acc: Any) -> Any:
        return dict(acc)

    def to_state(self, acc: Any) -> Any:
        return dict(acc)

    def from_state(self, state: Any) -> Any:
        return dict(state)


def _k(name: str, literals: Sequence[Any]) -> int:
    if len(literals) != 1 or isinstance(literals[0], bool) or not isinstance(literals[0], int):
        raise reject(name, [])
    return int(literals[0])


class TopK(_Typed):
    """TOPK(col, [other cols...,] k): the k greatest values, descending; with other columns,
    structs `sort_col`, `col0`, … of the rows holding them."""

    name = "TOPK"

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        super().__init__(arg_types, literals)
        require(self.name, arg_types, TOPK_TYPES)
        self.k = _k(self.name, literals)
        if len(arg_types) > 1:
            fields = [("sort_col", self.item)]
            fields += [(f"col{i}", t or STRING) for i, t in enumerate(arg_types[1:])]
            self.entry = struct(fields)
        else:
            self.entry = self.item

    @property
    def return_type(self) -> SqlType:
        return array(self.entry)

    def _sort_value(self, entry: Any) -> Any:
        return entry["sort_col"] if self.entry is not self.item else entry

    def _entry(self, args: tuple[Any, ...]) -> Any:
        if self.entry is self.item:
            return args[0]
        return {"sort_col": args[0], **{f"col{i}": v for i, v in enumerate(args[1:])}}

    def initial(self) -> Any:
        return []

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        if args[0] is None or self.k < 1:
            return acc
        full = len(acc) >= self.k
        if full and java_key(args[0]) <= java_key(self._sort_value(acc[-1])):
            return acc
        out = (acc[:-1] if full else list(acc)) + [self._entry(args)]
        out.sort(key=lambda e: java_key(self._sort_value(e)), reverse=True)
        return out

    def merge(self, a: Any, b: Any) -> Any:
        out: list[Any] = []
        i = j = 0
        while len(out) < self.k and (i < len(a) or j < len(b)):
            take_a = j >= len(b) or (
                i < len(a) and java_key(self._sort_value(a[i])) >= java_key(self._sort_value(b[j]))
            )
            if take_a:
                out.append(a[i])
                i += 1
            else:
                out.append(b[j])
                j += 1
        return out

    def result(self, acc: Any) -> Any:
        return list(acc)

    def to_state(self, acc: Any) -> Any:
        return [encode(v, self.entry) for v in acc]

    def from_state(self, state: Any) -> Any:
        return [decode(v, self.entry) for v in state]


class TopKDistinct(_Typed):
    """TOPKDISTINCT(col, k): the k greatest distinct values, descending."""

    name = "TOPKDISTINCT"

    def __init__(self, arg_types: Sequence[SqlType | None], literals: Sequence[Any]) -> None:
        super().__init__(arg_types, literals)
        require(self.name, arg_types, TOPK_DISTINCT_TYPES)
        self.k = _k(self.name, literals)

    @property
    def return_type(self) -> SqlType:
        return array(self.item)

    def initial(self) -> Any:
        return []

    def add(self, acc: Any, args: tuple[Any, ...]) -> Any:
        value = args[0]
        if value is None or self.k < 1 or value in acc:
            return acc
        full = len(acc) >= self.k
        if full and java_key(value) <= java_key(acc[-1]):
            return acc
        out = (acc[:-1] if full else list(acc)) + [value]
        out.sort(key=java_key, reverse=True)
        return out

    def merge(self, a: Any, b: Any) -> Any:
        out: list[Any] = []
        i = j = 0
        while len(out) < self.k and (i < len(a) or j < len(b)):
            ka = java_key(a[i]) if i < len(a) else None
            kb = java_key(b[j]) if j < len(b) else None
            if kb is None or (ka is not None and ka > kb):
                out.append(a[i])
                i += 1
            elif ka is None or kb > ka:
                out.append(b[j])
                j += 1
            else:
                out.append(a[i])
                i += 1
                j += 1
        return out

    def result(self, acc: Any) -> Any:
        return list(acc)


for _cls in (CountDistinct, CollectList, CollectSet, Histogram):
    register_aggregate(AggregateSpec(_cls.name, _cls, 1, 1))
register_aggregate(AggregateSpec(TopK.name, TopK, 1, -1, literal_args=1))
register_aggregate(AggregateSpec(TopKDistinct.name, TopKDistinct, 1, 1, literal_args=1))
