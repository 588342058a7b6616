"""ksqlDB's implicit coercion: the common type of a user-written list and literal conversion.

Why a module of its own: the same rule decides the type of `x IN (a, b, c)`, of
`ARRAY[a, b, c]` and of `MAP(k := v, …)` in ksqlDB, and one place keeps the three in step.
The rule (ksqlDB's documented "implicit type coercion"): the list is read in order; the first
typed element sets the type; each next element must coerce to it or it to the element, and the
wider of the two wins. Literals coerce laxly (`'10'` to a number, `'yes'` to BOOLEAN, `10` to
STRING); other expressions only strictly (a wider number, a wider DECIMAL, a superset STRUCT).
A string literal beside a number takes the numeric type its text has (`'2147483648'` is a
BIGINT). Nothing here knows the compiler: types and Python values in, types and values out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.naming import expr_text
from services.ksql_server.types import SqlType
from services.ksql_server.values import parse_date, parse_time, parse_timestamp, to_string

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1

_JAVA_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_JAVA_BIG_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_JAVA_DOUBLE = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?|NaN|Infinity)", re.ASCII
)
_NUMERIC_ORDER = ("INTEGER", "BIGINT", "DECIMAL", "DOUBLE")


class CoercionError(KsqlError):
    """Two types in one list have no common type (`operator does not exist: …`)."""


# ----------------------------------------------------------------------------- Java parsing


def parse_java_int(text: str, lo: int = INT_MIN, hi: int = INT_MAX) -> int:
    """`Integer.parseInt` / `Long.parseLong` (with `lo`/`hi` of a long): ASCII digits with an
    optional sign, nothing else; out of range raises like Java's NumberFormatException."""
    if not _JAVA_INT.fullmatch(text):
        raise ValueError(f'For input string: "{text}"')
    value = int(text)
    if not lo <= value <= hi:
        raise ValueError(f'For input string: "{text}"')
    return value


def parse_java_decimal(text: str) -> Decimal:
    """`new BigDecimal(text)`: no NaN, no Infinity, no underscores (Python's Decimal takes
    all three)."""
    if not _JAVA_BIG_DECIMAL.fullmatch(text):
        raise ValueError(f"Character array is missing \"exponent\" mark 'e' or 'E': {text}")
    return Decimal(text)


def parse_sql_double(text: str) -> float:
    """ksqlDB's `SqlDoubles.parseDouble`: Java's `Double.parseDouble`, but a value that is
    infinite or NaN (`'Infinity'`, `'1e400'`) is an error."""
    if not _JAVA_DOUBLE.fullmatch(text):
        raise ValueError(f'For input string: "{text}"')
    value = float(text.rstrip("fFdD") if not text.endswith("Infinity") else text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"Invalid double value: {text}")
    return value


def parse_boolean_exact(text: str) -> bool | None:
    """ksqlDB's `SqlBooleans.parseBooleanExact`: a case-insensitive prefix of true/yes or
    false/no (`'t'`, `'Y'`, `'fa'`); None for anything else, the empty string included."""
    if not text:
        return None
    low = text.lower()
    if "true".startswith(low) or "yes".startswith(low):
        return True
    if "false".startswith(low) or "no".startswith(low):
        return False
    return None


# ----------------------------------------------------------------------------- decimal types


def decimal_type_of(value: Decimal) -> SqlType:
    """DecimalUtil.fromValue: the DECIMAL type of a value (0.005 is DECIMAL(4, 3), 120 is
    DECIMAL(3, 0))."""
    sign, digits, exponent = value.as_tuple()
    del sign
    assert isinstance(exponent, int)
    scale = max(-exponent, 0)
    if abs(value) < 1:
        return T.decimal(scale + 1, scale)
    precision = len(digits) + max(exponent, 0) if exponent >= 0 else len(digits)
    return T.decimal(precision, scale)


def widen_decimal(a: SqlType, b: SqlType) -> SqlType:
    """DecimalUtil.widen: a DECIMAL holding both (INTEGER as DECIMAL(10, 0), BIGINT (19, 0))."""
    x, y = T.as_decimal(a), T.as_decimal(b)
    scale = max(x.scale, y.scale)
    whole = max(x.precision - x.scale, y.precision - y.scale)
    return T.decimal(whole + scale, scale)


def string_numeric_type(text: str) -> SqlType:
    """The numeric type a string literal's text has: INTEGER or BIGINT for whole numbers
    strictly inside their range, else the DECIMAL of its value. Raises ValueError."""
    value = parse_java_decimal(text.strip())
    if "." not in text and "e" not in text.lower() and value == value.to_integral_value():
        whole = int(value)
        if INT_MIN < whole < INT_MAX:
            return T.INTEGER
        if BIGINT_MIN < whole < BIGINT_MAX:
            return T.BIGINT
    if value.as_tuple().exponent > 0:  # type: ignore[operator]
        value = value.quantize(Decimal(1))
    return decimal_type_of(value)


# ----------------------------------------------------------------------------- type rules

_LAX_TO_STRING = ("BOOLEAN", "INTEGER", "BIGINT", "DECIMAL", "DOUBLE", "TIMESTAMP", "TIME", "DATE")
_LAX_FROM_STRING = ("BOOLEAN", "INTEGER", "BIGINT", "DECIMAL", "DOUBLE")
_STRICT_FROM_STRING = ("TIMESTAMP", "TIME", "DATE", "BYTES")


def can_coerce(src: SqlType, dst: SqlType, lax: bool) -> SqlType | None:
    """The type a `src` value takes when coerced to `dst` (DefaultSqlValueCoercer's rules:
    strict for expressions, lax for literals), or None when it cannot."""
    s, d = src.base, dst.base
    if s in _NUMERIC_ORDER and d in _NUMERIC_ORDER:
        if _NUMERIC_ORDER.index(s) > _NUMERIC_ORDER.index(d):
            return None
        return widen_decimal(src, dst) if d == "DECIMAL" else dst
    if s == d == "ARRAY":
        assert src.item is not None and dst.item is not None
        item = can_coerce(src.item, dst.item, lax)
        return None if item is None else T.array(item)
    if s == d == "MAP":
        assert src.key and src.item and dst.key and dst.item
        key, value = can_coerce(src.key, dst.key, lax), can_coerce(src.item, dst.item, lax)
        return None if key is None or value is None else T.map_of(key, value)
    if s == d == "STRUCT":
        return _struct_superset(src, dst, lambda a, b: can_coerce(a, b, lax))
    if s == d:
        return dst
    if s == "STRING" and d in _STRICT_FROM_STRING:
        return dst
    if lax and (
        (d == "STRING" and s in _LAX_TO_STRING) or (s == "STRING" and d in _LAX_FROM_STRING)
    ):
        return dst
    return None


def can_implicitly_cast(src: SqlType, dst: SqlType) -> bool:
    """ksqlDB's implicit cast into a sink column (INSERT INTO): a number to a number at least
    as wide (a DECIMAL to one with room for its whole digits and scale), a string to a temporal
    type or BYTES; other types only to themselves."""
    if src == dst:
        return True
    if src.base == dst.base == "DECIMAL":
        return src.scale <= dst.scale and src.precision - src.scale <= dst.precision - dst.scale
    if src.is_numeric and dst.is_numeric:
        return _NUMERIC_ORDER.index(src.base) <= _NUMERIC_ORDER.index(dst.base)
    return src.base == "STRING" and dst.base in ("TIMESTAMP", "DATE", "TIME", "BYTES")


def _struct_superset(
    src: SqlType, dst: SqlType, field_rule: Callable[[SqlType, SqlType], SqlType | None]
) -> SqlType | None:
    """Every field of either struct, in order (source's first); a shared field takes the
    common type of its two types."""
    sf, df = dict(src.fields), dict(dst.fields)
    names = list(dict.fromkeys([n for n, _ in src.fields] + [n for n, _ in dst.fields]))
    fields = []
    for name in names:
        if name not in sf or name not in df:
            fields.append((name, sf.get(name) or df[name]))
            continue
        common = field_rule(sf[name], df[name])
        if common is None:
            return None
        fields.append((name, common))
    return T.struct(fields)


# ----------------------------------------------------------------------------- literal values


def coerce_literal(value: Any, src: SqlType, dst: SqlType) -> Any:
    """A literal's value as `dst` (ksqlDB's lax coercion); ValueError when it does not fit."""
    if value is None or src == dst:
        return value
    d = dst.base
    if d == "STRING":
        if isinstance(value, Decimal):
            return f"{value:f}"
        return to_string(value, src)
    if isinstance(value, str):
        return _parse_as(value.strip(), dst)
    if d in ("INTEGER", "BIGINT"):
        return int(value)
    if d == "DOUBLE":
        return float(value)
    if d == "DECIMAL":
        return fit_decimal(Decimal(repr(value) if isinstance(value, float) else value), dst)
    raise ValueError(f"Cannot coerce {src} to {dst}")


def fit_decimal(value: Decimal, dst: SqlType) -> Decimal:
    """DecimalUtil.ensureFit: the value at `dst`'s scale, refusing overflow and rounding."""
    if abs(value) >= Decimal(10) ** (dst.precision - dst.scale):
        raise ValueError(f"Numeric field overflow: {value} does not fit {dst}")
    fitted = value.quantize(Decimal(1).scaleb(-dst.scale))
    if fitted != value:
        raise ValueError(f"Cannot fit decimal '{value}' into {dst} without rounding.")
    return fitted


def _parse_as(text: str, dst: SqlType) -> Any:
    d = dst.base
    if d == "BOOLEAN":
        parsed = parse_boolean_exact(text)
        if parsed is None:
            raise ValueError(f"not a boolean: {text}")
        return parsed
    if d == "INTEGER":
        return parse_java_int(text)
    if d == "BIGINT":
        return parse_java_int(text, BIGINT_MIN, BIGINT_MAX)
    if d == "DOUBLE":
        return parse_sql_double(text)
    if d == "DECIMAL":
        try:
            return fit_decimal(parse_java_decimal(text), dst)
        except InvalidOperation as exc:
            raise ValueError(str(exc)) from exc
    parsers: dict[str, Callable[[str], Any]] = {
        "TIMESTAMP": parse_timestamp,
        "DATE": parse_date,
        "TIME": parse_time,
    }
    if d in parsers:
        return parsers[d](text)
    raise ValueError(f"Cannot coerce STRING to {dst}")


# ----------------------------------------------------------------------------- user lists


@dataclass(frozen=True)
class Typed:
    """One list element: its syntax (to tell literals and constructors apart) and its type."""

    expr: A.Expr
    type: SqlType | None


def invalid_syntax(value: object, target: SqlType) -> KsqlError:
    return KsqlError(f'invalid input syntax for type {target.base}: "{value}".')


def coercion_failure(e: A.Expr, source: SqlType | None, target: SqlType) -> CoercionError:
    return CoercionError(
        f"operator does not exist: {target} = {source} ({expr_text(e)})\n"
        "Hint: You might need to add explicit type casts."
    )


TypeOf = Callable[[A.Expr], SqlType | None]


def common_type(items: Sequence[Typed], type_of: TypeOf) -> SqlType | None:
    """The type every element of a user list coerces to, in order; None when all are NULL.

    `type_of` types the elements of nested constructors (ARRAY[…], MAP(…), STRUCT(…))."""
    result: SqlType | None = None
    for item in items:
        result = _next_common(item, result, type_of)
    return result


def _next_common(item: Typed, target: SqlType | None, type_of: TypeOf) -> SqlType | None:
    if target is None:
        return item.type
    if item.type is None:
        return target
    e = item.expr
    try:
        if isinstance(e, A.ArrayCtor):
            if target.base != "ARRAY":
                raise coercion_failure(e, item.type, target)
            assert target.item is not None
            inner = _nested_common(target.item, e.items, type_of)
            return T.array(inner)
        if isinstance(e, A.MapCtor):
            if target.base != "MAP":
                raise coercion_failure(e, item.type, target)
            assert target.key is not None and target.item is not None
            key = _nested_common(target.key, [k for k, _ in e.entries], type_of)
            value = _nested_common(target.item, [v for _, v in e.entries], type_of)
            return T.map_of(key, value)
        if isinstance(e, A.StructCtor):
            if target.base != "STRUCT":
                raise coercion_failure(e, item.type, target)
            return _struct_common(e, target, type_of)
    except CoercionError as inner_error:
        raise coercion_failure(e, item.type, target) from inner_error
    if isinstance(e, A.Literal) and isinstance(e.value, str):
        if target.is_numeric:
            return _numeric_from_string(e.value, target)
        if target.base == "BOOLEAN":
            if parse_boolean_exact(e.value.strip()) is None:
                raise invalid_syntax(e.value, T.BOOLEAN)
            return target
    lax = isinstance(e, A.Literal)
    common = can_coerce(item.type, target, lax) or can_coerce(target, item.type, lax)
    if common is None:
        raise coercion_failure(e, item.type, target)
    return common


def _nested_common(target: SqlType, exprs: Sequence[A.Expr], type_of: TypeOf) -> SqlType:
    typed = [Typed(x, type_of(x)) for x in exprs]
    return common_type([Typed(A.Literal(None, None), target), *typed], type_of) or target


def _struct_common(e: A.StructCtor, target: SqlType, type_of: TypeOf) -> SqlType:
    own = {n: v for n, v in e.fields}
    tf = dict(target.fields)
    fields = []
    for name in dict.fromkeys([n for n, _ in e.fields] + [n for n, _ in target.fields]):
        src_type = type_of(own[name]) if name in own else None
        if name not in tf:
            fields.append((name, src_type or T.STRING))
        elif src_type is None:
            fields.append((name, tf[name]))
        else:
            common = _next_common(Typed(own[name], src_type), tf[name], type_of)
            fields.append((name, common or tf[name]))
    return T.struct(fields)


def _numeric_from_string(text: str, target: SqlType) -> SqlType:
    try:
        source = string_numeric_type(text)
    except (ValueError, InvalidOperation):
        raise invalid_syntax(text, target) from None
    if source.base == "DOUBLE" or target.base == "DOUBLE":
        return T.DOUBLE
    if source.base == "DECIMAL" or target.base == "DECIMAL":
        return widen_decimal(source, target)
    return (
        target if _NUMERIC_ORDER.index(source.base) <= _NUMERIC_ORDER.index(target.base) else source
    )
