"""ksqlDB's JSON functions over JSON text: EXTRACTJSONFIELD, JSON_ARRAY_CONTAINS,
IS_JSON_STRING, JSON_ARRAY_LENGTH, JSON_CONCAT, JSON_KEYS, JSON_RECORDS, JSON_ITEMS and
TO_JSON_STRING.

Invalid JSON is not an error: the function answers null (false for the two predicates), as
ksqlDB's do. JSON text written back (JSON_ITEMS, JSON_RECORDS, JSON_CONCAT, TO_JSON_STRING,
a non-text EXTRACTJSONFIELD result) is compact and renders numbers as Jackson does.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.functions.registry import const, register
from services.ksql_server.types import SqlType
from services.ksql_server.values import to_string

_MISSING = object()


def parse_json(text: str | None) -> Any:
    """The parsed document, or _MISSING for null, empty or invalid text."""
    if text is None or not text.strip():
        return _MISSING
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _MISSING


def dump_json(value: Any) -> str:
    """Compact JSON, numbers as Jackson writes them (1.0, 1.0E10)."""
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float, Decimal)):
        return str(to_string(value, None))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(dump_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{dump_json(str(k))}:{dump_json(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


_PATH_TOKEN = re.compile(
    r"\.([^.\[\]]+)"  # .field
    r"|\[\s*'([^']*)'\s*\]"  # ['field']
    r"|\[\s*\"([^\"]*)\"\s*\]"  # ["field"]
    r"|\[\s*(\d+)\s*\]"  # [index]
)


def _path_tokens(path: str) -> list[str] | None:
    rest = path.strip()
    if not rest.startswith("$"):
        return None
    rest = rest[1:]
    tokens: list[str] = []
    pos = 0
    while pos < len(rest):
        m = _PATH_TOKEN.match(rest, pos)
        if m is None:
            return None
        tokens.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    return tokens


@register("EXTRACTJSONFIELD", 2, 2, const(T.STRING))
def extractjsonfield(text: str | None, path: str | None) -> str | None:
    """The value at a JSONPath (`$.a.b[0]`, `$['a']`): a JSON string as its text, anything
    else as JSON text; null when the path or the document does not lead anywhere."""
    if text is None or path is None:
        return None
    node = parse_json(text)
    tokens = _path_tokens(path)
    if node is _MISSING or tokens is None:
        return None
    for token in tokens:
        if isinstance(node, list):
            if not token.isdigit() or int(token) >= len(node):
                return None
            node = node[int(token)]
        elif isinstance(node, dict):
            if token not in node:
                return None
            node = node[token]
        else:
            return None
    return node if isinstance(node, str) else dump_json(node)


def _same_json_value(node: Any, value: Any) -> bool:
    if value is None:
        return node is None
    if isinstance(value, bool) or isinstance(node, bool):
        return isinstance(value, bool) and isinstance(node, bool) and node == value
    if isinstance(value, int):
        return isinstance(node, int) and node == value
    if isinstance(value, (float, Decimal)):
        return isinstance(node, float) and node == float(value)
    if isinstance(value, str):
        return isinstance(node, str) and node == value
    return False


@register("JSON_ARRAY_CONTAINS", 2, 2, const(T.BOOLEAN))
def json_array_contains(text: str | None, value: Any) -> bool:
    """Whether the JSON array holds `value` with the same JSON type; false for anything that
    is not a JSON array."""
    node = parse_json(text)
    if not isinstance(node, list):
        return False
    return any(_same_json_value(item, value) for item in node)


@register("IS_JSON_STRING", 1, 1, const(T.BOOLEAN))
def is_json_string(text: str | None) -> bool:
    return parse_json(text) is not _MISSING


@register("JSON_ARRAY_LENGTH", 1, 1, const(T.INTEGER))
def json_array_length(text: str | None) -> int | None:
    node = parse_json(text)
    return len(node) if isinstance(node, list) else None


@register("JSON_CONCAT", 1, -1, const(T.STRING))
def json_concat(*texts: str | None) -> str | None:
    """Objects merge (a later key wins); otherwise the result is an array: arrays are
    concatenated, any other value is added as one element. Null for any null or invalid
    input."""
    nodes = [parse_json(t) for t in texts]
    if any(n is _MISSING for n in nodes):
        return None
    if all(isinstance(n, dict) for n in nodes):
        merged: dict[str, Any] = {}
        for n in nodes:
            merged.update(n)
        return dump_json(merged)
    out: list[Any] = []
    for n in nodes:
        if isinstance(n, list):
            out.extend(n)
        else:
            out.append(n)
    return dump_json(out)


@register("JSON_KEYS", 1, 1, const(T.array(T.STRING)))
def json_keys(text: str | None) -> list[str] | None:
    node = parse_json(text)
    return list(node.keys()) if isinstance(node, dict) else None


@register("JSON_RECORDS", 1, 1, const(T.map_of(T.STRING, T.STRING)))
def json_records(text: str | None) -> dict[str, str] | None:
    node = parse_json(text)
    return {k: dump_json(v) for k, v in node.items()} if isinstance(node, dict) else None


@register("JSON_ITEMS", 1, 1, const(T.array(T.STRING)))
def json_items(text: str | None) -> list[str] | None:
    node = parse_json(text)
    return [dump_json(v) for v in node] if isinstance(node, list) else None


def _to_json_value(value: Any, typ: SqlType | None) -> Any:
    """An engine value as the JSON value ksqlDB's JSON serializer writes: TIMESTAMP, DATE and
    TIME as numbers, BYTES as base64 text, structs as objects in field order."""
    if value is None:
        return None
    base = typ.base if typ is not None else ""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        item = typ.item if typ is not None else None
        return [_to_json_value(v, item) for v in value]
    if isinstance(value, dict):
        if base == "STRUCT" and typ is not None:
            fields = dict(typ.fields)
            return {k: _to_json_value(v, fields.get(k)) for k, v in value.items()}
        item = typ.item if typ is not None else None
        return {str(k): _to_json_value(v, item) for k, v in value.items()}
    return value


@register("TO_JSON_STRING", 1, 1, const(T.STRING), pass_types=True)
def to_json_string(types: Sequence[SqlType | None], value: Any) -> str:
    """Any value as JSON text; null is the text 'null'."""
    return dump_json(_to_json_value(value, types[0] if types else None))
