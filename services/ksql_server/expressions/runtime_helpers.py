"""Helpers the generated expression code calls (null-aware arithmetic, casts, LIKE…).

Kept tiny and branch-light: they run once per record per expression on the hot path."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from services.ksql_server.expressions import coercion as C
from services.ksql_server.types import SqlType
from services.ksql_server.values import parse_date, parse_time, parse_timestamp, to_string

DEC_CTX = Context(prec=100)


def idiv(a: int, b: int) -> int:
    """Java integer division (truncates toward zero; raises on zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def imod(a: int, b: int) -> int:
    """Java remainder: the sign follows the dividend."""
    return a - b * idiv(a, b)


def ddiv(a: float, b: float) -> float:
    """IEEE division as Java does it: x/0 is ±Infinity, 0/0 is NaN."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def dmod(a: float, b: float) -> float:
    if b == 0:
        return math.nan
    return math.fmod(a, b)


def dq(value: Decimal, scale: int) -> Decimal:
    """Round a decimal to its declared scale (HALF_UP, as Java's BigDecimal does in ksqlDB)."""
    return value.quantize(Decimal(1).scaleb(-scale), ROUND_HALF_UP, DEC_CTX)


def ddec(a: Decimal, b: Decimal, scale: int) -> Decimal:
    if b == 0:
        raise ArithmeticError("Division by zero")
    return DEC_CTX.divide(a, b).quantize(Decimal(1).scaleb(-scale), ROUND_HALF_UP, DEC_CTX)


def or_null(thunk: Callable[[], Any]) -> Any:
    """The thunk's value, or None when it raises (ksqlDB's nested error handling)."""
    try:
        return thunk()
    except Exception:
        return None


def java_concat(a: str | None, b: str | None) -> str:
    """Java's `a + b` of two strings: a null reads as "null"."""
    return ("null" if a is None else a) + ("null" if b is None else b)


def and_all(*values: bool | None) -> bool | None:
    """SQL's three-valued AND over any number of operands (a chain of ANDs is one call)."""
    unknown = False
    for v in values:
        if v is False:
            return False
        unknown = unknown or v is None
    return None if unknown else True


def or_any(*values: bool | None) -> bool | None:
    """SQL's three-valued OR over any number of operands."""
    unknown = False
    for v in values:
        if v is True:
            return True
        unknown = unknown or v is None
    return None if unknown else False


def like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escape is not None and c == escape and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "%":
            out.append(".*")
        elif c == "_":
            out.append(".")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def like(value: str | None, pattern: str | None, escape: str | None) -> bool | None:
    if value is None or pattern is None:
        return False
    return like_regex(pattern, escape).fullmatch(value) is not None


def between(v_lo: Any, lo: Any, v_hi: Any, hi: Any) -> bool:
    """`v >= lo AND v <= hi`, each side already in its comparison's domain (`v_lo` is the
    value as compared with `lo`); a null anywhere makes it false."""
    if v_lo is None or lo is None or v_hi is None or hi is None:
        return False
    return bool(v_lo >= lo and v_hi <= hi)


def compare_decimal(v: Any) -> Decimal | None:
    """A number as the BigDecimal ksqlDB compares with a DECIMAL: a double by its shortest
    decimal text (`BigDecimal.valueOf`, which refuses NaN and the infinities)."""
    if v is None or isinstance(v, Decimal):
        return v
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise ArithmeticError(f"Infinite or NaN: {v}")
        return Decimal(repr(v))
    return Decimal(v)


def in_list(v: Any, items: tuple[Any, ...]) -> bool:
    if v is None:
        return False
    return any(it is not None and it == v for it in items)


def rowtime_string(text: str | None) -> int | None:
    """A partial ISO timestamp ('2018', '2018-01-01T00:00:00+0445') as epoch ms."""
    if text is None:
        return None
    s = text.strip()
    m = re.match(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?(.*)$", s)
    if m and not m.group(4):
        return parse_timestamp(f"{m.group(1)}-{m.group(2) or '01'}-{m.group(3) or '01'}")
    m2 = re.match(r"^(.*T\d{2}(?::\d{2})?(?::\d{2})?(?:\.\d+)?)([+-]\d{2}):?(\d{2})$", s)
    if m2:
        base = m2.group(1)
        parts = base.split("T")[1].split(":")
        while len(parts) < 3:
            parts.append("00")
        s = base.split("T")[0] + "T" + ":".join(parts) + f"{m2.group(2)}:{m2.group(3)}"
    elif "T" in s:
        date, time_part = s.split("T", 1)
        parts = time_part.split(":")
        while len(parts) < 3:
            parts.append("00")
        s = date + "T" + ":".join(parts)
    end_of_day = re.match(r"^(\d{4}-\d{2}-\d{2})T24:00:00(\.0+)?(.*)$", s)
    if end_of_day:  # Java's SMART resolver: 24:00 is the next day's midnight
        return parse_timestamp(f"{end_of_day.group(1)}T00:00:00{end_of_day.group(3)}") + 86_400_000
    return parse_timestamp(s)


def subscript(base: Any, index: Any) -> Any:
    if base is None or index is None:
        return None
    if isinstance(base, list):
        n = len(base)
        i = index - 1 if index > 0 else n + index
        if index == 0 or i < 0 or i >= n:
            return None
        return base[i]
    return base.get(index)


def deref(base: Any, name: str) -> Any:
    return None if base is None else base.get(name)


# ----------------------------------------------------------------------------- casts

_WIDTH = {"INTEGER": 32, "BIGINT": 64}


def java_narrow(value: int, bits: int) -> int:
    """`intValue()`/`longValue()` of a wider whole number: the low bits, two's complement
    (CAST(2147483648 AS INT) is -2147483648 in ksqlDB)."""
    half = 1 << (bits - 1)
    return ((value + half) % (1 << bits)) - half


def java_double_to_whole(v: float, bits: int) -> int:
    """Java's `(int)`/`(long)` of a double: NaN is 0, out of range saturates, else truncates."""
    if math.isnan(v):
        return 0
    top = (1 << (bits - 1)) - 1
    if v >= top:
        return top
    if v <= -top - 1:
        return -top - 1
    return int(v)


def _to_whole(v: Any, b: str) -> int:
    bits = _WIDTH[b]
    if isinstance(v, str):
        top = (1 << (bits - 1)) - 1
        return C.parse_java_int(v.strip(), -top - 1, top)
    if isinstance(v, bool):
        raise ValueError("cannot cast BOOLEAN to a number")
    if isinstance(v, float):
        return java_double_to_whole(v, bits)
    return java_narrow(int(v), bits)


def _ensure_max(d: Decimal, dst: SqlType) -> None:
    digits = dst.precision - dst.scale
    if abs(d) >= Decimal(10) ** digits:
        raise ArithmeticError(
            f"Numeric field overflow: A field with precision {dst.precision} and scale "
            f"{dst.scale} must round to an absolute value less than 10^{digits}. Got {d:f}"
        )


def _to_decimal(v: Any, dst: SqlType) -> Decimal:
    """DecimalUtil.cast: a double or whole number rounded to the precision first (HALF_UP),
    then checked against the whole digits, then set to the scale (HALF_UP)."""
    if isinstance(v, str):
        try:
            d = C.parse_java_decimal(v.strip())
        except ValueError as exc:
            raise ValueError(f"Cannot cast '{v}' to DECIMAL") from exc
    elif isinstance(v, Decimal):
        d = v
    elif isinstance(v, bool):
        raise ValueError("cannot cast BOOLEAN to DECIMAL")
    else:
        d = Context(prec=dst.precision, rounding=ROUND_HALF_UP).create_decimal(v)
    _ensure_max(d, dst)
    return dq(d, dst.scale)


def cast_value(v: Any, src: SqlType | None, dst: SqlType) -> Any:
    """CAST(v AS dst) as ksqlDB's CastEvaluator does it; raises on a value that does not
    convert (the caller logs it)."""
    if v is None:
        return None
    b = dst.base
    if src is not None and src == dst:
        return v
    if b == "STRING":
        return to_string(v, src)
    if b in _WIDTH:
        return _to_whole(v, b)
    if b == "DOUBLE":
        return C.parse_sql_double(v.strip()) if isinstance(v, str) else float(v)
    if b == "DECIMAL":
        return _to_decimal(v, dst)
    if b == "BOOLEAN":
        if isinstance(v, str):
            return C.parse_boolean_exact(v.strip()) is True
        return bool(v)
    if b in ("TIMESTAMP", "DATE", "TIME"):
        return _to_temporal(v, src, b)
    if b == "ARRAY" and isinstance(v, list) and dst.item is not None:
        return [cast_value(x, src.item if src else None, dst.item) for x in v]
    if b == "MAP" and isinstance(v, dict) and dst.item is not None and dst.key is not None:
        return {
            cast_value(k, src.key if src else None, dst.key): cast_value(
                x, src.item if src else None, dst.item
            )
            for k, x in v.items()
        }
    if b == "STRUCT" and isinstance(v, dict):
        sf = dict(src.fields) if src else {}
        return {n: cast_value(v.get(n), sf.get(n), t) for n, t in dst.fields}
    if b == "BYTES":
        if isinstance(v, str):
            return base64.b64decode(v.strip(), validate=True)
        if isinstance(v, bytes):
            return v
    raise ValueError(f"Cannot cast {src} to {dst}")


def _to_temporal(v: Any, src: SqlType | None, b: str) -> int:
    source = src.base if src is not None else ""
    if isinstance(v, str):
        return {"TIMESTAMP": parse_timestamp, "DATE": parse_date, "TIME": parse_time}[b](v)
    if b == "TIMESTAMP" and source == "DATE":
        return int(v) * 86_400_000
    if source == "TIMESTAMP" and b == "DATE":
        return int(v) // 86_400_000
    if source == "TIMESTAMP" and b == "TIME":
        return int(v) % 86_400_000
    return int(v)
