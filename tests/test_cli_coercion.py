"""The light option conversion (`services.cli_coercion`) gives what typer's pydantic adapter
gives, for every value it converts itself; everything else it leaves to the adapter."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer._coercion import build_runtime_param, resolve_type_descriptor
from typer.models import OptionInfo

from services.cli_coercion import SLOW, fast_conversion

PLAIN_INT = st.integers(-(10**20), 10**20).map(str)
PLAIN_FLOAT = st.builds(
    lambda sign, whole, frac: f"{sign}{whole}{frac}",
    st.sampled_from(["", "-"]),
    st.from_regex(r"[0-9]{1,31}", fullmatch=True),
    st.sampled_from([""]) | st.from_regex(r"\.[0-9]{1,31}", fullmatch=True),
)
ODD_TEXT = st.text(alphabet=" +-_.0123456789eEinfatyx", max_size=12)


_BUILT: dict[str, tuple[Any, Any]] = {}


def _both(annotation: Any, value: Any, **info: Any) -> tuple[Any, Any]:
    """(light result or SLOW, typer's result or the error's class name)."""
    key = repr((annotation, sorted(info.items())))
    if key not in _BUILT:  # typer's adapter is slow to build: once per kind of option
        option = OptionInfo(**info)
        slow_param = build_runtime_param(resolve_type_descriptor(annotation, option))
        _BUILT[key] = (fast_conversion(annotation, option), slow_param)
    fast, slow = _BUILT[key]
    assert fast is not None
    light = fast(value)
    try:
        typer_result = slow.coerce(value, param=_Param(), ctx=None)  # type: ignore[arg-type]
    except Exception as exc:  # a refusal: the light path must not have a value
        typer_result = type(exc).__name__
    return light, typer_result


class _Param:
    """What typer's coercion asks of the click parameter."""

    multiple = False
    nargs = 1
    name = "value"
    opts = ["--value"]
    human_readable_name = "--value"

    def get_error_hint(self, _ctx: Any) -> str:
        return "'--value'"


def _same(light: Any, typer_result: Any) -> None:
    if light is SLOW:
        return
    assert type(light) is type(typer_result)
    if isinstance(light, float) and math.isnan(light):
        assert math.isnan(typer_result)
    else:
        assert light == typer_result


@settings(max_examples=200, deadline=None)
@given(PLAIN_INT | ODD_TEXT | st.integers(-(2**70), 2**70) | st.booleans())
def test_int_as_typer(value: Any) -> None:
    _same(*_both(int, value))


@settings(max_examples=200, deadline=None)
@given(PLAIN_INT | ODD_TEXT | st.integers(-(2**40), 2**40))
def test_bounded_int_as_typer(value: Any) -> None:
    light, typer_result = _both(int, value, min=0, max=10**6)
    _same(light, typer_result)
    if isinstance(typer_result, str):  # refused by typer: the light path did not accept it
        assert light is SLOW


@settings(max_examples=200, deadline=None)
@given(PLAIN_FLOAT | PLAIN_INT | ODD_TEXT | st.floats() | st.integers(-(2**60), 2**60))
def test_float_as_typer(value: Any) -> None:
    _same(*_both(float, value))


@settings(max_examples=200, deadline=None)
@given(PLAIN_FLOAT | ODD_TEXT | st.floats(-2, 2))
def test_bounded_float_as_typer(value: Any) -> None:
    light, typer_result = _both(float, value, min=0.0, max=1.0)
    _same(light, typer_result)
    if isinstance(typer_result, str):
        assert light is SLOW


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30) | st.booleans() | st.integers())
def test_str_and_bool_as_typer(value: Any) -> None:
    _same(*_both(str, value))
    _same(*_both(bool, value))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\0"), max_size=20))
def test_path_as_typer(value: str) -> None:
    _same(*_both(Path, value))
    _same(*_both(list[Path], [value, value + "x"]))
    _same(*_both(list[str], (value,)))


def test_paths_that_must_exist(tmp_path: Path) -> None:
    there = tmp_path / "there.csv"
    there.write_text("x")
    light, typer_result = _both(Path, str(there), exists=True, dir_okay=False)
    assert light == typer_result == there
    light, typer_result = _both(Path, str(tmp_path / "not-there"), exists=True)
    assert light is SLOW and typer_result == "BadParameter"
    light, typer_result = _both(Path, str(tmp_path), exists=True, dir_okay=False)
    assert light is SLOW and typer_result == "BadParameter"


@pytest.mark.parametrize(
    ("annotation", "info"),
    [(int, {"clamp": True, "min": 0}), (int, {"parser": int}), (bytes, {}), (list[int], {})],
)
def test_other_options_are_typers(annotation: Any, info: dict[str, Any]) -> None:
    if annotation == list[int]:
        fast = fast_conversion(annotation, OptionInfo(**info))
        assert fast is not None and fast(["1", "x"]) is SLOW
        return
    assert fast_conversion(annotation, OptionInfo(**info)) is None
