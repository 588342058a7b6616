"""Command-line values without pydantic: the plain cases of typer's coercion, done directly.

typer (0.2x) turns every option's text into its annotated type through a pydantic `TypeAdapter`,
built when the command runs. Loading pydantic and building the adapters costs a command about
0.15 s before it does anything, more than the rest of a `fraudstream datagen` start-up. The
project's options are plain: `str`, `bool`, `int`, `float`, `Path`, lists of those, a bound.

`install()` puts a light runtime parameter in front of typer's: it converts the values whose
result it knows for certain (text for `str`; a plainly written number; a path) and hands
everything else (an odd spelling, a value out of bounds, any error, any other annotation) to
typer's own adapter, built only then. A value it converts gets exactly what the adapter gives
(`tests/test_cli_coercion.py` checks that with generated values); an error always comes from
typer, with typer's message. If typer's internals change shape, `install()` does nothing and
typer works as before (only slower to start; `tests/test_cli_startup.py` would say so).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

SLOW = object()
"""What a fast conversion returns when it does not know the answer for certain."""
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?[0-9]{1,30}(?:\.[0-9]{1,30})?")

Convert = Callable[..., Any]
"""(value, param, ctx) → the value converted, or SLOW."""


def _to_str(value: Any, *_: Any) -> Any:
    return value if type(value) is str else SLOW


def _to_bool(value: Any, *_: Any) -> Any:
    return value if type(value) is bool else SLOW


def _to_int(value: Any, *_: Any) -> Any:
    if type(value) is int:
        return value
    if type(value) is str and _INT.fullmatch(value):
        return int(value)
    return SLOW


def _to_float(value: Any, *_: Any) -> Any:
    if type(value) is float:
        return value if math.isfinite(value) else SLOW
    if type(value) is int and abs(value) < 2**53:
        return float(value)
    if type(value) is str and _FLOAT.fullmatch(value):
        return float(value)
    return SLOW


def _bounded(convert: Convert, low: float | None, high: float | None) -> Convert:
    """`convert`, for a number within [low, high]; outside, typer says what is wrong."""

    def bounded(value: Any, *_: Any) -> Any:
        number = convert(value)
        if number is SLOW or (low is not None and number < low):
            return SLOW
        return SLOW if high is not None and number > high else number

    return bounded


def _number(annotation: Any, info: Any) -> Convert | None:
    convert = {int: _to_int, float: _to_float}.get(annotation)
    if convert is None or getattr(info, "clamp", False):
        return None
    low, high = getattr(info, "min", None), getattr(info, "max", None)
    return convert if low is None and high is None else _bounded(convert, low, high)


def _path(annotation: Any, info: Any) -> Convert | None:
    """typer's own path check (`coerce_cli_path`), given a `Path` made the way pydantic makes
    one from text, so pydantic is not needed to make it."""
    from typer._param_types import coerce_cli_path

    path_type = getattr(info, "path_type", None) or annotation
    if path_type is not Path:
        return None

    def to_path(value: Any, param: Any = None, ctx: Any = None) -> Any:
        if type(value) is str:
            value = Path(value)
        if not isinstance(value, Path):
            return SLOW
        return coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)

    return to_path


def _leaf(annotation: Any, info: Any) -> Convert | None:
    if getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
        return None
    if annotation is str:
        return _to_str
    if annotation is bool:
        return _to_bool
    if annotation is Path:
        return _path(annotation, info)
    return _number(annotation, info)


def fast_conversion(annotation: Any, info: Any) -> Convert | None:
    """The light conversion of one option (value, param, ctx) → value or SLOW; None if the
    annotation is not one of the plain ones."""
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        leaf = _leaf(item, info)
        if leaf is None:
            return None
        convert_item = leaf

        def convert_list(value: Any, param: Any = None, ctx: Any = None) -> Any:
            if not isinstance(value, (list, tuple)):
                return SLOW
            items = [_call(convert_item, one, param, ctx) for one in value]
            return SLOW if any(one is SLOW for one in items) else items

        return convert_list
    leaf = _leaf(annotation, info)
    if leaf is None:
        return None
    convert_leaf = leaf
    return lambda value, param=None, ctx=None: _call(convert_leaf, value, param, ctx)


def _call(convert: Convert, value: Any, param: Any, ctx: Any) -> Any:
    try:
        return convert(value, param, ctx)
    except Exception:  # any error is typer's to report, with its own message
        return SLOW


def install() -> bool:
    """Put the light parameters in front of typer's; False when typer's internals are not the
    ones this was written for (then nothing changes)."""
    try:
        from typer import _coercion, core
    except ImportError:
        return False
    found = getattr(core, "build_runtime_param", None)
    base = getattr(_coercion, "RuntimeParam", None)
    if found is None or base is None or getattr(found, "fraudstream_light", False):
        return found is not None and base is not None
    original: Callable[[Any], Any] = found

    @dataclass(frozen=True)
    class LightRuntimeParam(base):  # type: ignore[misc, valid-type]
        """typer's parameter with a fast conversion first and typer's adapter behind it."""

        descriptor: Any = None
        fast: Callable[..., Any] | None = None
        slow: list[Any] = field(default_factory=list)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if self.fast is not None:
                result = self.fast(value, param, ctx)
                if result is not SLOW:
                    return result
            if not self.slow:
                self.slow.append(original(self.descriptor))
            return self.slow[0]._coerce_value(value, param=param, ctx=ctx)

    def build_runtime_param(descriptor: Any) -> Any:
        if getattr(descriptor, "file_annotation", None) is not None:
            return original(descriptor)
        fast = fast_conversion(descriptor.annotation, descriptor.parameter_info)
        if fast is None:
            return original(descriptor)
        return LightRuntimeParam(
            parameter_info=descriptor.parameter_info,
            annotation=descriptor.annotation,
            descriptor=descriptor,
            fast=fast,
        )

    build_runtime_param.fraudstream_light = True  # type: ignore[attr-defined]
    core.build_runtime_param = build_runtime_param
    return True
