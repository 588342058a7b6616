"""ksqlDB's array and map functions: ARRAY_* set operations, sorting and joining, SLICE, ELT,
FIELD, ENTRIES, GENERATE_SERIES, AS_MAP and the MAP_* functions.

Null handling follows ksqlDB's UDFs: a null collection gives null (ARRAY_CONCAT and MAP_UNION
return the other argument when only one is null); null elements are values like any other
(ARRAY_DISTINCT keeps one, ARRAY_SORT puts them last, ARRAY_MAX/MIN skip them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.functions.registry import const, register
from services.ksql_server.types import SqlType
from services.ksql_server.values import to_string


def _array_arg(name: str, index: int = 0) -> SqlType:
    raise KsqlError(f"Function '{name}' expects an ARRAY as argument {index + 1}")


def _same_array(name: str) -> Any:
    def ret(args: Sequence[SqlType | None]) -> SqlType:
        for a in args:
            if a is not None and a.base == "ARRAY":
                return a
        if all(a is None for a in args):
            return T.array(T.STRING)
        return _array_arg(name)

    return ret


def _item_of(name: str) -> Any:
    def ret(args: Sequence[SqlType | None]) -> SqlType:
        a = args[0]
        if a is None:
            return T.STRING
        if a.base != "ARRAY" or a.item is None:
            return _array_arg(name)
        return a.item

    return ret


def _distinct(items: Sequence[Any]) -> list[Any]:
    """Order kept; works for unhashable elements (structs, maps, arrays) too."""
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


@register("ARRAY_CONCAT", 2, 2, _same_array("ARRAY_CONCAT"))
def array_concat(a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
    if a is None and b is None:
        return None
    return list(a or []) + list(b or [])


@register("ARRAY_DISTINCT", 1, 1, _same_array("ARRAY_DISTINCT"))
def array_distinct(a: list[Any] | None) -> list[Any] | None:
    return None if a is None else _distinct(a)


@register("ARRAY_EXCEPT", 2, 2, _same_array("ARRAY_EXCEPT"))
def array_except(a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
    if a is None or b is None:
        return None
    return [x for x in _distinct(a) if x not in b]


@register("ARRAY_INTERSECT", 2, 2, _same_array("ARRAY_INTERSECT"))
def array_intersect(a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
    if a is None or b is None:
        return None
    return [x for x in _distinct(a) if x in b]


@register("ARRAY_UNION", 2, 2, _same_array("ARRAY_UNION"))
def array_union(a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
    if a is None or b is None:
        return None
    return _distinct(list(a) + list(b))


@register("ARRAY_REMOVE", 2, 2, _same_array("ARRAY_REMOVE"))
def array_remove(a: list[Any] | None, victim: Any) -> list[Any] | None:
    if a is None:
        return None
    return [x for x in a if x != victim] if victim is not None else [x for x in a if x is not None]


def _join_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        raise KsqlError("ARRAY_JOIN function only supports arrays of primitive types")
    return str(to_string(value, None))


@register("ARRAY_JOIN", 1, 2, const(T.STRING))
def array_join(a: list[Any] | None, delimiter: str | None = ",") -> str | None:
    """The elements' text joined by `delimiter` (default ','; null joins with nothing); a null
    element is the text 'null'."""
    if a is None:
        return None
    return ("" if delimiter is None else delimiter).join(_join_text(x) for x in a)


@register("ARRAY_MAX", 1, 1, _item_of("ARRAY_MAX"))
def array_max(a: list[Any] | None) -> Any:
    values = [x for x in a or [] if x is not None]
    return max(values) if values else None


@register("ARRAY_MIN", 1, 1, _item_of("ARRAY_MIN"))
def array_min(a: list[Any] | None) -> Any:
    values = [x for x in a or [] if x is not None]
    return min(values) if values else None


@register("ARRAY_SORT", 1, 2, _same_array("ARRAY_SORT"))
def array_sort(a: list[Any] | None, direction: str | None = "ASC") -> list[Any] | None:
    """Ascending (default) or 'DESC'; nulls last either way; another direction gives null."""
    if a is None or direction is None:
        return None
    d = direction.upper()
    if d not in ("ASC", "DESC"):
        return None
    if any(isinstance(x, (list, dict)) for x in a):
        raise KsqlError("ARRAY_SORT function only supports arrays of primitive types")
    values = sorted((x for x in a if x is not None), reverse=d == "DESC")
    return values + [None] * (len(a) - len(values))


@register("SLICE", 3, 3, _same_array("SLICE"))
def slice_(a: list[Any] | None, start: int | None, end: int | None) -> list[Any] | None:
    """Elements `start` to `end`, 1-based and inclusive; null when out of range."""
    if a is None or start is None or end is None:
        return None
    if start < 1 or end > len(a) or start - 1 > end:
        return None
    return a[start - 1 : end]


@register("ELT", 1, -1, const(T.STRING))
def elt(n: int | None, *items: str | None) -> str | None:
    """The `n`th of the remaining arguments (1-based); null when out of range."""
    if n is None or n < 1 or n > len(items):
        return None
    return items[n - 1]


@register("FIELD", 1, -1, const(T.INTEGER))
def field(value: str | None, *items: str | None) -> int:
    """The 1-based position of `value` among the remaining arguments; 0 when absent or null."""
    if value is None:
        return 0
    for i, item in enumerate(items, 1):
        if item == value:
            return i
    return 0


def _entries_ret(args: Sequence[SqlType | None]) -> SqlType:
    m = args[0]
    value = m.item if m is not None and m.base == "MAP" and m.item is not None else T.STRING
    return T.array(T.struct([("K", T.STRING), ("V", value)]))


@register("ENTRIES", 2, 2, _entries_ret)
def entries(m: dict[str, Any] | None, sort: bool | None) -> list[dict[str, Any]] | None:
    """The map's entries as structs {K, V}; sorted by key when `sort` is true."""
    if m is None or sort is None:
        return None
    items = sorted(m.items()) if sort else list(m.items())
    return [{"K": k, "V": v} for k, v in items]


def _series_ret(args: Sequence[SqlType | None]) -> SqlType:
    wide = any(a is not None and a.base == "BIGINT" for a in args[:2])
    return T.array(T.BIGINT if wide else T.INTEGER)


MAX_SERIES = 1_000_000
"""Elements one GENERATE_SERIES call may build: the bounds are data, and memory is not."""


@register("GENERATE_SERIES", 2, 3, _series_ret)
def generate_series(start: int | None, end: int | None, *given: int | None) -> Any:
    """`start` to `end` inclusive by `step`; without one, ksqlDB counts up by 1 or down by 1
    (GENERATE_SERIES(4, 3) is [4, 3])."""
    if start is None or end is None:
        return None
    step = given[0] if given else (1 if end - start > 0 else -1)
    if step is None:
        return None
    if step == 0:
        raise KsqlError("GENERATE_SERIES step cannot be zero")
    if (end - start) * step < 0:
        raise KsqlError("GENERATE_SERIES step has wrong sign")
    if (end - start) // step + 1 > MAX_SERIES:
        raise KsqlError(f"GENERATE_SERIES would build more than {MAX_SERIES} elements")
    return list(range(start, end + (1 if step > 0 else -1), step))


def _as_map_ret(args: Sequence[SqlType | None]) -> SqlType:
    v = args[1]
    value = v.item if v is not None and v.base == "ARRAY" and v.item is not None else T.STRING
    return T.map_of(T.STRING, value)


@register("AS_MAP", 2, 2, _as_map_ret)
def as_map(keys: list[str] | None, values: list[Any] | None) -> dict[str, Any] | None:
    """Keys paired with values in order; extra keys map to null, extra values are dropped."""
    if keys is None or values is None:
        return None
    return {k: (values[i] if i < len(values) else None) for i, k in enumerate(keys)}


def _map_part(which: str) -> Any:
    def ret(args: Sequence[SqlType | None]) -> SqlType:
        m = args[0]
        if m is None:
            return T.array(T.STRING)
        if m.base != "MAP":
            raise KsqlError(f"Function 'MAP_{which}' expects a MAP argument")
        part = m.key if which == "KEYS" else m.item
        return T.array(part or T.STRING)

    return ret


@register("MAP_KEYS", 1, 1, _map_part("KEYS"))
def map_keys(m: dict[Any, Any] | None) -> list[Any] | None:
    return None if m is None else list(m.keys())


@register("MAP_VALUES", 1, 1, _map_part("VALUES"))
def map_values(m: dict[Any, Any] | None) -> list[Any] | None:
    return None if m is None else list(m.values())


def _map_union_ret(args: Sequence[SqlType | None]) -> SqlType:
    for a in args:
        if a is not None:
            return a
    return T.map_of(T.STRING, T.STRING)


@register("MAP_UNION", 2, 2, _map_union_ret)
def map_union(a: dict[Any, Any] | None, b: dict[Any, Any] | None) -> dict[Any, Any] | None:
    """Both maps' entries; the second's value wins on a shared key."""
    if a is None and b is None:
        return None
    return {**(a or {}), **(b or {})}
