"""Conversions between engine values and their text forms, following Java/ksqlDB rendering.

Engine values: BOOLEAN bool, INTEGER/BIGINT int, DOUBLE float, DECIMAL Decimal, STRING str,
TIMESTAMP int (epoch ms), DATE int (epoch days), TIME int (ms of day), BYTES bytes, ARRAY list,
MAP dict, STRUCT dict (field → value)."""

from __future__ import annotations

import base64
import datetime as dt
import math
from decimal import Decimal
from typing import Any

from services.ksql_server.types import SqlType

EPOCH = dt.datetime(1970, 1, 1)


def java_double(x: float) -> str:
    """`Double.toString`: shortest round-trip digits; scientific outside [1e-3, 1e7)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    a = abs(x)
    if a == 5e-324:
        return "-4.9E-324" if x < 0 else "4.9E-324"
    if 1e-3 <= a < 1e7:
        s = repr(x)
        if "e" in s or "E" in s:
            s = f"{Decimal(s):f}"
        if "." not in s:
            s += ".0"
        return s
    mantissa, exp = f"{x:e}".split("e")  # only to get the exponent
    digits = repr(x)
    d = Decimal(digits)
    sign, ds, e = d.as_tuple()
    ds_str = "".join(map(str, ds)).rstrip("0") or "0"
    exponent = len(ds) + int(e) - 1
    mant = ds_str[0] + "." + (ds_str[1:] or "0")
    del mantissa, exp
    return ("-" if sign else "") + f"{mant}E{exponent}"


def timestamp_str(ms: int) -> str:
    t = EPOCH + dt.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def date_str(days: int) -> str:
    return (EPOCH + dt.timedelta(days=days)).strftime("%Y-%m-%d")


def time_str(ms: int) -> str:
    t = EPOCH + dt.timedelta(milliseconds=ms)
    return t.strftime("%H:%M:%S")


def parse_timestamp(text: str) -> int:
    """ISO-8601 timestamps as ksqlDB accepts them in CAST and literals → epoch ms (UTC)."""
    s = text.strip().replace(" ", "T")
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    if "T" not in s:
        s += "T00:00:00"
    parsed = dt.datetime.fromisoformat(s)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return (parsed - EPOCH) // dt.timedelta(milliseconds=1)


def parse_date(text: str) -> int:
    """ISO date → epoch days; a partial date is completed as ksqlDB does ('2018' is
    2018-01-01, '2018-06' 2018-06-01)."""
    s = text.strip()
    parts = s.split("-")
    if len(parts) == 1:
        s += "-01-01"
    elif len(parts) == 2:
        s += "-01"
    return (dt.date.fromisoformat(s) - dt.date(1970, 1, 1)).days


def parse_time(text: str) -> int:
    t = dt.time.fromisoformat(text.strip())
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1000 + t.microsecond // 1000


def to_string(value: Any, typ: SqlType | None) -> str | None:
    """CAST(x AS STRING) and string concatenation of non-string values.

    A top-level value renders as ksqlDB's CAST does (DECIMAL as plain digits, temporal types
    in ISO form); a value inside an ARRAY, MAP or STRUCT renders as its Java object's
    `toString()` does, since that is what ksqlDB calls on the collection (see `java_text`)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if typ is not None and typ.base == "TIMESTAMP" and not isinstance(value, bool):
        return timestamp_str(value)
    return java_text(value, typ)


def java_text(value: Any, typ: SqlType | None) -> str:
    """`toString()` of the Java value ksqlDB holds: `[a, b]` for a List, `{k=v, k2=v2}` for a
    Map, `Struct{A=1,B=x}` for a Connect Struct (no space, null fields left out), BigDecimal's
    scientific form for small decimals, `java.sql.Timestamp`'s `2018-01-01 00:00:00.0`."""
    if value is None:
        return "null"
    base = typ.base if typ else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return f"java.nio.HeapByteBuffer[pos=0 lim={len(value)} cap={len(value)}]"
    if base == "TIMESTAMP":
        t = EPOCH + dt.timedelta(milliseconds=value)
        frac = f"{t.microsecond // 1000:03d}".rstrip("0") or "0"
        return t.strftime("%Y-%m-%d %H:%M:%S.") + frac
    if base == "DATE":
        return date_str(value)
    if base == "TIME":
        return time_str(value)
    if isinstance(value, list):
        item = typ.item if typ else None
        return "[" + ", ".join(java_text(v, item) for v in value) + "]"
    if isinstance(value, dict) and base == "STRUCT" and typ is not None:
        inner = ",".join(
            f"{name}={java_text(value[name], ft)}"
            for name, ft in typ.fields
            if value.get(name) is not None
        )
        return "Struct{" + inner + "}"
    if isinstance(value, dict):
        key, item = (typ.key, typ.item) if typ else (None, None)
        return (
            "{"
            + ", ".join(f"{java_text(k, key)}={java_text(v, item)}" for k, v in value.items())
            + "}"
        )
    return str(value)


def to_json(value: Any, typ: SqlType | None) -> Any:
    """The JSON-ready form of a value for REST rows (decimals as numbers, timestamps as text)."""
    if value is None or typ is None:
        return value
    base = typ.base
    if base == "DECIMAL":
        return value  # the REST layer's encoder writes Decimal as a number
    if base == "TIMESTAMP":
        return timestamp_str(value)
    if base == "DATE":
        return date_str(value)
    if base == "TIME":
        return time_str(value)
    if base == "BYTES":
        return base64.b64encode(value).decode()
    if base == "ARRAY":
        return [to_json(v, typ.item) for v in value]
    if base == "MAP":
        return {k: to_json(v, typ.item) for k, v in value.items()}
    if base == "STRUCT":
        ft = dict(typ.fields)
        return {k: to_json(v, ft.get(k)) for k, v in value.items()}
    return value
