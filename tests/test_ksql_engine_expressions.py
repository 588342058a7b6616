"""Expressions compiled to Python code: types, ksqlDB null semantics, functions."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError, UnsupportedError
from services.ksql_server.expressions import ExpressionCompiler, Scope, build_batch_function
from services.ksql_server.functions import lookup
from services.ksql_server.parser import parse_expression

COLUMNS = [
    ("I", T.INTEGER),
    ("B", T.BIGINT),
    ("D", T.DOUBLE),
    ("S", T.STRING),
    ("M", T.decimal(4, 2)),
    ("F", T.BOOLEAN),
]


def evaluate(text: str, row: list[Any]) -> tuple[Any, T.SqlType | None]:
    compiler = ExpressionCompiler(Scope(COLUMNS))
    compiled = compiler.compile(parse_expression(text))
    fn = build_batch_function(compiler, None, [compiled], ["X"])
    errors: list[BaseException] = []
    out = fn([row], lambda _r, _c, exc: errors.append(exc))
    return out[0][1][0], compiled.type


ROW = [7, 10_000_000_000, 2.5, "Hello", Decimal("1.25"), True]
NULLS = [None] * 6


@pytest.mark.parametrize(
    ("expr", "value", "typ"),
    [
        ("I + 1", 8, T.INTEGER),
        ("I + B", 10_000_000_007, T.BIGINT),
        ("I * D", 17.5, T.DOUBLE),
        ("-7 / 2", -3, T.INTEGER),  # Java truncation
        ("-7 % 3", -1, T.INTEGER),
        ("M + 1", Decimal("2.25"), T.decimal(13, 2)),
        ("M * M", Decimal("1.5625"), T.decimal(9, 4)),
        ("D / 0", math.inf, T.DOUBLE),
        ("S || ' world'", "Hello world", T.STRING),
        ("I BETWEEN 1 AND 7", True, T.BOOLEAN),
        ("S LIKE 'He%'", True, T.BOOLEAN),
        ("S LIKE 'h%'", False, T.BOOLEAN),
        ("'50%' LIKE '50!%' ESCAPE '!'", True, T.BOOLEAN),
        ("I IN (1, 7)", True, T.BOOLEAN),
        ("CASE WHEN I > 5 THEN 'big' ELSE 'small' END", "big", T.STRING),
        ("CAST(D AS STRING)", "2.5", T.STRING),
        ("CAST('12' AS INT) + 1", 13, T.INTEGER),
        ("CAST(D AS DECIMAL(4, 1))", Decimal("2.5"), T.decimal(4, 1)),
        ("CAST(B AS DOUBLE)", 1e10, T.DOUBLE),
        ("CAST(1e10 AS STRING)", "1.0E10", T.STRING),
        ("NOT F", False, T.BOOLEAN),
        ("F AND I > 100", False, T.BOOLEAN),
    ],
)
def test_values_and_types(expr: str, value: Any, typ: T.SqlType) -> None:
    got, got_type = evaluate(expr, ROW)
    assert got == value
    assert got_type == typ


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("I + 1", None),  # arithmetic with null is null
        ("I = 1", False),  # ksqlDB comparisons with null are false
        ("I IS NULL", True),
        ("S IS NOT NULL", False),
        ("F AND TRUE", None),  # three-valued AND
        ("F OR TRUE", True),
        ("IFNULL(S, 'x')", "x"),
        ("COALESCE(S, NULL, 'y')", "y"),
        ("UCASE(S)", None),
        ("CONCAT(S, 'a')", "a"),
        ("I BETWEEN 1 AND 2", False),
        ("S LIKE '%'", False),
    ],
)
def test_null_semantics(expr: str, value: Any) -> None:
    assert evaluate(expr, NULLS)[0] == value


def test_division_by_zero_in_integers_is_null_and_logged() -> None:
    compiler = ExpressionCompiler(Scope(COLUMNS))
    compiled = compiler.compile(parse_expression("I / 0"))
    fn = build_batch_function(compiler, None, [compiled], ["X"])
    errors: list[BaseException] = []
    out = fn([ROW], lambda _r, _c, exc: errors.append(exc))
    assert out[0][1] == (None,)
    assert len(errors) == 1


def test_filter_drops_false_and_null() -> None:
    compiler = ExpressionCompiler(Scope(COLUMNS))
    where = compiler.compile(parse_expression("I > 5"))
    fn = build_batch_function(compiler, where, [compiler.compile(parse_expression("S"))], ["S"])
    rows = [ROW, [1, 1, 1.0, "a", None, None], NULLS]
    assert [v for _r, v in fn(rows, lambda *_: None)] == [("Hello",)]


def test_type_errors_and_unknowns() -> None:
    compiler = ExpressionCompiler(Scope(COLUMNS))
    with pytest.raises(KsqlError, match="Cannot compare"):
        compiler.compile(parse_expression("S > 1"))
    with pytest.raises(KsqlError, match="cannot be resolved"):
        compiler.compile(parse_expression("NOPE + 1"))
    with pytest.raises(UnsupportedError):
        compiler.compile(parse_expression("NO_SUCH_FUNCTION(I)"))


def test_generated_code_is_straight_line() -> None:
    compiler = ExpressionCompiler(Scope(COLUMNS))
    fn = build_batch_function(
        compiler,
        compiler.compile(parse_expression("S IS NOT NULL")),
        [compiler.compile(parse_expression("I * 2"))],
        ["X"],
    )
    source = fn.__source__  # type: ignore[attr-defined]
    assert "for r in rows" in source and "r[3]" in source


@pytest.mark.parametrize(
    ("call", "args", "expected"),
    [
        ("MASK", ["AbCd#$%12345"], "XxXx---nnnnn"),
        ("MASK", ["AbCd12", "*", "-", None, "#"], "*-*-12"),
        ("MASK_LEFT", ["AbCd12345", 5], "XxXxn2345"),
        ("MASK_RIGHT", ["AbCd12345", 3], "AbCd12nnn"),
        ("MASK_KEEP_LEFT", ["AbCd12345", 2], "AbXxnnnnn"),
        ("MASK_KEEP_RIGHT", ["AbCd12345", 2], "XxXxnnn45"),
        ("TRIM", ["  a b \t"], "a b"),
        ("SUBSTRING", ["hello", 2, 3], "ell"),
        ("SUBSTRING", ["hello", -3], "llo"),
        ("LEN", ["hello"], 5),
        ("REPLACE", ["a-b-c", "-", "+"], "a+b+c"),
        ("LCASE", ["AbC"], "abc"),
        ("ABS", [-3.5], 3.5),
        ("ROUND", [2.5], 3),
        ("ROUND", [-2.5], -2),
        ("ROUND", [1.2345, 2], 1.23),
        ("FLOOR", [-1.5], -2.0),
        ("CEIL", [1.2], 2.0),
        ("SQRT", [16], 4.0),
        ("MASK", [None], None),
    ],
)
def test_functions(call: str, args: list[Any], expected: Any) -> None:
    fn = lookup(call)
    assert fn is not None
    assert fn.impl(*args) == expected


def test_function_return_types() -> None:
    round_fn = lookup("ROUND")
    assert round_fn is not None
    assert round_fn.check([T.DOUBLE]) == T.BIGINT
    assert round_fn.check([T.DOUBLE, T.INTEGER]) == T.DOUBLE
    assert lookup("LEN").check([T.STRING]) == T.INTEGER  # type: ignore[union-attr]
    with pytest.raises(KsqlError):
        lookup("UCASE").check([T.INTEGER])  # type: ignore[union-attr]
