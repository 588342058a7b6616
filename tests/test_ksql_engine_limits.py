"""Statements as untrusted input: bounded recursion, literals never in generated source,
redacted logs, and the error every client mistake maps to.

The attack this answers: a 15 MB literal pasted into generated source cost gigabytes; 100 nested
parentheses or 200 ANDs raised RecursionError (a 500); a lone surrogate was a 500; full
statements with their literals went to a log that never rotated.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.ksql_server import types as T
from services.ksql_server.engine_api import KsqlStatementError, as_statement_error
from services.ksql_server.errors import KsqlError, clip
from services.ksql_server.expressions import ExpressionCompiler, Scope, build_batch_function
from services.ksql_server.parser import ParseError, parse, split_statements
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.lexer import REDACTED, redact
from services.ksql_server.parser.limits import (
    MAX_EXPRESSION_DEPTH,
    MAX_EXPRESSION_NODES,
    MAX_NESTING,
    MAX_RECORDED_STATEMENT_CHARS,
    check_recordable,
)

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = [
    ("A", T.INTEGER),
    ("S", T.STRING),
    ("F", T.BOOLEAN),
    ("ST", T.struct([("X", T.INTEGER)])),
]


def run_select(sql: str, rows: list[list[Any]]) -> tuple[list[tuple[Any, ...]], str]:
    """Compile a statement's WHERE and SELECT items as the planner does; (outputs, source)."""
    stmt = parse(sql)
    assert isinstance(stmt, A.Query)
    compiler = ExpressionCompiler(Scope(COLUMNS))
    where = compiler.compile(stmt.select.where) if stmt.select.where is not None else None
    items = [i for i in stmt.select.items if i.expr is not None]
    outputs = [compiler.compile(i.expr) for i in items if i.expr is not None]
    fn = build_batch_function(compiler, where, outputs, [i.alias or "X" for i in items])
    errors: list[BaseException] = []
    result = fn(rows, lambda _r, _c, exc: errors.append(exc))
    assert not errors, errors
    return [values for _, values in result], fn.__source__  # type: ignore[attr-defined]


# ------------------------------------------------------------------ reasonable statements work


def test_two_hundred_ands_are_one_node_and_evaluate_like_sql() -> None:
    where = " AND ".join(f"A <> {1000 + i}" for i in range(200))
    stmt = parse(f"SELECT A FROM s WHERE {where};")
    assert isinstance(stmt, A.Query) and isinstance(stmt.select.where, A.Logical)
    assert len(stmt.select.where.operands) == 200
    out, _ = run_select(f"SELECT A FROM s WHERE {where} AND F;", [[1, "", True, None]] * 2)
    assert out == [(1,), (1,)]
    out, _ = run_select(f"SELECT A FROM s WHERE {where} AND F;", [[1001, "", True, None]])
    assert out == []
    ors = " OR ".join(f"A = {i}" for i in range(200))
    out, _ = run_select(
        f"SELECT A FROM s WHERE {ors};", [[199, "", None, None], [200, "", None, None]]
    )
    assert out == [(199,)]


@pytest.mark.parametrize(
    ("values", "expected_and", "expected_or"),
    [
        ((True, True, True), True, True),
        ((True, None, True), None, True),
        ((None, False, None), False, None),
        ((False, False, False), False, False),
        ((None, None, True), None, True),
    ],
)
def test_n_ary_and_or_keep_three_valued_logic(
    values: tuple[bool | None, ...], expected_and: bool | None, expected_or: bool | None
) -> None:
    def lit(v: bool | None) -> str:
        return "CAST(NULL AS BOOLEAN)" if v is None else str(v).upper()

    and_sql = " AND ".join(lit(v) for v in values)
    or_sql = " OR ".join(lit(v) for v in values)
    out, _ = run_select(f"SELECT {and_sql} AS X, {or_sql} AS Y FROM s;", [[0, "", None, None]])
    assert out == [(expected_and, expected_or)]


def test_a_hundred_nested_parentheses_compile_and_evaluate() -> None:
    nested = "(" * 100 + "A" + " + 1)" * 100
    out, source = run_select(
        f"SELECT {nested} AS N FROM s WHERE {nested} > 0;", [[5, "", None, None]]
    )
    assert out == [(105,)]
    # the tree is 101 levels deep; the source nests a bounded number of them
    assert max_paren_depth(source) < 100


def test_nesting_everything_within_limits_works() -> None:
    depth = MAX_NESTING - 8
    calls = "ABS(" * depth + "A" + ")" * depth
    negations = "NOT " * depth + "F"
    minus = "- " * depth + "A"
    out, _ = run_select(
        f"SELECT {calls} AS C, {negations} AS N, {minus} AS M FROM s;", [[-3, "", True, None]]
    )
    assert out == [(3, depth % 2 == 0, 3 if depth % 2 else -3)]
    nested_type = "ARRAY<" * 60 + "INT" + ">" * 60
    parse(f"CREATE STREAM x (a {nested_type}) WITH (kafka_topic='x', value_format='JSON');")


def max_paren_depth(source: str) -> int:
    depth = deepest = 0
    for ch in source:
        depth += ch == "("
        depth -= ch == ")"
        deepest = max(deepest, depth)
    return deepest


# ------------------------------------------------------------------ beyond the limits: 40001


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "(" * (MAX_NESTING + 1) + "A" + ")" * (MAX_NESTING + 1) + " FROM s;",
        "SELECT " + "ABS(" * 5000 + "A" + ")" * 5000 + " FROM s;",
        "SELECT " + "NOT " * 5000 + "F FROM s;",
        "SELECT " + "- " * 5000 + "A FROM s;",
        "SELECT " + "ARRAY[" * 3000 + "1" + "]" * 3000 + " FROM s;",
        "SELECT " + "CASE WHEN F THEN " * 2000 + "1" + " END" * 2000 + " FROM s;",
        "CREATE STREAM x (a " + "ARRAY<" * 3000 + "INT" + ">" * 3000 + ") WITH (kafka_topic='x');",
        "SELECT " + " + ".join(["A"] * (MAX_EXPRESSION_DEPTH + 1)) + " FROM s;",
        "SELECT A FROM s WHERE A IN (" + ", ".join(["1"] * MAX_EXPRESSION_NODES) + ");",
        "SELECT " + "(" * 100_000 + " FROM s;",
    ],
)
def test_statements_beyond_the_limits_are_parse_errors_not_recursion(sql: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(sql)
    message = str(caught.value)
    assert "too deep" in message or "too deeply" in message or "too large" in message
    error = as_statement_error(caught.value, sql)
    assert error.error_code == 40001


def test_a_statement_too_long_for_the_command_topic_is_refused_before_planning() -> None:
    literal = "x" * MAX_RECORDED_STATEMENT_CHARS
    csas = f"CREATE STREAM o AS SELECT * FROM s WHERE S = '{literal}';"
    with pytest.raises(ParseError, match="Statement too large"):
        check_recordable(parse(csas), csas)
    insert = f"INSERT INTO s (S) VALUES ('{literal}');"  # not kept in the command topic
    check_recordable(parse(insert), insert)
    short = "CREATE STREAM o AS SELECT * FROM s WHERE S = 'x';"
    check_recordable(parse(short), short)


def test_limits_are_what_the_docs_say() -> None:
    docs = (ROOT / "docs" / "ksql-engine.md").read_text()
    limits = (MAX_NESTING, MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_NODES, MAX_RECORDED_STATEMENT_CHARS)
    for value in limits:
        assert f"{value:,}" in docs or str(value) in docs


# ------------------------------------------------------------------ literals never become source


def test_literals_and_names_are_constants_not_source() -> None:
    secret = "s3cr3t-" + "x" * 5000
    sql = (
        f"SELECT S = '{secret}' AS `weird'name\\n`, S LIKE '%{secret}%' ESCAPE '!' AS L, "
        f"STRUCT(`f'ield` := A) AS T, ST->X AS Y, 12345678901 AS BIG, 1.25 AS DEC, 2.5e3 AS DBL "
        f"FROM s WHERE S <> '{secret}';"
    )
    out, source = run_select(sql, [["1", "abc", None, {"X": 7}]])
    assert secret[:20] not in source
    for name in ("weird", "f'ield", "12345678901", "1.25", "2500"):
        assert name not in source, name
    assert out[0][0] is False and out[0][3] == 7 and out[0][4] == 12345678901
    small = "SELECT S = 'a' AS X FROM s WHERE S <> 'b';"
    big = f"SELECT S = '{'a' * 1_000_000}' AS X FROM s WHERE S <> '{'b' * 1_000_000}';"
    assert len(run_select(small, [])[1]) == len(run_select(big, [])[1])


def test_a_huge_literal_is_scanned_in_linear_memory() -> None:
    literal = "ab''c" * 400_000  # 2 MB with 400,000 doubled quotes
    stmt = parse(f"INSERT INTO s (S) VALUES ('{literal}');")
    assert isinstance(stmt, A.InsertValues)
    value = stmt.values[0]
    assert isinstance(value, A.Literal) and value.value == literal.replace("''", "'")


# ------------------------------------------------------------------ surrogates and redaction


@pytest.mark.parametrize("sql", ["SELECT '\ud800' FROM s;", "SELECT `a\udfff` FROM s;", "\udc00"])
def test_a_lone_surrogate_is_a_parse_error(sql: str) -> None:
    with pytest.raises(ParseError, match="surrogate"):
        split_statements(sql)
    with pytest.raises(ParseError, match="surrogate"):
        parse(sql)


def test_redaction_works_on_tokens() -> None:
    sql = (
        "INSERT INTO t (a, `b'c`, \"d'e\") VALUES ('secret', 'it''s -- not a comment', "
        "'/* nor this */'); -- a 'comment' stays\nSELECT 'x"
    )
    redacted = redact(sql)
    assert "secret" not in redacted and "not a comment" not in redacted
    assert "nor this" not in redacted and "'x" not in redacted
    assert "`b'c`" in redacted and '"d\'e"' in redacted
    assert redacted.count(REDACTED) == 3
    assert "-- a 'comment' stays" in redacted
    assert redact("SELECT '\ud800'") == f"SELECT {REDACTED}"
    assert "\\ud800" in redact("SELECT `\ud800`")


def test_engine_logs_failed_statements_redacted(caplog: pytest.LogCaptureFixture) -> None:
    from services.ksql_server.parser.lexer import redact as lexer_redact

    with caplog.at_level(logging.ERROR):
        logging.getLogger("fraudstream.ksql.engine").error(
            "statement failed: %s", lexer_redact("INSERT INTO t VALUES ('card 4111');")
        )
    assert "4111" not in caplog.text and REDACTED in caplog.text


# ------------------------------------------------------------------ the error mapping


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ParseError("line 1:1: Syntax Error"), 40001),
        (KsqlError("SELECT column 'X' cannot be resolved."), 40001),
        (RecursionError("maximum recursion depth exceeded"), 40001),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), 40001),
        (RuntimeError("secret 4111 internals"), 50000),
        (KeyError("x"), 50000),
    ],
)
def test_statement_failures_map_to_ksqldb_codes_without_python_names(
    exc: Exception, code: int
) -> None:
    error = as_statement_error(exc, "STATEMENT", [{"@type": "x"}])
    assert isinstance(error, KsqlStatementError)
    assert error.error_code == code and error.entities == [{"@type": "x"}]
    assert type(exc).__name__ not in error.message
    if code == 50000:
        assert "4111" not in error.message


def test_record_too_large_is_the_clients_mistake() -> None:
    from confluent_kafka import KafkaError, KafkaException

    exc = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))
    assert as_statement_error(exc, "INSERT …").error_code == 40001
    other = KafkaException(KafkaError(KafkaError._TRANSPORT, "down"))
    assert as_statement_error(other, "INSERT …").error_code == 50000


def test_errors_quote_a_bounded_part_of_the_statement() -> None:
    assert clip("abc") == "abc"
    long = "x" * 200_000
    clipped = clip(long)
    assert len(clipped) < 70_000 and "more characters not shown" in clipped
    with pytest.raises(ParseError) as caught:
        parse("SELECT " + "'" + long + "' FROM")
    assert len(str(caught.value)) < 70_000


# ------------------------------------------------------------------ the log rotates


def test_server_output_log_rotates_by_size(tmp_path: Path) -> None:
    """A server started as the stack starts it (output appended to a file) rotates that file,
    its stray stdout included, and keeps a bounded number of old files."""
    log = tmp_path / "ksql-server.log"
    code = (
        "import logging\n"
        "from services.common.logs import setup_logging\n"
        "setup_logging()\n"
        "for i in range(400):\n"
        "    logging.getLogger('t').info('line %d %s', i, 'y' * 60)\n"
        "    if i % 50 == 0: print('stray', i, flush=True)\n"
        "print('last words', flush=True)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FRAUDSTREAM_LOG_MAX_BYTES": "4000",
        "FRAUDSTREAM_LOG_BACKUPS": "3",
    }
    with open(log, "ab") as out:
        subprocess.run(
            [sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT, env=env, check=True
        )
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "ksql-server.log",
        "ksql-server.log.1",
        "ksql-server.log.2",
        "ksql-server.log.3",
    ]
    for path in tmp_path.iterdir():
        assert path.stat().st_size <= 4000 + 200
    current = log.read_text()
    assert "line 399" in current and "last words" in current
