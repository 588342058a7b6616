"""Bounded JSON parsing for small untrusted documents (records read from Kafka, request bodies).

C `json` recurses once per nesting level, so whether a deep document fails depends on the
interpreter's recursion limit at that moment (which a server may raise for its own parser).
Measuring the depth first, in a loop, makes the answer the same everywhere.
"""

from __future__ import annotations

import json
from typing import Any

from services.common.errors import FraudstreamError


class JsonTooDeep(FraudstreamError, ValueError):
    """The document nests deeper than allowed."""

    default_code = "json_too_deep"


def nesting_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in `raw` (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def loads_bounded(raw: bytes, max_depth: int) -> Any:
    """`json.loads` for a document at most `max_depth` deep; JsonTooDeep (a ValueError) if not."""
    if nesting_depth(raw) > max_depth:
        raise JsonTooDeep(f"JSON nests deeper than {max_depth} levels")
    return json.loads(raw)
