"""ksqlDB's string functions beyond the core set in `registry.py`: character codes, encodings,
regular expressions, SPLIT_TO_MAP, INITCAP, UUID.

Null handling follows ksqlDB's UDFs: a null argument gives null (REGEXP_EXTRACT_ALL and the
splitting functions too), except UUID(), which takes none. Regular expressions are Java's;
Python's `re` reads the common subset the same way, and a replacement's `$n` group references
are translated to Python's.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.functions.registry import const, register

ENCODINGS = ("hex", "utf8", "ascii", "base64")
_ENCODING_ERROR = "Supported input and output encodings are: hex, utf8, ascii and base64"


@register("CHR", 1, 1, const(T.STRING))
def chr_(code: int | str | None) -> str | None:
    """A code point (INT) or a `\\uXXXX` escape (STRING) as a one-character string."""
    if code is None:
        return None
    if isinstance(code, str):
        if len(code) != 6 or not code.startswith("\\u"):
            return None
        try:
            code = int(code[2:], 16)
        except ValueError:
            return None
    if not 0 <= code <= 0x10FFFF:
        return None
    return chr(code)


def _to_bytes(text: str, encoding: str) -> bytes:
    enc = encoding.lower()
    try:
        if enc == "hex":
            digits = text[2:] if text[:2].lower() == "0x" else text
            return binascii.unhexlify(digits if len(digits) % 2 == 0 else "0" + digits)
        if enc == "utf8":
            return text.encode("utf-8", "surrogatepass")
        if enc == "ascii":
            return text.encode("ascii", "replace")
        if enc == "base64":
            return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise KsqlError(f"Could not decode '{text}' as {encoding}") from exc
    raise KsqlError(_ENCODING_ERROR)


def _from_bytes(data: bytes, encoding: str) -> str:
    enc = encoding.lower()
    if enc == "hex":
        return data.hex()
    if enc == "utf8":
        return data.decode("utf-8", "replace")
    if enc == "ascii":
        return "".join(chr(b) if b < 128 else "\ufffd" for b in data)
    if enc == "base64":
        return base64.b64encode(data).decode("ascii")
    raise KsqlError(_ENCODING_ERROR)


@register("ENCODE", 3, 3, const(T.STRING))
def encode(text: str | None, input_encoding: str | None, output_encoding: str | None) -> Any:
    """Re-encode `text` from one of hex/utf8/ascii/base64 into another."""
    if text is None or input_encoding is None or output_encoding is None:
        return None
    for enc in (input_encoding, output_encoding):
        if enc.lower() not in ENCODINGS:
            raise KsqlError(_ENCODING_ERROR)
    return _from_bytes(_to_bytes(text, input_encoding), output_encoding)


@register("TO_BYTES", 2, 2, const(T.BYTES))
def to_bytes(text: str | None, encoding: str | None) -> bytes | None:
    if text is None or encoding is None:
        return None
    return _to_bytes(text, encoding)


@register("FROM_BYTES", 2, 2, const(T.STRING))
def from_bytes(data: bytes | None, encoding: str | None) -> str | None:
    if data is None or encoding is None:
        return None
    return _from_bytes(data, encoding)


@register("INITCAP", 1, 1, const(T.STRING))
def initcap(text: str | None) -> str | None:
    """Each whitespace-separated word with its first letter upper case, the rest lower."""
    if text is None:
        return None
    words = re.split(r"(\s)", text)
    return "".join(w[:1].upper() + w[1:].lower() if w and not w.isspace() else w for w in words)


@register("SPLIT_TO_MAP", 3, 3, const(T.map_of(T.STRING, T.STRING)))
def split_to_map(text: str | None, entry_delim: str | None, kv_delim: str | None) -> Any:
    """`'a=1/b=2'` → {a: 1, b: 2}: entries without the key delimiter are dropped, a later
    duplicate key wins; null when a delimiter is empty or both are the same."""
    if text is None or entry_delim is None or kv_delim is None:
        return None
    if not entry_delim or not kv_delim or entry_delim == kv_delim:
        return None
    out: dict[str, str] = {}
    for entry in text.split(entry_delim):
        if entry and kv_delim in entry:
            parts = entry.split(kv_delim)
            out[parts[0]] = parts[1]
    return out


@lru_cache(maxsize=256)
def _pattern(regex: str) -> re.Pattern[str]:
    try:
        return re.compile(_java_regex(regex))
    except re.error as exc:
        raise KsqlError(f"Invalid regular expression pattern: {regex}") from exc


def _java_regex(regex: str) -> str:
    """Java-only syntax Python spells differently: possessive quantifiers and `\\p{Alpha}`-style
    classes are rare; named groups `(?<name>…)` are common."""
    return re.sub(r"\(\?<([A-Za-z][A-Za-z0-9]*)>", r"(?P<\1>", regex)


def _group(match: re.Match[str], group: int) -> str | None:
    if group > (match.re.groups or 0):
        return None
    return match.group(group)


@register("REGEXP_EXTRACT", 2, 3, const(T.STRING))
def regexp_extract(regex: str | None, text: str | None, group: int | None = 0) -> str | None:
    """The first match of `regex` in `text` (or its capture group `group`)."""
    if regex is None or text is None or group is None:
        return None
    match = _pattern(regex).search(text)
    return None if match is None else _group(match, group)


@register("REGEXP_EXTRACT_ALL", 2, 3, const(T.array(T.STRING)))
def regexp_extract_all(regex: str | None, text: str | None, group: int | None = 0) -> Any:
    if regex is None or text is None or group is None:
        return None
    return [_group(m, group) for m in _pattern(regex).finditer(text)]


def _java_replacement(replacement: str) -> Callable[[re.Match[str]], str]:
    """Java's Matcher.replaceAll replacement text: `$n` / `${name}` refer to groups, a backslash
    escapes the next character."""
    parts: list[str | int] = []
    i = 0
    literal: list[str] = []
    while i < len(replacement):
        c = replacement[i]
        if c == "\\" and i + 1 < len(replacement):
            literal.append(replacement[i + 1])
            i += 2
            continue
        if c == "$":
            m = re.match(r"\$(\d)|\$\{([A-Za-z][A-Za-z0-9]*)\}", replacement[i:])
            if m is None:
                raise KsqlError("Illegal group reference in the replacement string")
            parts.append("".join(literal))
            literal = []
            parts.append(int(m.group(1)) if m.group(1) else m.group(2))
            i += m.end()
            continue
        literal.append(c)
        i += 1
    parts.append("".join(literal))

    def expand(match: re.Match[str]) -> str:
        out = []
        for k, part in enumerate(parts):
            if k % 2 == 0:
                out.append(str(part))
            else:
                out.append(match.group(part) or "")
        return "".join(out)

    return expand


@register("REGEXP_REPLACE", 3, 3, const(T.STRING))
def regexp_replace(text: str | None, regex: str | None, replacement: str | None) -> str | None:
    if text is None or regex is None or replacement is None:
        return None
    return _pattern(regex).sub(_java_replacement(replacement), text)


@register("REGEXP_SPLIT_TO_ARRAY", 2, 2, const(T.array(T.STRING)))
def regexp_split_to_array(text: str | None, regex: str | None) -> list[str] | None:
    """Java's split with no limit kept on both ends; an empty pattern splits into characters."""
    if text is None or regex is None:
        return None
    if regex == "":
        return list(text)
    return _split_no_groups(text, _pattern(regex))


def _split_no_groups(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Java's split: the groups' text is never returned (re.split would), and an empty match
    at the start does not make a leading empty string."""
    out, start = [], 0
    for m in pattern.finditer(text):
        if m.end() == 0:
            continue
        out.append(text[start : m.start()])
        start = m.end()
    out.append(text[start:])
    return out


@register("UUID", 0, 1, const(T.STRING))
def uuid_(*args: bytes | None) -> str | None:
    """A random (version 4) UUID; with a BYTES argument, its 16 bytes as a UUID string."""
    if not args:
        return str(uuid.uuid4())
    data = args[0]
    if data is None or len(data) != 16:
        return None
    return str(uuid.UUID(bytes=data))
