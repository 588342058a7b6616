"""ksqlDB's numeric functions beyond the core set in `registry.py`: trigonometry, logarithms,
CBRT, DEGREES/RADIANS, PI, RANDOM, TRUNC, GEO_DISTANCE, NULLIF.

They return DOUBLE and follow Java's Math: NaN for an input outside the domain (ACOS(2)),
never an error; a null argument gives null.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from decimal import ROUND_DOWN, Decimal
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.functions.registry import (
    FUNCTIONS,
    Function,
    const,
    numeric_args,
    register,
)
from services.ksql_server.types import SqlType


def _java(fn: Callable[[float], float]) -> Callable[[Any], float | None]:
    """A one-argument Math function: null in, null out; a domain error is NaN, an overflow
    ±Infinity, as in Java."""

    def call(x: Any) -> float | None:
        if x is None:
            return None
        try:
            return fn(float(x))
        except ValueError:
            return math.nan
        except OverflowError:
            return math.inf

    return call


def _cot(x: float) -> float:
    t = math.tan(x)
    return math.inf if t == 0 else 1.0 / t


def _cbrt(x: float) -> float:
    if math.isnan(x) or math.isinf(x):
        return x
    return math.copysign(abs(x) ** (1.0 / 3.0), x) if x else x


def _sinh(x: float) -> float:
    try:
        return math.sinh(x)
    except OverflowError:
        return math.copysign(math.inf, x)


for _name, _fn in {
    "ACOS": math.acos,
    "ASIN": math.asin,
    "ATAN": math.atan,
    "COS": math.cos,
    "COSH": math.cosh,
    "COT": _cot,
    "SIN": math.sin,
    "SINH": _sinh,
    "TAN": math.tan,
    "TANH": math.tanh,
    "CBRT": _cbrt,
    "DEGREES": math.degrees,
    "RADIANS": math.radians,
}.items():
    FUNCTIONS[_name] = Function(_name, _java(_fn), const(T.DOUBLE), 1, 1)


@register("ATAN2", 2, 2, const(T.DOUBLE))
def atan2(y: Any, x: Any) -> float | None:
    if y is None or x is None:
        return None
    return math.atan2(float(y), float(x))


def _java_log(x: float) -> float:
    if math.isnan(x) or x < 0:
        return math.nan
    return -math.inf if x == 0 else math.log(x)


def _log_call(*args: Any) -> float | None:
    """LOG(value): natural logarithm; LOG(base, value): logarithm to `base` (NaN for a base
    that is not positive or is 1)."""
    if any(a is None for a in args):
        return None
    if len(args) == 1:
        return _java_log(float(args[0]))
    base, value = float(args[0]), float(args[1])
    if base <= 0 or base == 1 or value < 0:
        return math.nan
    return _java_log(value) / math.log(base)


FUNCTIONS["LOG"] = Function("LOG", _log_call, const(T.DOUBLE), 1, 2)


@register("PI", 0, 0, const(T.DOUBLE))
def pi() -> float:
    return math.pi


@register("RANDOM", 0, 0, const(T.DOUBLE))
def random_() -> float:
    return random.random()


def _trunc_ret(args: Sequence[SqlType | None]) -> SqlType:
    a = args[0] or T.DOUBLE
    if not a.is_numeric:
        raise KsqlError(f"Function 'TRUNC' does not accept parameters ({a}).")
    if a.base == "DECIMAL":
        return a if len(args) == 2 else T.decimal(max(a.precision - a.scale, 1), 0)
    return T.DOUBLE if len(args) == 2 else T.BIGINT


@register("TRUNC", 1, 2, _trunc_ret)
def trunc(x: Any, *places: int | None) -> Any:
    """Towards zero: TRUNC(x) a whole number (BIGINT, or DECIMAL with scale 0), TRUNC(x, n) to
    n decimal places (a negative n truncates left of the point; a DECIMAL keeps its scale)."""
    if x is None or (places and places[0] is None):
        return None
    n = places[0] if places else 0
    assert n is not None
    if isinstance(x, Decimal):
        cut = x.quantize(Decimal(1).scaleb(-n), ROUND_DOWN) if n >= 0 else _trunc_left(x, n)
        if not places:
            return cut.quantize(Decimal(1), ROUND_DOWN)
        exponent = x.as_tuple().exponent
        return cut.quantize(Decimal(1).scaleb(exponent)) if isinstance(exponent, int) else cut
    if not places:
        return _long_value(x)
    if isinstance(x, float) and not math.isfinite(x):
        return x
    value = Decimal(repr(float(x)))
    return float(
        value.quantize(Decimal(1).scaleb(-n), ROUND_DOWN) if n >= 0 else _trunc_left(value, n)
    )


def _long_value(x: Any) -> int:
    """Java's Double.longValue: NaN is 0, the infinities saturate."""
    if isinstance(x, float) and not math.isfinite(x):
        return 0 if math.isnan(x) else (2**63 - 1 if x > 0 else -(2**63))
    return int(x)


def _trunc_left(x: Decimal, n: int) -> Decimal:
    """BigDecimal.setScale(n, DOWN) for a negative n: zeros left of the point."""
    unit = Decimal(1).scaleb(-n)
    return (x / unit).to_integral_value(ROUND_DOWN) * unit


EARTH_RADIUS_KM = 6371.0
EARTH_RADIUS_MILES = 3959.0


@register("GEO_DISTANCE", 4, 5, numeric_args("geo_distance", T.DOUBLE, strings_from=4))
def geo_distance(lat1: Any, lon1: Any, lat2: Any, lon2: Any, unit: str | None = "KM") -> Any:
    """Great-circle (haversine) distance in km (default) or miles."""
    if None in (lat1, lon1, lat2, lon2, unit):
        return None
    assert unit is not None
    u = unit.lower()
    if u in ("km", "kilometers", "kilometres"):
        radius = EARTH_RADIUS_KM
    elif u in ("mi", "miles"):
        radius = EARTH_RADIUS_MILES
    else:
        raise KsqlError(
            "GeoDistance function units parameter must be one of: KM, kilometres, kilometers, "
            "MI, miles"
        )
    for lat, lon in ((lat1, lon1), (lat2, lon2)):
        if not -90 <= lat <= 90 or not -180 <= lon <= 180:
            raise KsqlError(
                "valid latitude values for GeoDistance function are in the range of -90 to 90 "
                "decimal degrees, and longitude values are in the range of -180 to 180"
            )
    p1, p2 = math.radians(float(lat1)), math.radians(float(lat2))
    dp, dl = p2 - p1, math.radians(float(lon2) - float(lon1))
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(h))


def _nullif_ret(args: Sequence[SqlType | None]) -> SqlType:
    return args[0] or args[1] or T.STRING


@register("NULLIF", 2, 2, _nullif_ret)
def nullif(a: Any, b: Any) -> Any:
    """Null when the two are equal, else the first."""
    return None if a is not None and a == b else a
