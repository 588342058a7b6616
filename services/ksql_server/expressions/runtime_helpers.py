"""Helpers the generated expression code calls (null-aware arithmetic, casts, LIKE…).

Kept tiny and branch-light: they run once per record per expression on the hot path."""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

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


def between(v: Any, lo: Any, hi: Any) -> bool:
    if v is None or lo is None or hi is None:
        return False
    return bool(lo <= v <= hi)


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

_TRUE = {"true", "t", "yes", "y", "1"}


def cast_value(v: Any, src: SqlType | None, dst: SqlType) -> Any:
    """CAST(v AS dst); raises on a value that does not convert (the caller logs it)."""
    if v is None:
        return None
    b = dst.base
    if src is not None and src == dst:
        return v
    if b == "STRING":
        return to_string(v, src)
    if b in ("INTEGER", "BIGINT"):
        if isinstance(v, str):
            return int(v.strip())
        if isinstance(v, bool):
            raise ValueError("cannot cast BOOLEAN to a number")
        if isinstance(v, float):
            if math.isnan(v):
                return 0
            if math.isinf(v):
                return (2**31 - 1 if b == "INTEGER" else 2**63 - 1) * (1 if v > 0 else -1)
        return int(v)
    if b == "DOUBLE":
        if isinstance(v, str):
            return float(v.strip())
        return float(v)
    if b == "DECIMAL":
        try:
            d = (
                Decimal(v.strip())
                if isinstance(v, str)
                else Decimal(repr(v) if isinstance(v, float) else v)
            )
        except InvalidOperation as exc:
            raise ValueError(f"Cannot cast '{v}' to DECIMAL") from exc
        d = dq(d, dst.scale)
        if len(d.as_tuple().digits) > dst.precision and d != 0:
            raise ValueError(
                f"Numeric field overflow: A field with precision {dst.precision} and scale "
                f"{dst.scale} must round to an absolute value less than "
                f"10^{dst.precision - dst.scale}. Got {v}"
            )
        return d
    if b == "BOOLEAN":
        if isinstance(v, str):
            return v.strip().lower() in _TRUE
        return bool(v)
    if b == "TIMESTAMP":
        if isinstance(v, str):
            return parse_timestamp(v)
        if src is not None and src.base == "DATE":
            return v * 86_400_000
        return int(v)
    if b == "DATE":
        if isinstance(v, str):
            return parse_date(v)
        if src is not None and src.base == "TIMESTAMP":
            return v // 86_400_000
        return int(v)
    if b == "TIME":
        if isinstance(v, str):
            return parse_time(v)
        if src is not None and src.base == "TIMESTAMP":
            return v % 86_400_000
        return int(v)
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
    if b == "BYTES" and isinstance(v, bytes):
        return v
    raise ValueError(f"Cannot cast {src} to {dst}")
