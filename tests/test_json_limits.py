"""The loop that measures JSON nesting agrees with the parser, whatever the recursion limit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.json_limits import JsonTooDeep, loads_bounded, nesting_depth

_scalars = (
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\u00e9', max_size=6)
)
documents = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=20,
)


def _depth(doc: Any) -> int:
    if isinstance(doc, list):
        return 1 + max((_depth(item) for item in doc), default=0)
    if isinstance(doc, dict):
        return 1 + max((_depth(item) for item in doc.values()), default=0)
    return 0


@given(documents)
def test_nesting_depth_matches_the_parsed_document(doc: Any) -> None:
    raw = json.dumps(doc, ensure_ascii=False).encode()
    assert nesting_depth(raw) == _depth(doc)
    assert loads_bounded(raw, _depth(doc)) == doc


def test_too_deep_is_refused_before_parsing_at_any_depth() -> None:
    for deep in (b"[" * 3, b"[" * 100_000, b'{"a":' * 5000):
        with pytest.raises(JsonTooDeep):
            loads_bounded(deep, 2)
