"""ksqlDB's date and time functions beyond TIMESTAMPTOSTRING/STRINGTOTIMESTAMP/UNIX_TIMESTAMP/
FROM_UNIXTIME (in `registry.py`): FORMAT_*/PARSE_* for DATE, TIME and TIMESTAMP, the
DATETOSTRING/STRINGTODATE pair, UNIX_DATE, FROM_DAYS, CONVERT_TZ and the *ADD/*SUB
arithmetic.

Engine values: TIMESTAMP is epoch milliseconds, DATE epoch days, TIME milliseconds of the day
(values.py). The *ADD/*SUB functions take a time unit keyword first (`TIMESTAMPADD(SECONDS, 5,
ts)`); the expression compiler hands it over as its name. Java's TimeUnit conversions truncate
towards zero, so do these. A null argument gives null.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.functions.registry import FUNCTIONS, Function, const, register
from services.ksql_server.functions.timefmt import format_millis, parse_millis, pattern_letters
from services.ksql_server.types import SqlType

MS_PER_DAY = 86_400_000

UNIT_MILLIS = {
    "NANOSECONDS": 1e-6,
    "MICROSECONDS": 1e-3,
    "MILLISECONDS": 1,
    "SECONDS": 1000,
    "MINUTES": 60_000,
    "HOURS": 3_600_000,
    "DAYS": MS_PER_DAY,
}
"""Java TimeUnit names; the singular forms (`SECOND`) mean the same."""


def unit_name(word: str) -> str | None:
    """The TimeUnit a keyword names (`SECOND`, `seconds`…), or None."""
    upper = word.upper()
    for name in (upper, upper + "S"):
        if name in UNIT_MILLIS:
            return name
    return None


def _trunc_div(a: float, b: int) -> int:
    q = abs(a) // b
    return int(q if a >= 0 else -q)


def _to_millis(unit: str, amount: int) -> int:
    name = unit_name(unit)
    if name is None:
        raise KsqlError(f"Unknown time unit: {unit}")
    factor = UNIT_MILLIS[name]
    return int(amount * factor) if factor >= 1 else _trunc_div(amount * factor * 1e6, 10**6)


def _to_days(unit: str, amount: int) -> int:
    return _trunc_div(_to_millis(unit, amount), MS_PER_DAY)


def _zone(tz: str) -> dt.tzinfo:
    if tz in ("UTC", "Z", "GMT"):
        return dt.UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise KsqlError(f"Unknown time-zone ID: {tz}") from exc


# ----------------------------------------------------------------------------- formatting


@register("FORMAT_TIMESTAMP", 2, 3, const(T.STRING))
def format_timestamp(ts: int | None, fmt: str | None, tz: str | None = "UTC") -> str | None:
    if ts is None or fmt is None or tz is None:
        return None
    return format_millis(ts, fmt, tz)


@register("FORMAT_DATE", 2, 2, const(T.STRING))
def format_date(days: int | None, fmt: str | None) -> str | None:
    if days is None or fmt is None:
        return None
    return format_millis(days * MS_PER_DAY, fmt)


@register("FORMAT_TIME", 2, 2, const(T.STRING))
def format_time(ms: int | None, fmt: str | None) -> str | None:
    if ms is None or fmt is None:
        return None
    return format_millis(ms, fmt)


@register("DATETOSTRING", 2, 2, const(T.STRING))
def datetostring(days: int | None, fmt: str | None) -> str | None:
    return format_date(days, fmt)


def _parse(text: str, fmt: str, tz: str | None = None, prefix: bool = False) -> int:
    try:
        return parse_millis(text, fmt, tz, prefix)
    except ValueError as exc:
        raise KsqlError(f"Failed to parse '{text}' with pattern '{fmt}': {exc}") from exc


@register("PARSE_TIMESTAMP", 2, 3, const(T.TIMESTAMP))
def parse_timestamp(text: str | None, fmt: str | None, tz: str | None = "UTC") -> int | None:
    if text is None or fmt is None or tz is None:
        return None
    return _parse(text, fmt, tz)


TIME_LETTERS = frozenset("HhmsSa")
DATE_LETTERS = frozenset("yMdE")


@register("PARSE_DATE", 2, 2, const(T.DATE))
def parse_date(text: str | None, fmt: str | None) -> int | None:
    """ksqlDB refuses a pattern with time fields here."""
    if text is None or fmt is None:
        return None
    if pattern_letters(fmt) & TIME_LETTERS:
        raise KsqlError(
            f"Failed to parse date '{text}' with formatter '{fmt}': "
            "Date format contains time field."
        )
    # PARSE_DATE is SimpleDateFormat's parse: text after the pattern is ignored
    return _parse(text, fmt, prefix=True) // MS_PER_DAY


@register("STRINGTODATE", 2, 2, const(T.INTEGER))
def stringtodate(text: str | None, fmt: str | None) -> int | None:
    return parse_date(text, fmt)


@register("PARSE_TIME", 2, 2, const(T.TIME))
def parse_time(text: str | None, fmt: str | None) -> int | None:
    """ksqlDB refuses a pattern with date fields here."""
    if text is None or fmt is None:
        return None
    if pattern_letters(fmt) & DATE_LETTERS:
        raise KsqlError(
            f"Failed to parse time '{text}' with formatter '{fmt}': "
            "Time format contains date field."
        )
    return _parse(text, fmt) % MS_PER_DAY


# ----------------------------------------------------------------------------- conversions


def _unix_date_ret(args: Sequence[SqlType | None]) -> SqlType:
    return T.INTEGER


@register("UNIX_DATE", 0, 1, _unix_date_ret)
def unix_date(*args: int | None) -> int | None:
    """Today's epoch day (UTC), or the given DATE's."""
    if not args:
        return int(time.time() // 86_400)
    return args[0]


@register("FROM_DAYS", 1, 1, const(T.DATE))
def from_days(days: int | None) -> int | None:
    return days


@register("CONVERT_TZ", 3, 3, const(T.TIMESTAMP))
def convert_tz(ts: int | None, from_tz: str | None, to_tz: str | None) -> int | None:
    """The wall-clock time `ts` shows in `from_tz`, as it reads in `to_tz`."""
    if ts is None or from_tz is None or to_tz is None:
        return None
    instant = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ts)
    shift = _offset_ms(instant, _zone(to_tz)) - _offset_ms(instant, _zone(from_tz))
    return ts + shift


def _offset_ms(instant: dt.datetime, zone: dt.tzinfo) -> int:
    offset = instant.astimezone(zone).utcoffset() or dt.timedelta()
    return int(offset / dt.timedelta(milliseconds=1))


# ----------------------------------------------------------------------------- arithmetic


def _add_sub(name: str, ret: SqlType) -> Any:
    def check(args: Sequence[SqlType | None]) -> SqlType:
        if args and args[0] is not None and args[0].base != "STRING":
            raise KsqlError(f"Function '{name}' expects a time unit as its first argument")
        return ret

    return check


def _register_shift(
    name: str, ret: SqlType, delta: Callable[[str, int], int], sign: int, wrap: int = 0
) -> None:
    """One of the *ADD/*SUB functions: `value ± delta(unit, amount)`, modulo `wrap` when set
    (TIME wraps around midnight)."""

    def shift(unit: str | None, amount: int | None, value: int | None) -> int | None:
        if unit is None or amount is None or value is None:
            return None
        out = value + sign * delta(unit, amount)
        return out % wrap if wrap else out

    shift.__name__ = name.lower()
    FUNCTIONS[name] = Function(name, shift, _add_sub(name, ret), 3, 3)


_register_shift("TIMESTAMPADD", T.TIMESTAMP, _to_millis, 1)
_register_shift("TIMESTAMPSUB", T.TIMESTAMP, _to_millis, -1)
_register_shift("DATEADD", T.DATE, _to_days, 1)
_register_shift("DATESUB", T.DATE, _to_days, -1)
_register_shift("TIMEADD", T.TIME, _to_millis, 1, MS_PER_DAY)
_register_shift("TIMESUB", T.TIME, _to_millis, -1, MS_PER_DAY)

UNIT_FUNCTIONS = frozenset(
    {"TIMESTAMPADD", "TIMESTAMPSUB", "DATEADD", "DATESUB", "TIMEADD", "TIMESUB"}
)
"""The functions whose first argument is a time unit keyword, not an expression."""
