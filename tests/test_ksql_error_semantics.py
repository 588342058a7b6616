"""ksqlDB's error rules that hold for every statement, not one conformance case: where an error
points (`Line: L, Col: C:` counted in the request), which names a persistent projection may not
produce, what GROUP BY and PARTITION BY parse, and the hints and wordings ksqlDB gives.

Fast: parser, planner and metastore only, no broker."""

from __future__ import annotations

import pytest
from ksql_planner_support import metastore_of, select_of

from services.ksql_conformance.qtt import as_script
from services.ksql_conformance.udfs import bad_udf, register_test_functions
from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError, LocatedError, UnsupportedError, line_col
from services.ksql_server.formats.base import validate_format
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.metastore import DataSource
from services.ksql_server.parser import ParseError, parse, split_statements_at
from services.ksql_server.parser import ast as A
from services.ksql_server.planner.plan import plan_select


def _source(name: str, kind: str = "STREAM", values: tuple[str, ...] = ("F0",)) -> DataSource:
    return DataSource(
        name,
        kind,
        name.lower(),
        [("K", T.STRING)],
        [(v, T.INTEGER) for v in values],
        FormatInfo("KAFKA"),
        FormatInfo("JSON"),
        "",
    )


# ----------------------------------------------------------------------------- locations


def test_statements_know_their_line_in_the_request() -> None:
    sql = "SHOW STREAMS;\nSHOW TABLES;\n\n  -- note\n  LIST TOPICS;\n"
    assert split_statements_at(sql) == [
        ("SHOW STREAMS;", 1),
        ("SHOW TABLES;", 2),
        ("-- note\n  LIST TOPICS;", 4),
    ]


def test_line_col_counts_from_the_statement_first_line() -> None:
    assert line_col("SELECT a\nFROM b", 9) == (2, 1)
    assert line_col("SELECT a", 7, first_line=3) == (3, 8)


def test_located_error_reads_as_ksqldb_prefixes_it() -> None:
    err = LocatedError("Column 'F0' is ambiguous.", 5, "Exception while preparing statement: ")
    assert str(err.located("ab\ncdefg", 2)) == (
        "Exception while preparing statement: Line: 3, Col: 3: Column 'F0' is ambiguous."
    )
    assert str(LocatedError("plain", -1).located("x")) == "plain"  # a node a rewrite made


def test_parse_errors_count_lines_in_the_request() -> None:
    with pytest.raises(ParseError, match=r"^line 2:64: Syntax Error"):
        parse("CREATE TABLE OUTPUT AS SELECT COUNT(*) FROM TEST GROUP BY DATA AND ID;", 2)


def test_column_references_remember_where_they_start_without_changing_equality() -> None:
    select = select_of("CREATE STREAM O AS SELECT I1.K, F0 FROM I1;")
    refs = [item.expr for item in select.items]
    assert [r.pos for r in refs if isinstance(r, A.ColumnRef)] == [26, 32]
    assert refs[1] == A.ColumnRef("F0")


def test_join_errors_point_at_the_column() -> None:
    store = metastore_of(_source("INPUT_1"), _source("INPUT_2"))
    text = (
        "CREATE STREAM OUTPUT as SELECT I1.K, F0 FROM INPUT_1 i1 JOIN INPUT_2 i2 "
        "WITHIN 10 SECONDS ON i1.K = i2.K;"
    )
    with pytest.raises(LocatedError) as info:
        plan_select(select_of(text), store, persistent=True)
    assert str(info.value.located(text, 3)) == (
        "Exception while preparing statement: Line: 3, Col: 38: Column 'F0' is ambiguous. "
        "Could be I1.F0 or I2.F0."
    )
    bad_on = (
        "CREATE STREAM O AS SELECT * FROM INPUT_1 T JOIN INPUT_2 TT WITHIN 1 SECOND "
        "ON T.IID = TT.K;"
    )
    with pytest.raises(LocatedError) as info:
        plan_select(select_of(bad_on), store, persistent=True)
    assert str(info.value.located(bad_on)) == (
        f"Line: 1, Col: {bad_on.index('T.IID') + 1}: JOIN ON column 'T.IID' cannot be resolved."
    )


def test_qtt_script_puts_each_statement_on_its_line() -> None:
    assert as_script(["A;", "B\nC;", "D;"]) == ["A;", "\nB\nC;", "\n\n\nD;"]


# ----------------------------------------------------------------------------- select rules


@pytest.mark.parametrize(
    "sql, name",
    [
        (
            "CREATE STREAM O AS SELECT l.K, l.ROWTIME AS ROWTIME, F0 FROM L l JOIN R r "
            "WITHIN 1 SECONDS ON l.K = r.K;",
            "ROWTIME",
        ),
        (
            "CREATE TABLE O AS SELECT K, WINDOWSTART, COUNT(*) FROM L GROUP BY WINDOWSTART;",
            "WINDOWSTART",
        ),
        ("CREATE STREAM O AS SELECT K, F0 AS ROWPARTITION FROM L;", "ROWPARTITION"),
    ],
)
def test_a_persistent_projection_may_not_name_a_system_column(sql: str, name: str) -> None:
    store = metastore_of(_source("L"), _source("R", values=("F1",)))
    with pytest.raises(KsqlError, match=f"^Reserved column name in select: `{name}`. Please"):
        plan_select(select_of(sql), store, persistent=True)


def test_a_transient_query_may_select_rowtime() -> None:
    select = parse("SELECT K, ROWTIME FROM L EMIT CHANGES;")
    assert isinstance(select, A.Query)
    plan_select(select.select, metastore_of(_source("L")), persistent=False)


@pytest.mark.parametrize("clause", ["GROUP BY", "PARTITION BY"])
def test_group_and_partition_by_take_value_expressions(clause: str) -> None:
    with pytest.raises(ParseError, match="Syntax Error"):
        parse(f"CREATE TABLE O AS SELECT COUNT(*) FROM T {clause} A AND B;")
    select = select_of(f"CREATE TABLE O AS SELECT COUNT(*) FROM T {clause} (A + B) * 2, C || 'x';")
    exprs = select.group_by if clause == "GROUP BY" else select.partition_by
    assert len(exprs) == 2


def test_a_window_may_carry_a_name() -> None:
    select = select_of(
        "CREATE TABLE O AS SELECT ID, COUNT(*) FROM I WINDOW w SESSION (1 SECONDS) GROUP BY ID;"
    )
    assert select.window is not None and select.window.kind == "SESSION"


def test_undo_free_aggregates_are_named_in_query_order() -> None:
    table = DataSource(
        "INPUT",
        "TABLE",
        "t",
        [("ID", T.BIGINT)],
        [("F0", T.INTEGER), ("F1", T.BIGINT)],
        FormatInfo("KAFKA"),
        FormatInfo("JSON"),
        "",
    )
    sql = (
        "CREATE TABLE O AS SELECT ID, LATEST_BY_OFFSET(F0), MIN(F1), MAX(F1) FROM INPUT "
        "GROUP BY ID;"
    )
    with pytest.raises(
        KsqlError, match=r"^The aggregation functions LATEST_BY_OFFSET, MIN and MAX cannot"
    ):
        plan_select(select_of(sql), metastore_of(table), persistent=True)
    one = "CREATE TABLE O AS SELECT ID, MIN(F1) FROM INPUT GROUP BY ID;"
    with pytest.raises(KsqlError, match=r"^The aggregation function MIN cannot"):
        plan_select(select_of(one), metastore_of(table), persistent=True)


# ----------------------------------------------------------------------------- wordings


def test_unknown_source_hints_at_the_other_case() -> None:
    store = metastore_of(_source("input"), _source("OTHER"))
    assert store.alternatives("INPUT") == (
        '\nDid you mean "input"? Hint: wrap the source name in double quotes to make it '
        "case-sensitive."
    )
    assert store.alternatives("other") == (
        "\nDid you mean OTHER? Hint: try removing double quotes from the source name."
    )
    assert store.alternatives("NOPE") == ""


def test_kafka_key_errors_name_no_column_delimited_ones_do() -> None:
    with pytest.raises(KsqlError) as info:
        validate_format(FormatInfo("KAFKA"), [("KEY", T.decimal(2, 1))], True)
    assert str(info.value).endswith("reason: The 'KAFKA' format does not support type 'DECIMAL'")
    with pytest.raises(KsqlError, match=r"column: `K`$"):
        validate_format(FormatInfo("DELIMITED"), [("K", T.array(T.DOUBLE))], True)


@pytest.mark.parametrize(
    "literal, message",
    [
        ("9223372036854775808", "line 1:26: Invalid numeric literal: 9223372036854775808"),
        ("1.7976931348623159E308", "line 1:26: Number overflows DOUBLE: 1.7976931348623159E308"),
    ],
)
def test_literals_out_of_range_say_where(literal: str, message: str) -> None:
    with pytest.raises(ParseError, match=f"^Failed to prepare statement: {message}$"):
        parse(f"SELECT K FROM T WHERE K={literal} EMIT CHANGES;")


def test_bad_udf_throws_as_ksqldbs_test_function_does() -> None:
    register_test_functions()
    with pytest.raises(RuntimeError, match="boom"):
        bad_udf((T.INTEGER,), 1)
    assert bad_udf((T.BOOLEAN,), False) == 0
    with pytest.raises(RuntimeError):
        bad_udf((T.BOOLEAN,), True)
    from services.ksql_server.functions.registry import lookup

    fn = lookup("BAD_UDF")
    assert fn is not None and fn.check([T.INTEGER]) == T.STRING
    with pytest.raises(UnsupportedError, match="per-query call counter"):
        fn.check([T.STRING])


# ----------------------------------------------------------------------------- timestamps


def test_two_digit_years_read_as_java_reads_them() -> None:
    from services.ksql_server.functions.timefmt import parse_millis

    # DateTimeFormatter (TIMESTAMP_FORMAT, PARSE_TIMESTAMP): 2000-2099
    assert parse_millis("10-04-19 12:00:17Z", "yy-MM-dd HH:mm:ssX") == 1271678417000
    assert parse_millis("2010-04-19 12:00:17Z", "yyyy-MM-dd HH:mm:ssX") == 1271678417000


@pytest.mark.parametrize(
    "props, expected",
    [
        ({}, False),
        ({"ksql.timestamp.throw.on.invalid": "true"}, True),
        ({"ksql.timestamp.throw.on.invalid": False}, False),
    ],
)
def test_throw_on_invalid_timestamp_switch(props: dict[str, object], expected: bool) -> None:
    from services.ksql_server.runtime.processor import throw_on_invalid

    assert throw_on_invalid(props) is expected


# ----------------------------------------------------------------------------- type parameters


def test_named_types_take_and_ignore_ksqldb_type_parameters() -> None:
    stmt = parse("CREATE STREAM I (k VARCHAR(STRING) KEY, v VARCHAR(10)) WITH (kafka_topic='i');")
    assert isinstance(stmt, A.CreateSource) and stmt.columns is not None
    assert [c.type for c in stmt.columns] == [T.STRING, T.STRING]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "CREATE STREAM I (K INT (KEY)) WITH (kafka_topic='i');",
            "line 1:25: Syntax Error\nExpecting {'STRING', INTEGER_VALUE}\nStatement: ",
        ),
        (
            "CREATE STREAM I (K VARCHAR(STRING) (KEY)) WITH (kafka_topic='i');",
            "line 1:36: Syntax Error\nExpecting {',', ')'}\nStatement: ",
        ),
    ],
)
def test_column_list_errors_name_what_ksqldb_expects(text: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(text)
    assert str(info.value) == message + text


def test_alter_parses_and_source_tables_refuse_it() -> None:
    from services.ksql_server.table_rules import check_alter

    stmt = parse("ALTER TABLE INPUT ADD COLUMN newCol INT, ADD b STRING;")
    assert isinstance(stmt, A.AlterSource)
    assert [(c.name, c.type) for c in stmt.columns] == [("NEWCOL", T.INTEGER), ("B", T.STRING)]
    source = _source("INPUT", "TABLE")
    source.is_source = True
    with pytest.raises(KsqlError, match=r"^Cannot alter table 'INPUT': ALTER operations are not"):
        check_alter(stmt, source)
    with pytest.raises(KsqlError, match=r"^Source INPUT does not exist"):
        check_alter(stmt, None)


def test_a_qualified_system_column_in_a_join_is_named_after_its_source() -> None:
    """`S.ROWTIME` in a join's projection becomes `S_ROWTIME`: no reserved name (joins.json)."""
    store = metastore_of(_source("L"), _source("R", values=("F1",)))
    sql = (
        "CREATE STREAM O AS SELECT *, l.ROWTIME, r.ROWTIME FROM L l JOIN R r "
        "WITHIN 1 SECONDS ON l.K = r.K;"
    )
    plan = plan_select(select_of(sql), store, persistent=True)
    assert {"L_ROWTIME", "R_ROWTIME"} <= {name for name, _type in plan.value_columns}
