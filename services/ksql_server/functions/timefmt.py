"""Java DateTimeFormatter patterns (the common subset) for TIMESTAMPTOSTRING and friends."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

_TOKENS = re.compile(r"'[^']*'|y+|M+|d+|H+|h+|m+|s+|S+|a|X+|Z+|E+|.")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _zone(tz: str | None) -> dt.tzinfo:
    return dt.UTC if tz in (None, "UTC", "Z") else ZoneInfo(tz)


def pattern_letters(fmt: str) -> set[str]:
    """The pattern letters `fmt` uses outside quotes (`yyyy-MM-dd` → {y, M, d})."""
    return {tok[0] for tok in _TOKENS.findall(fmt) if tok[0].isalpha()}


def format_millis(ms: int, fmt: str, tz: str | None = None) -> str:
    t = (_EPOCH + dt.timedelta(milliseconds=ms)).astimezone(_zone(tz))
    out = []
    for tok in _TOKENS.findall(fmt):
        c, n = tok[0], len(tok)
        if c == "'":
            out.append(tok[1:-1] or "'")
        elif c == "y":
            out.append(f"{t.year:04d}" if n != 2 else f"{t.year % 100:02d}")
        elif c == "M":
            out.append(f"{t.month:0{n}d}" if n <= 2 else t.strftime("%b" if n == 3 else "%B"))
        elif c == "d":
            out.append(f"{t.day:0{n}d}")
        elif c == "H":
            out.append(f"{t.hour:0{n}d}")
        elif c == "h":
            out.append(f"{(t.hour % 12) or 12:0{n}d}")
        elif c == "m":
            out.append(f"{t.minute:0{n}d}")
        elif c == "s":
            out.append(f"{t.second:0{n}d}")
        elif c == "S":
            out.append(f"{t.microsecond // 1000:03d}"[:n].ljust(n, "0"))
        elif c == "a":
            out.append("AM" if t.hour < 12 else "PM")
        elif c in "XZ":
            off = t.utcoffset() or dt.timedelta()
            mins = int(off.total_seconds() // 60)
            if c == "X" and mins == 0:
                out.append("Z")
            else:
                sign = "+" if mins >= 0 else "-"
                out.append(
                    f"{sign}{abs(mins) // 60:02d}{':' if n >= 3 else ''}{abs(mins) % 60:02d}"
                )
        elif c == "E":
            out.append(t.strftime("%a" if n <= 3 else "%A"))
        else:
            out.append(tok)
    return "".join(out)


def _two_digit_year(yy: int, simple: bool) -> int:
    """`yy` as Java reads it: DateTimeFormatter in 2000-2099; SimpleDateFormat (`simple`)
    within 80 years before and 20 after today."""
    if not simple:
        return 2000 + yy
    now = dt.datetime.now(dt.UTC).year
    year = (now - 80) // 100 * 100 + yy
    return year + 100 if year < now - 80 else year


def parse_millis(text: str, fmt: str, tz: str | None = None, prefix: bool = False) -> int:
    """`text` read with a Java date pattern as epoch ms; `prefix`: SimpleDateFormat's
    `parse(String)`, which reads from the start and ignores what follows the pattern."""
    regex = []
    fields = []
    for tok in _TOKENS.findall(fmt):
        c = tok[0]
        if c == "'":
            regex.append(re.escape(tok[1:-1] or "'"))
        elif tok == "yy":  # Java's reduced two-digit year
            regex.append(r"(\d\d)")
            fields.append("yy")
        elif c in "yMdHhmsS":
            regex.append(r"(\d+)")
            fields.append(c)
        elif c == "a":
            regex.append(r"(AM|PM)")
            fields.append("a")
        elif c in "XZ":
            regex.append(r"(Z|[+-]\d\d:?\d\d)")
            fields.append("z")
        else:
            regex.append(re.escape(tok))
    pattern = "".join(regex)
    m = re.match(pattern, text) if prefix else re.fullmatch(pattern, text.strip())
    if m is None:
        raise ValueError(f"Text '{text}' could not be parsed with pattern '{fmt}'")
    parts = {"y": 1970, "M": 1, "d": 1, "H": 0, "m": 0, "s": 0, "S": 0}
    pm = None
    zone: dt.tzinfo = _zone(tz)
    for f, v in zip(fields, m.groups(), strict=True):
        if f == "a":
            pm = v == "PM"
        elif f == "z":
            zone = (
                dt.UTC
                if v == "Z"
                else dt.timezone(dt.timedelta(hours=int(v[:3]), minutes=int(v[0] + v[-2:])))
            )
        elif f == "yy":
            parts["y"] = _two_digit_year(int(v), prefix)
        elif f == "h":
            parts["H"] = int(v)
        elif f == "S":
            parts["S"] = int(v.ljust(3, "0")[:3])
        else:
            parts[f] = int(v)
    if pm is not None:
        parts["H"] = parts["H"] % 12 + (12 if pm else 0)
    t = dt.datetime(
        parts["y"],
        parts["M"],
        parts["d"],
        parts["H"],
        parts["m"],
        parts["s"],
        parts["S"] * 1000,
        tzinfo=zone,
    )
    return int((t - _EPOCH) / dt.timedelta(milliseconds=1))
