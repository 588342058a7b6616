"""Parser: ksqlDB statements → trees, identifier rules, and syntax errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.ksql_server.parser import ParseError, parse, parse_expression, split_statements
from services.ksql_server.parser import ast as A
from services.ksql_server.types import BIGINT, DOUBLE, INTEGER, STRING, decimal


def test_create_stream_columns_and_with() -> None:
    stmt = parse(
        "CREATE STREAM IF NOT EXISTS src (Id BIGINT KEY, `TIMESTAMP` VARCHAR, amount DOUBLE, "
        "d DECIMAL(10, 2)) WITH (KAFKA_TOPIC='t', VALUE_FORMAT='DELIMITED', PARTITIONS=3);"
    )
    assert isinstance(stmt, A.CreateSource)
    assert stmt.name == "SRC" and stmt.if_not_exists and stmt.kind == "STREAM"
    assert stmt.columns is not None
    assert [(c.name, c.type, c.key) for c in stmt.columns] == [
        ("ID", BIGINT, True),
        ("TIMESTAMP", STRING, False),
        ("AMOUNT", DOUBLE, False),
        ("D", decimal(10, 2), False),
    ]
    assert stmt.props == {"KAFKA_TOPIC": "t", "VALUE_FORMAT": "DELIMITED", "PARTITIONS": 3}


def test_identifiers_unquoted_upper_quoted_kept() -> None:
    stmt = parse("SELECT `mixedCase`, plain FROM `Src` EMIT CHANGES;")
    assert isinstance(stmt, A.Query)
    names = [i.expr.name for i in stmt.select.items if isinstance(i.expr, A.ColumnRef)]
    assert names == ["mixedCase", "PLAIN"]
    assert stmt.select.source.name == "Src"
    assert stmt.select.emit_changes


def test_csas_with_where_partition_by_limit() -> None:
    stmt = parse(
        "CREATE STREAM out WITH (VALUE_FORMAT='AVRO') AS SELECT id, amount * 2 AS a "
        "FROM src WHERE class IS NOT NULL AND amount BETWEEN 1 AND 10 PARTITION BY id;"
    )
    assert isinstance(stmt, A.CreateSource) and stmt.query is not None
    sel = stmt.query
    assert [i.alias for i in sel.items] == [None, "A"]
    assert isinstance(sel.where, A.Logical) and sel.where.op == "AND"
    assert len(sel.where.operands) == 2
    assert sel.partition_by == [A.ColumnRef("ID")]


def test_expression_precedence_and_literals() -> None:
    e = parse_expression("1 + 2 * 3 = 7 OR NOT x")
    assert isinstance(e, A.Logical) and e.op == "OR"
    assert isinstance(e.operands[0], A.Binary) and e.operands[0].op == "="
    assert parse_expression("1.50") == A.Literal(Decimal("1.50"), decimal(3, 2))
    assert parse_expression("1.5e0").type == DOUBLE  # type: ignore[attr-defined]
    assert parse_expression("2147483647") == A.Literal(2147483647, INTEGER)
    assert parse_expression("2147483648") == A.Literal(2147483648, BIGINT)
    assert parse_expression("-2147483648") == A.Literal(-2147483648, INTEGER)
    like = parse_expression("name NOT LIKE 'a!%%' ESCAPE '!'")
    assert isinstance(like, A.Like) and like.negated and like.escape == "!"


def test_case_cast_in_subscript() -> None:
    e = parse_expression("CASE WHEN a IN (1, 2) THEN CAST(b AS DECIMAL(4, 2)) ELSE arr[1] END")
    assert isinstance(e, A.Case)
    assert isinstance(e.whens[0][0], A.InList)
    assert isinstance(e.default, A.Subscript)


def test_other_statements() -> None:
    assert isinstance(parse("DROP STREAM IF EXISTS s DELETE TOPIC;"), A.DropSource)
    assert parse("TERMINATE CSAS_S_1;") == A.Terminate("TERMINATE CSAS_S_1;", "CSAS_S_1")
    show = parse("LIST STREAMS;")
    assert isinstance(show, A.Show) and show.what == "STREAMS"
    assert isinstance(parse("DESCRIBE EXTENDED s;"), A.Describe)
    set_ = parse("SET 'auto.offset.reset'='earliest';")
    assert isinstance(set_, A.SetProperty) and set_.value == "earliest"
    ins = parse("INSERT INTO s (id, v) VALUES (1, 'x');")
    assert isinstance(ins, A.InsertValues) and ins.columns == ["ID", "V"]


def test_describe_both_forms_and_explain() -> None:
    """`DESCRIBE <source> EXTENDED` is ksqlDB's documented form; the older
    `DESCRIBE EXTENDED <source>` still parses; EXPLAIN takes a query id or a statement."""
    assert parse("DESCRIBE s EXTENDED;") == A.Describe("DESCRIBE s EXTENDED;", "S", True)
    assert parse("DESCRIBE EXTENDED s;") == A.Describe("DESCRIBE EXTENDED s;", "S", True)
    assert parse("DESCRIBE `s`;") == A.Describe("DESCRIBE `s`;", "s", False)
    assert parse("EXPLAIN CSAS_S_1;") == A.Explain("EXPLAIN CSAS_S_1;", query_id="CSAS_S_1")
    explained = parse("EXPLAIN CREATE STREAM t AS SELECT * FROM s;")
    assert isinstance(explained, A.Explain) and explained.query_id is None
    assert isinstance(explained.statement, A.CreateSource)
    assert explained.statement.text == "CREATE STREAM t AS SELECT * FROM s;"
    select = parse("explain SELECT * FROM s EMIT CHANGES;")
    assert isinstance(select, A.Explain) and isinstance(select.statement, A.Query)
    with pytest.raises(ParseError):
        parse("DESCRIBE s EXTENDED EXTENDED;")
    with pytest.raises(ParseError):
        parse("EXPLAIN;")


def test_stateful_clauses_parse_into_the_tree() -> None:
    stmt = parse("SELECT k, COUNT(*) FROM s GROUP BY k HAVING COUNT(*) > 1 EMIT CHANGES;")
    assert isinstance(stmt, A.Query)
    assert stmt.select.group_by == [A.ColumnRef("K")] and stmt.select.having is not None
    join = parse("SELECT * FROM a LEFT OUTER JOIN b WITHIN 1 SECOND ON a.k = b.k EMIT CHANGES;")
    assert isinstance(join, A.Query)
    (clause,) = join.select.joins
    assert (clause.kind, clause.relation.name, clause.within_ms) == ("LEFT", "B", (1000, 1000))


def test_window_clauses_read_ksqldb_units() -> None:
    stmt = parse(
        "SELECT k, COUNT(*) FROM s WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 10 MINUTES, "
        "RETENTION 2 DAYS, GRACE PERIOD 1 SECOND) GROUP BY (k, j) EMIT FINAL;"
    )
    assert isinstance(stmt, A.Query)
    assert stmt.select.window == A.WindowSpec("HOPPING", 3_600_000, 600_000, 172_800_000, 1000)
    assert len(stmt.select.group_by) == 2 and stmt.select.emit_final
    session = parse("SELECT k, COUNT(*) FROM s WINDOW SESSION (30 SECONDS) GROUP BY k;")
    assert isinstance(session, A.Query) and session.select.window == A.WindowSpec("SESSION", 30_000)
    with pytest.raises(ParseError):
        parse("SELECT k FROM s WINDOW HOPPING (SIZE 1 HOUR) GROUP BY k;")
    with pytest.raises(ParseError):
        parse("SELECT k FROM s WINDOW TUMBLING (SIZE 1 FORTNIGHT) GROUP BY k;")


@pytest.mark.parametrize(
    "bad",
    [
        "SELEC * FROM s;",
        "CREATE STREAM (;",
        "SELECT FROM;",
        "DROP s;",
        "SELECT 'unterminated FROM s;",
    ],
)
def test_syntax_errors(bad: str) -> None:
    with pytest.raises(ParseError):
        parse(bad)


def test_split_statements_respects_strings_and_comments() -> None:
    sql = "-- a comment; with a semicolon\nSHOW STREAMS; SELECT 'a;b' FROM x;\n"
    parts = split_statements(sql)
    assert parts[-1] == "SELECT 'a;b' FROM x;"
    assert len(parts) == 2
