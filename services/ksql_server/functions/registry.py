"""The scalar functions the engine knows.

Each function states its return type from its argument types (so a CSAS sink schema is known
before any record flows) and gives a plain Python callable that the expression compiler calls
directly from generated code. Null handling follows ksqlDB: most functions return null for a
null input; IFNULL/COALESCE/CONCAT treat nulls specially.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.types import SqlType
from services.ksql_server.values import java_double, timestamp_str, to_string

Returns = Callable[[Sequence[SqlType | None]], SqlType]


@dataclass(frozen=True)
class Function:
    name: str
    impl: Callable[..., Any]
    returns: Returns
    min_args: int
    max_args: int  # -1: variadic
    pass_types: bool = False  # impl gets the argument types as a first parameter
    params: Callable[[Sequence[SqlType | None]], Sequence[SqlType | None]] | None = None
    """The parameter types the arguments are cast to first (ksqlDB's implicit casts of a
    resolved overload: GREATEST(date_col, '2022-06-14') parses the string as a DATE)."""

    def check(self, arg_types: Sequence[SqlType | None]) -> SqlType:
        n = len(arg_types)
        if n < self.min_args or (self.max_args >= 0 and n > self.max_args):
            shown = ", ".join(str(t) if t else "null" for t in arg_types)
            raise KsqlError(f"Function '{self.name}' does not accept parameters ({shown}).")
        return self.returns(arg_types)


FUNCTIONS: dict[str, Function] = {}


def _register(
    name: str, min_args: int, max_args: int, returns: Returns, pass_types: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        FUNCTIONS[name] = Function(name, fn, returns, min_args, max_args, pass_types)
        return fn

    return deco


register = _register
"""The public name other function modules register with (one place per function)."""


def lookup(name: str) -> Function | None:
    return FUNCTIONS.get(name.upper())


def _const(t: SqlType) -> Returns:
    return lambda _args: t


const = _const


def numeric_args(name: str, ret: SqlType, strings_from: int | None = None) -> Returns:
    """`ret`, for arguments that are numbers (from `strings_from` on: strings): ksqlDB never
    casts a STRING to a number for a function (`GEO_DISTANCE(lat, lon, 'foo', 0)` is refused
    with `Function '<name>' does not accept parameters (…)`)."""

    def check(args: Sequence[SqlType | None]) -> SqlType:
        for i, a in enumerate(args):
            want_string = strings_from is not None and i >= strings_from
            ok = a is None or (a.base == "STRING" if want_string else a.is_numeric)
            if not ok:
                shown = ", ".join(str(t) if t else "null" for t in args)
                raise KsqlError(f"Function '{name}' does not accept parameters ({shown}).")
        return ret

    return check


def _first(args: Sequence[SqlType | None]) -> SqlType:
    for a in args:
        if a is not None:
            return a
    return T.STRING


def _need_string(name: str) -> Returns:
    def ret(args: Sequence[SqlType | None]) -> SqlType:
        if args and args[0] is not None and args[0].base != "STRING":
            raise KsqlError(
                f"Function '{name}' does not accept parameters ({', '.join(map(str, args))})."
            )
        return T.STRING

    return ret


# ----------------------------------------------------------------------------- masking


def _mask_char(
    c: str, upper: str | None, lower: str | None, digit: str | None, other: str | None
) -> str:
    if "A" <= c <= "Z":
        return c if upper is None else upper
    if "a" <= c <= "z":
        return c if lower is None else lower
    if "0" <= c <= "9":
        return c if digit is None else digit
    return c if other is None else other


_DEFAULTS = ("X", "x", "n", "-")


def _mask_chars(args: Sequence[str | None]) -> tuple[str | None, ...]:
    out: list[str | None] = list(_DEFAULTS)
    for i, a in enumerate(args[:4]):
        out[i] = None if a is None else a[:1]
    return tuple(out)


def _mask_range(s: str | None, start: int, end: int, chars: Sequence[str | None]) -> str | None:
    if s is None:
        return None
    u, lo, d, o = _mask_chars(chars)
    return "".join(_mask_char(c, u, lo, d, o) if start <= i < end else c for i, c in enumerate(s))


@_register("MASK", 1, 5, _need_string("MASK"))
def mask(s: str | None, *chars: str | None) -> str | None:
    return None if s is None else _mask_range(s, 0, len(s), chars)


def _n(n: int | None, name: str) -> int:
    if n is None or n < 0:
        raise KsqlError(f"function {name} requires a non-negative number of characters to mask")
    return n


@_register("MASK_LEFT", 2, 6, _need_string("MASK_LEFT"))
def mask_left(s: str | None, n: int | None, *chars: str | None) -> str | None:
    return None if s is None else _mask_range(s, 0, _n(n, "mask_left"), chars)


@_register("MASK_RIGHT", 2, 6, _need_string("MASK_RIGHT"))
def mask_right(s: str | None, n: int | None, *chars: str | None) -> str | None:
    return None if s is None else _mask_range(s, len(s) - _n(n, "mask_right"), len(s), chars)


@_register("MASK_KEEP_LEFT", 2, 6, _need_string("MASK_KEEP_LEFT"))
def mask_keep_left(s: str | None, n: int | None, *chars: str | None) -> str | None:
    return None if s is None else _mask_range(s, _n(n, "mask_keep_left"), len(s), chars)


@_register("MASK_KEEP_RIGHT", 2, 6, _need_string("MASK_KEEP_RIGHT"))
def mask_keep_right(s: str | None, n: int | None, *chars: str | None) -> str | None:
    return None if s is None else _mask_range(s, 0, len(s) - _n(n, "mask_keep_right"), chars)


# ----------------------------------------------------------------------------- null handling


def _same_types(name: str) -> Returns:
    def ret(args: Sequence[SqlType | None]) -> SqlType:
        first = _first(args)
        for a in args:
            if a is not None and a != first and not (a.is_numeric and first.is_numeric):
                raise KsqlError(
                    f"Function '{name}' does not accept parameters "
                    f"({', '.join(str(x) if x else 'null' for x in args)})."
                )
        return first

    return ret


@_register("IFNULL", 2, 2, _same_types("IFNULL"))
def ifnull(a: Any, b: Any) -> Any:
    return b if a is None else a


@_register("COALESCE", 1, -1, _same_types("COALESCE"))
def coalesce(*args: Any) -> Any:
    for a in args:
        if a is not None:
            return a
    return None


# ----------------------------------------------------------------------------- strings


@_register("UCASE", 1, 1, _need_string("UCASE"))
def ucase(s: str | None) -> str | None:
    return None if s is None else s.upper()


@_register("LCASE", 1, 1, _need_string("LCASE"))
def lcase(s: str | None) -> str | None:
    return None if s is None else s.lower()


@_register("TRIM", 1, 1, _need_string("TRIM"))
def trim(s: str | None) -> str | None:
    """Java's String.trim: strips every char <= ' ' at both ends."""
    if s is None:
        return None
    i, j = 0, len(s)
    while i < j and s[i] <= " ":
        i += 1
    while j > i and s[j - 1] <= " ":
        j -= 1
    return s[i:j]


@_register("LTRIM", 1, 1, _need_string("LTRIM"))
def ltrim(s: str | None) -> str | None:
    return None if s is None else s.lstrip(" \t\n\r\x0b\x0c")


@_register("RTRIM", 1, 1, _need_string("RTRIM"))
def rtrim(s: str | None) -> str | None:
    return None if s is None else s.rstrip(" \t\n\r\x0b\x0c")


@_register("SUBSTRING", 2, 3, _first)
def substring(s: str | None, pos: int | None, length: int | None = -1) -> str | None:
    """1-based; a negative position counts from the end (ksqlDB's SUBSTRING)."""
    if s is None or pos is None or length is None:
        return None
    n = len(s)
    start = pos - 1 if pos > 0 else (n + pos if pos < 0 else 0)
    start = max(0, start)
    if length == -1:
        return s[start:]
    if length < 0:
        return ""
    return s[start : start + length]


def _concat_ret(args: Sequence[SqlType | None]) -> SqlType:
    return T.BYTES if args and args[0] is not None and args[0].base == "BYTES" else T.STRING


@_register("CONCAT", 1, -1, _concat_ret)
def concat(*args: Any) -> Any:
    """Nulls are skipped; null only when every argument is null."""
    parts = [a for a in args if a is not None]
    if not parts:
        return None
    if isinstance(parts[0], bytes):
        return b"".join(parts)
    return "".join(parts)


@_register("CONCAT_WS", 2, -1, _concat_ret)
def concat_ws(sep: Any, *args: Any) -> Any:
    if sep is None:
        return None
    parts = [a for a in args if a is not None]
    return sep.join(parts)


@_register("LEN", 1, 1, _const(T.INTEGER))
def length(s: Any) -> int | None:
    return None if s is None else len(s)


FUNCTIONS["LENGTH"] = Function("LENGTH", length, _const(T.INTEGER), 1, 1)


@_register("REPLACE", 3, 3, _need_string("REPLACE"))
def replace(s: str | None, old: str | None, new: str | None) -> str | None:
    if s is None or old is None or new is None:
        return None
    return s.replace(old, new)


@_register("INSTR", 2, 4, _const(T.INTEGER))
def instr(s: str | None, sub: str | None, pos: int = 1, occurrence: int = 1) -> int | None:
    if s is None or sub is None:
        return None
    start = pos - 1 if pos > 0 else len(s) + pos
    idx = -1
    for _ in range(occurrence):
        idx = s.find(sub, start) if pos > 0 else s.rfind(sub, 0, start + 1)
        if idx < 0:
            return 0
        start = idx + 1 if pos > 0 else idx - 1
    return idx + 1


@_register("LPAD", 3, 3, _first)
def lpad(s: str | None, n: int | None, pad: str | None) -> str | None:
    if s is None or n is None or pad is None or n < 0 or (not pad and n > len(s)):
        return None
    if n <= len(s):
        return s[:n]
    fill = (pad * n)[: n - len(s)]
    return fill + s


@_register("RPAD", 3, 3, _first)
def rpad(s: str | None, n: int | None, pad: str | None) -> str | None:
    if s is None or n is None or pad is None or n < 0 or (not pad and n > len(s)):
        return None
    if n <= len(s):
        return s[:n]
    return s + (pad * n)[: n - len(s)]


@_register("SPLIT", 2, 2, lambda a: T.array(a[0] or T.STRING))
def split(s: str | None, delim: str | None) -> list[str] | None:
    if s is None or delim is None:
        return None
    if delim == "":
        return list(s)
    return s.split(delim)


# ----------------------------------------------------------------------------- maths


def _numeric(name: str) -> Returns:
    def ret(args: Sequence[SqlType | None]) -> SqlType:
        a = args[0]
        if a is None:
            return T.DOUBLE
        if not a.is_numeric:
            raise KsqlError(f"Function '{name}' does not accept parameters ({a}).")
        return a

    return ret


@_register("ABS", 1, 1, _numeric("ABS"))
def absolute(x: Any) -> Any:
    return None if x is None else abs(x)


def _round_ret(args: Sequence[SqlType | None]) -> SqlType:
    a = args[0] or T.DOUBLE
    if not a.is_numeric:
        raise KsqlError(f"Function 'ROUND' does not accept parameters ({a}).")
    if len(args) == 1:
        if a.base == "DOUBLE":
            return T.BIGINT
        if a.base == "DECIMAL":
            return T.decimal(a.precision - a.scale + 1 if a.scale else a.precision, 0)
        return a
    if a.base == "DECIMAL":
        return T.decimal(a.precision - a.scale + 1 + a.scale, a.scale)
    return a


def _half_up(x: float) -> float:
    return math.floor(x + 0.5)


@_register("ROUND", 1, 2, _round_ret)
def round_(x: Any, places: int | None = 0) -> Any:
    if x is None or places is None:
        return None
    if isinstance(x, bool):
        raise KsqlError("ROUND of a boolean")
    if isinstance(x, int):
        if places >= 0:
            return x
        q = 10 ** (-places)
        return int(Decimal(x / q).quantize(Decimal(1), ROUND_HALF_UP)) * q
    if isinstance(x, Decimal):
        r = x.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
        exponent = x.as_tuple().exponent
        if places > 0 and isinstance(exponent, int):
            return r.quantize(Decimal(1).scaleb(exponent))
        return r
    if math.isnan(x) or math.isinf(x):
        return x
    if places == 0:
        return int(_half_up(x))
    return float(Decimal(repr(x)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))


def _floor_ceil_ret(args: Sequence[SqlType | None]) -> SqlType:
    a = args[0] or T.DOUBLE
    if not a.is_numeric:
        raise KsqlError(f"Function does not accept parameters ({a}).")
    if a.base == "DECIMAL":
        return T.decimal(a.precision - a.scale + (1 if a.scale else 0), 0)
    return a


@_register("FLOOR", 1, 1, _floor_ceil_ret)
def floor(x: Any) -> Any:
    if x is None or isinstance(x, int):
        return x
    if isinstance(x, Decimal):
        return x.quantize(Decimal(1), ROUND_FLOOR)
    return float(math.floor(x)) if math.isfinite(x) else x


@_register("CEIL", 1, 1, _floor_ceil_ret)
def ceil(x: Any) -> Any:
    if x is None or isinstance(x, int):
        return x
    if isinstance(x, Decimal):
        return x.quantize(Decimal(1), ROUND_CEILING)
    return float(math.ceil(x)) if math.isfinite(x) else x


FUNCTIONS["CEILING"] = Function("CEILING", ceil, _floor_ceil_ret, 1, 1)


@_register("SQRT", 1, 1, numeric_args("sqrt", T.DOUBLE))
def sqrt(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return math.sqrt(x) if x >= 0 else math.nan


@_register("SIGN", 1, 1, _const(T.INTEGER))
def sign(x: Any) -> int | None:
    if x is None:
        return None
    return 1 if x > 0 else (-1 if x < 0 else 0)


@_register("EXP", 1, 1, numeric_args("exp", T.DOUBLE))
def exp(x: Any) -> float | None:
    return None if x is None else math.exp(float(x))


@_register("LN", 1, 1, numeric_args("ln", T.DOUBLE))
def ln(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


@_register("POWER", 2, 2, numeric_args("power", T.DOUBLE))
def power(x: Any, y: Any) -> float | None:
    if x is None or y is None:
        return None
    return math.pow(float(x), float(y))


_EXTREME_VARIANTS = (
    *("INTEGER", "BIGINT", "DECIMAL", "DOUBLE"),
    *("STRING", "BYTES", "DATE", "TIME", "TIMESTAMP"),
)
"""GREATEST/LEAST have one overload per type; the arguments pick one by implicit casts."""
_NUMBER_ORDER = ("INTEGER", "BIGINT", "DECIMAL", "DOUBLE")


def _implicit_base(src: str, dst: str) -> bool:
    """SqlBaseType.canImplicitlyCast: numbers to wider numbers, strings to temporal types and
    BYTES, anything to itself."""
    if src == dst:
        return True
    if src in _NUMBER_ORDER and dst in _NUMBER_ORDER:
        return _NUMBER_ORDER.index(src) <= _NUMBER_ORDER.index(dst)
    return src == "STRING" and dst in ("DATE", "TIME", "TIMESTAMP", "BYTES")


def _extreme_type(name: str) -> Returns:
    """ksqlDB's overload resolution for GREATEST/LEAST: the one overload every argument casts
    to implicitly (NULLs fit any); none is an error, several are ambiguous (INTEGER with
    BIGINT fits BIGINT, DECIMAL and DOUBLE alike); DECIMALs widen to hold every argument."""

    def ret(args: Sequence[SqlType | None]) -> SqlType:
        shown = ", ".join(str(t) if t else "null" for t in args)
        known = [a for a in args if a is not None]
        if not args:
            raise KsqlError(f"Function '{name}' does not accept parameters ().")
        fits = [v for v in _EXTREME_VARIANTS if all(_implicit_base(a.base, v) for a in known)]
        exact = {a.base for a in known}
        if len(exact) == 1:
            fits = [known[0].base]
        if not fits:
            raise KsqlError(f"Function '{name}' does not accept parameters ({shown}).")
        if len(fits) > 1:
            raise KsqlError(
                f"Function '{name}' cannot be resolved due to ambiguous method parameters "
                f"({shown})."
            )
        if fits[0] == "DECIMAL":
            decimals = [T.as_decimal(a) for a in known]
            scale = max(d.scale for d in decimals)
            whole = max(d.precision - d.scale for d in decimals)
            return T.decimal(whole + scale, scale)
        return (
            next(a for a in known if a.base == fits[0]) if fits[0] in exact else T.SqlType(fits[0])
        )

    return ret


def _extreme_params(name: str) -> Callable[[Sequence[SqlType | None]], list[SqlType | None]]:
    def params(args: Sequence[SqlType | None]) -> list[SqlType | None]:
        target = _extreme_type(name)(args)
        return [target for _ in args]

    return params


def _extreme(pick: Callable[..., Any]) -> Callable[..., Any]:
    def impl(*args: Any) -> Any:
        vals = [a for a in args if a is not None]
        return pick(vals) if vals else None

    return impl


for _name, _pick in (("GREATEST", max), ("LEAST", min)):
    FUNCTIONS[_name] = Function(
        _name,
        _extreme(_pick),
        _extreme_type(_name.lower()),
        0,
        -1,
        params=_extreme_params(_name.lower()),
    )


# ----------------------------------------------------------------------------- time


@_register("UNIX_TIMESTAMP", 0, 1, _const(T.BIGINT))
def unix_timestamp(ts: int | None = None) -> int | None:
    import time

    return int(time.time() * 1000) if ts is None else ts


@_register("FROM_UNIXTIME", 1, 1, _const(T.TIMESTAMP))
def from_unixtime(ms: int | None) -> int | None:
    return ms


@_register("TIMESTAMPTOSTRING", 2, 3, _const(T.STRING))
def timestamptostring(ms: int | None, fmt: str | None, tz: str | None = None) -> str | None:
    if ms is None or fmt is None:
        return None
    from services.ksql_server.functions.timefmt import format_millis

    return format_millis(ms, fmt, tz)


@_register("STRINGTOTIMESTAMP", 2, 3, _const(T.BIGINT))
def stringtotimestamp(s: str | None, fmt: str | None, tz: str | None = None) -> int | None:
    if s is None or fmt is None:
        return None
    from services.ksql_server.functions.timefmt import parse_millis

    return parse_millis(s, fmt, tz)


# ----------------------------------------------------------------------------- collections


@_register("ARRAY_LENGTH", 1, 1, _const(T.INTEGER))
def array_length(a: list[Any] | None) -> int | None:
    return None if a is None else len(a)


@_register("ARRAY_CONTAINS", 2, 2, _const(T.BOOLEAN))
def array_contains(a: list[Any] | None, v: Any) -> bool:
    return a is not None and v in a


@_register("AS_VALUE", 1, 1, _first)
def as_value(v: Any) -> Any:
    return v


def _tostring(x: Any) -> str | None:
    return to_string(x, None)


__all__ = ["FUNCTIONS", "Function", "_tostring", "java_double", "lookup", "timestamp_str"]
