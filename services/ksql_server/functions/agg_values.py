"""Shared helpers of the aggregate-function library: typed state encoding and Java arithmetic.

Accumulators live in state stores whose changelog is JSON, so values of every SQL type need a
JSON-able form that decodes back to the same engine value (DECIMAL as text, BYTES as base64,
nested ARRAY/MAP/STRUCT recursively). ksqlDB's UDAFs run on Java numbers: an INTEGER sum wraps
at 32 bits, `0.0 / 0.0` is NaN and `Math.sqrt(-1)` is NaN
rather than an error, and `compareTo` orders doubles and bytes its own way; the helpers here
reproduce that so results match ksqlDB's row for row.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from services.ksql_server.errors import KsqlError
from services.ksql_server.types import SqlType


def encode(value: Any, typ: SqlType | None) -> Any:
    """A JSON-able form of an engine value of type `typ`."""
    if value is None or typ is None:
        return value
    base = typ.base
    if base == "DECIMAL":
        return f"{value:f}"
    if base == "BYTES":
        return base64.b64encode(value).decode("ascii")
    if base == "ARRAY":
        return [encode(v, typ.item) for v in value]
    if base == "MAP":
        return {k: encode(v, typ.item) for k, v in value.items()}
    if base == "STRUCT":
        fields = dict(typ.fields)
        return {k: encode(v, fields.get(k)) for k, v in value.items()}
    return value


def decode(state: Any, typ: SqlType | None) -> Any:
    """The engine value `encode` wrote."""
    if state is None or typ is None:
        return state
    base = typ.base
    if base == "DECIMAL":
        return Decimal(state)
    if base == "BYTES":
        return base64.b64decode(state)
    if base == "DOUBLE":
        return float(state)
    if base == "ARRAY":
        return [decode(v, typ.item) for v in state]
    if base == "MAP":
        return {k: decode(v, typ.item) for k, v in state.items()}
    if base == "STRUCT":
        fields = dict(typ.fields)
        return {k: decode(v, fields.get(k)) for k, v in state.items()}
    return state


def java_key(value: Any) -> Any:
    """A sort key ordering values as Java's `compareTo` does (NaN above +inf, bytes signed)."""
    if isinstance(value, float):
        return (1, 0.0) if math.isnan(value) else (0, value)
    if isinstance(value, bytes):
        return bytes(b ^ 0x80 for b in value)
    return value


def wrap(value: int, bits: int) -> int:
    """Java's two's-complement overflow of an int (32) or long (64)."""
    half = 1 << (bits - 1)
    return ((value + half) % (1 << bits)) - half


def int_bits(typ: SqlType | None) -> int:
    """32 for INTEGER, 64 for BIGINT, 0 (no wrapping: a double) otherwise."""
    if typ is None:
        return 0
    return {"INTEGER": 32, "BIGINT": 64}.get(typ.base, 0)


def java_fdiv(a: float, b: float) -> float:
    """`double / double` with IEEE results for a zero divisor instead of an exception."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        negative = (a < 0) != (math.copysign(1.0, b) < 0)
        return -math.inf if negative else math.inf
    return a / b


def java_sqrt(x: float) -> float:
    return math.nan if x < 0 or math.isnan(x) else math.sqrt(x)


def reject(name: str, arg_types: Sequence[SqlType | None]) -> KsqlError:
    """ksqlDB's error for argument types no variant of the function takes."""
    shown = ", ".join(str(t) if t else "null" for t in arg_types)
    return KsqlError(f"Function '{name}' does not accept parameters ({shown}).")


def require(name: str, arg_types: Sequence[SqlType | None], bases: Sequence[str]) -> SqlType:
    """The first argument's type if it is one of `bases`, else ksqlDB's error."""
    first = arg_types[0] if arg_types else None
    if first is None or first.base not in bases:
        raise reject(name, arg_types)
    return first
