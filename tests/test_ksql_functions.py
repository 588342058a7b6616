"""ksqlDB's scalar function library: every documented function is registered, each with
ksqlDB's return type, null handling and the edge cases its documentation and UDF code give.

Expressions go through the real compiler (`evaluate` from test_ksql_engine_expressions: the
row has I=7, B=10_000_000_000, D=2.5, S='Hello', M=1.25, F=true), so the time-unit keywords,
lambdas and argument typing are exercised as a statement would. The runtime's column-wise fast
path copies columns and tests IS NULL only (runtime/columnar.py): no function has a fast path,
so there is no second implementation to compare.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_ksql_engine_expressions import ROW, evaluate

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.functions import FUNCTIONS, lookup
from services.ksql_server.functions.lambdas import LAMBDA_FUNCTIONS

DOCUMENTED = """
ABS ACOS ASIN AS_VALUE ATAN ATAN2 CBRT CEIL COS COSH COT DEGREES ENTRIES EXP FLOOR
GENERATE_SERIES GEO_DISTANCE GREATEST LEAST LN LOG PI POWER RADIANS RANDOM ROUND SIGN SIN SINH
SQRT TAN TANH TRUNC ARRAY_CONCAT ARRAY_CONTAINS ARRAY_DISTINCT ARRAY_EXCEPT ARRAY_INTERSECT
ARRAY_JOIN ARRAY_LENGTH ARRAY_MAX ARRAY_MIN ARRAY_REMOVE ARRAY_SORT ARRAY_UNION AS_MAP ELT
FIELD FILTER JSON_ARRAY_CONTAINS MAP_KEYS MAP_UNION MAP_VALUES REDUCE SLICE TRANSFORM CHR
CONCAT CONCAT_WS ENCODE EXTRACTJSONFIELD FROM_BYTES INITCAP INSTR IS_JSON_STRING
JSON_ARRAY_LENGTH JSON_CONCAT JSON_ITEMS JSON_KEYS JSON_RECORDS LCASE LEN LPAD MASK
MASK_KEEP_LEFT MASK_KEEP_RIGHT MASK_LEFT MASK_RIGHT REPLACE REGEXP_EXTRACT REGEXP_EXTRACT_ALL
REGEXP_REPLACE REGEXP_SPLIT_TO_ARRAY RPAD SPLIT SPLIT_TO_MAP SUBSTRING TO_BYTES TO_JSON_STRING
TRIM UCASE UUID COALESCE IFNULL NULLIF CONVERT_TZ DATEADD DATESUB DATETOSTRING FORMAT_DATE
FORMAT_TIME FORMAT_TIMESTAMP FROM_DAYS FROM_UNIXTIME PARSE_DATE PARSE_TIME PARSE_TIMESTAMP
STRINGTODATE STRINGTOTIMESTAMP TIMEADD TIMESUB TIMESTAMPADD TIMESTAMPSUB TIMESTAMPTOSTRING
UNIX_DATE UNIX_TIMESTAMP URL_DECODE_PARAM URL_ENCODE_PARAM URL_EXTRACT_FRAGMENT
URL_EXTRACT_HOST URL_EXTRACT_PARAMETER URL_EXTRACT_PATH URL_EXTRACT_PORT URL_EXTRACT_PROTOCOL
URL_EXTRACT_QUERY
""".split()  # noqa: SIM905 - a word list reads best as text
"""ksqlDB's scalar-functions reference page (ARRAY, MAP, STRUCT and CAST are syntax)."""


def test_every_documented_function_is_registered() -> None:
    missing = [n for n in DOCUMENTED if n not in FUNCTIONS and n not in LAMBDA_FUNCTIONS]
    assert missing == []


S, I64, D, INT = T.STRING, T.BIGINT, T.DOUBLE, T.INTEGER


@pytest.mark.parametrize(
    ("expr", "value", "typ"),
    [
        # strings
        ("CHR(75)", "K", S),
        ("CHR('\\u004b')", "K", S),
        ("CHR('K')", None, S),
        ("CHR(-1)", None, S),
        ("ENCODE('Hello', 'utf8', 'hex')", "48656c6c6f", S),
        ("ENCODE('48656c6c6f', 'hex', 'base64')", "SGVsbG8=", S),
        ("ENCODE('SGVsbG8=', 'base64', 'utf8')", "Hello", S),
        ("TO_BYTES('AQID', 'base64')", b"\x01\x02\x03", T.BYTES),
        ("FROM_BYTES(TO_BYTES('0aff', 'hex'), 'hex')", "0aff", S),
        ("FROM_BYTES(TO_BYTES('Hé', 'utf8'), 'base64')", "SMOp", S),
        ("INITCAP('the  quICK fox')", "The  Quick Fox", S),
        ("SPLIT_TO_MAP('a=1/b=2/c', '/', '=')", {"a": "1", "b": "2"}, T.map_of(S, S)),
        ("SPLIT_TO_MAP('a=1/a=2', '/', '=')", {"a": "2"}, T.map_of(S, S)),
        ("SPLIT_TO_MAP('a=1', '=', '=')", None, T.map_of(S, S)),
        ("SPLIT_TO_MAP('a=1', '', '=')", None, T.map_of(S, S)),
        ("REGEXP_EXTRACT('(\\w+) (\\w+)', 'hello world', 2)", "world", S),
        ("REGEXP_EXTRACT('x(\\d)', 'abc')", None, S),
        ("REGEXP_EXTRACT('(?<n>\\d+)', 'ab12c')", "12", S),
        ("REGEXP_EXTRACT_ALL('\\d', 'a1b2')", ["1", "2"], T.array(S)),
        ("REGEXP_EXTRACT_ALL('x', 'abc')", [], T.array(S)),
        ("REGEXP_REPLACE('baaac', 'a+', '$0-')", "baaa-c", S),
        ("REGEXP_REPLACE('abc', 'b(.)', 'X$1\\$')", "aXc$", S),
        ("REGEXP_SPLIT_TO_ARRAY('a-b--c-', '-+')", ["a", "b", "c", ""], T.array(S)),
        ("REGEXP_SPLIT_TO_ARRAY('abc', '')", ["a", "b", "c"], T.array(S)),
        ("LEN(UUID())", 36, INT),
        (
            "UUID(TO_BYTES('AAECAwQFBgcICQoLDA0ODw==', 'base64'))",
            "00010203-0405-0607-0809-0a0b0c0d0e0f",
            S,
        ),
        # JSON
        ('EXTRACTJSONFIELD(\'{"a": {"b": [1, 2.0, "x"]}}\', \'$.a.b[1]\')', "2.0", S),
        ('EXTRACTJSONFIELD(\'{"a": {"b": [1, 2.0, "x"]}}\', \'$.a.b[2]\')', "x", S),
        ("EXTRACTJSONFIELD('{\"a\": {\"b\": 1}}', '$.a')", '{"b":1}', S),
        ("EXTRACTJSONFIELD('{\"a b\": null}', '$[''a b'']')", "null", S),
        ("EXTRACTJSONFIELD('{\"a\": 1}', '$.b')", None, S),
        ("EXTRACTJSONFIELD('not json', '$.a')", None, S),
        ("JSON_ARRAY_CONTAINS('[1, 2.5, \"x\"]', 2.5)", True, T.BOOLEAN),
        ("JSON_ARRAY_CONTAINS('[1, 2]', '1')", False, T.BOOLEAN),
        ("JSON_ARRAY_CONTAINS('{\"a\": 1}', 1)", False, T.BOOLEAN),
        ("IS_JSON_STRING('[1, {\"a\": true}]')", True, T.BOOLEAN),
        ("IS_JSON_STRING('1')", True, T.BOOLEAN),
        ("IS_JSON_STRING('abc')", False, T.BOOLEAN),
        ("IS_JSON_STRING('')", False, T.BOOLEAN),
        ("JSON_ARRAY_LENGTH('[1, [2, 3]]')", 2, INT),
        ("JSON_ARRAY_LENGTH('{}')", None, INT),
        ('JSON_CONCAT(\'{"a": 1}\', \'{"a": 2, "b": 3}\')', '{"a":2,"b":3}', S),
        ("JSON_CONCAT('[1]', '{\"a\": 1}', '2')", '[1,{"a":1},2]', S),
        ("JSON_CONCAT('[1]', 'bad')", None, S),
        ('JSON_KEYS(\'{"b": 1, "a": {}}\')', ["b", "a"], T.array(S)),
        ("JSON_KEYS('[1]')", None, T.array(S)),
        ('JSON_RECORDS(\'{"a": [1, 2], "b": "x"}\')', {"a": "[1,2]", "b": '"x"'}, T.map_of(S, S)),
        ("JSON_ITEMS('[{\"a\": 1}, 1e10, null]')", ['{"a":1}', "1.0E10", "null"], T.array(S)),
        ("TO_JSON_STRING(STRUCT(A := 1, B := ARRAY[1.5e0, NULL]))", '{"A":1,"B":[1.5,null]}', S),
        ("TO_JSON_STRING(MAP('k' := 'v\"'))", '{"k":"v\\""}', S),
        ("TO_JSON_STRING(M)", "1.25", S),
        ("TO_JSON_STRING(TO_BYTES('AQ==', 'base64'))", '"AQ=="', S),
        ("TO_JSON_STRING(CAST(NULL AS STRING))", "null", S),
        # maths
        ("ACOS(2)", math.nan, D),
        ("ATAN2(1, 1)", math.pi / 4, D),
        ("CBRT(-27)", -3.0, D),
        ("DEGREES(PI())", 180.0, D),
        ("RADIANS(180)", math.pi, D),
        ("COT(0)", math.inf, D),
        ("LOG(100)", math.log(100), D),
        ("LOG(10, 100)", 2.0, D),
        ("LOG(1, 100)", math.nan, D),
        ("LOG(-2, 100)", math.nan, D),
        ("LOG(0)", -math.inf, D),
        ("TRUNC(D)", 2, I64),
        ("TRUNC(-2.7e0)", -2, I64),
        ("TRUNC(1.2345e0, 2)", 1.23, D),
        ("TRUNC(1234.5e0, -2)", 1200.0, D),
        ("TRUNC(M)", Decimal("1"), T.decimal(2, 0)),
        ("TRUNC(M, 1)", Decimal("1.20"), T.decimal(4, 2)),
        ("TRUNC(I)", 7, I64),
        ("GEO_DISTANCE(37.4439, -122.1663, 51.5257, -0.1122)", 8634.659796579546, D),
        ("GEO_DISTANCE(37.4439, -122.1663, 51.5257, -0.1122, 'MI')", 5365.659729188264, D),
        ("NULLIF(I, 7)", None, INT),
        ("NULLIF(I, 8)", 7, INT),
        ("RANDOM() BETWEEN 0 AND 1", True, T.BOOLEAN),
        # arrays and maps
        ("ARRAY_CONCAT(ARRAY[1, 2], ARRAY[2])", [1, 2, 2], T.array(INT)),
        ("ARRAY_CONCAT(CAST(NULL AS ARRAY<INT>), ARRAY[3])", [3], T.array(INT)),
        ("ARRAY_DISTINCT(ARRAY[1, NULL, 1, NULL, 2])", [1, None, 2], T.array(INT)),
        ("ARRAY_EXCEPT(ARRAY[1, 2, 3, 1], ARRAY[2])", [1, 3], T.array(INT)),
        ("ARRAY_INTERSECT(ARRAY[3, 1, 2, 1], ARRAY[1, 3])", [3, 1], T.array(INT)),
        ("ARRAY_UNION(ARRAY[1, 2], ARRAY[2, 3])", [1, 2, 3], T.array(INT)),
        ("ARRAY_REMOVE(ARRAY[1, NULL, 2, 1], 1)", [None, 2], T.array(INT)),
        ("ARRAY_REMOVE(ARRAY[1, NULL], NULL)", [1], T.array(INT)),
        ("ARRAY_JOIN(ARRAY[1.5e0, NULL, 2e0])", "1.5,null,2.0", S),
        ("ARRAY_JOIN(ARRAY[TRUE, FALSE], '|')", "true|false", S),
        ("ARRAY_MAX(ARRAY['a', NULL, 'c', 'b'])", "c", S),
        ("ARRAY_MIN(ARRAY[3, NULL, 1])", 1, INT),
        ("ARRAY_MIN(ARRAY[CAST(NULL AS INT)])", None, INT),
        ("ARRAY_SORT(ARRAY[3, NULL, 1, 2])", [1, 2, 3, None], T.array(INT)),
        ("ARRAY_SORT(ARRAY[3, NULL, 1, 2], 'desc')", [3, 2, 1, None], T.array(INT)),
        ("ARRAY_SORT(ARRAY[3, 1], 'sideways')", None, T.array(INT)),
        ("SLICE(ARRAY[1, 2, 3, 4], 2, 3)", [2, 3], T.array(INT)),
        ("SLICE(ARRAY[1, 2, 3, 4], 0, 3)", None, T.array(INT)),
        ("SLICE(ARRAY[1, 2], 1, 5)", None, T.array(INT)),
        ("ELT(2, 'a', 'b')", "b", S),
        ("ELT(3, 'a', 'b')", None, S),
        ("FIELD('b', 'a', 'b')", 2, INT),
        ("FIELD('z', 'a', 'b')", 0, INT),
        (
            "ENTRIES(MAP('b' := 1, 'a' := 2), TRUE)",
            [{"K": "a", "V": 2}, {"K": "b", "V": 1}],
            T.array(T.struct([("K", S), ("V", INT)])),
        ),
        ("GENERATE_SERIES(1, 10, 3)", [1, 4, 7, 10], T.array(INT)),
        ("GENERATE_SERIES(3, 1)", [3, 2, 1], T.array(INT)),  # no step: ksqlDB counts down
        ("GENERATE_SERIES(3, 1, -1)", [3, 2, 1], T.array(INT)),
        ("GENERATE_SERIES(B, B + 1)", [10**10, 10**10 + 1], T.array(I64)),
        (
            "AS_MAP(ARRAY['a', 'b', 'c'], ARRAY[1, 2])",
            {"a": 1, "b": 2, "c": None},
            T.map_of(S, INT),
        ),
        ("MAP_KEYS(MAP('a' := 1, 'b' := 2))", ["a", "b"], T.array(S)),
        ("MAP_VALUES(MAP('a' := 1, 'b' := 2))", [1, 2], T.array(INT)),
        ("MAP_UNION(MAP('a' := 1), MAP('a' := 2, 'b' := 3))", {"a": 2, "b": 3}, T.map_of(S, INT)),
        ("MAP_UNION(CAST(NULL AS MAP<STRING, INT>), MAP('a' := 2))", {"a": 2}, T.map_of(S, INT)),
        # lambdas
        ("TRANSFORM(ARRAY[1, 2, 3], x => x * I)", [7, 14, 21], T.array(INT)),
        (
            "TRANSFORM(MAP('a' := 1), (k, v) => UCASE(k), (k, v) => v + 1)",
            {"A": 2},
            T.map_of(S, INT),
        ),
        ("FILTER(ARRAY[1, NULL, 3], x => x > 1)", [3], T.array(INT)),
        ("FILTER(MAP('a' := 1, 'b' := 2), (k, v) => v > 1)", {"b": 2}, T.map_of(S, INT)),
        ("REDUCE(ARRAY[1, 2, 3], 0, (s, x) => s + x)", 6, INT),
        ("REDUCE(MAP('a' := 1, 'b' := 2), '', (s, k, v) => CONCAT(s, k))", "ab", S),
        ("REDUCE(CAST(NULL AS ARRAY<INT>), 5, (s, x) => s + x)", 5, INT),
        (
            "TRANSFORM(ARRAY[ARRAY[1], ARRAY[2, 3]], a => TRANSFORM(a, x => x + ARRAY_LENGTH(a)))",
            [[2], [4, 5]],
            T.array(T.array(INT)),
        ),
        # URLs
        ("URL_ENCODE_PARAM('a b~*é')", "a+b%7E*%C3%A9", S),
        ("URL_DECODE_PARAM('a+b%7E%C3%A9')", "a b~é", S),
        ("URL_EXTRACT_PROTOCOL('https://h.com:8080/a%20b?x=1&y=a%20b#fr%20ag')", "https", S),
        ("URL_EXTRACT_HOST('https://h.com:8080/a%20b?x=1&y=a%20b#fr%20ag')", "h.com", S),
        ("URL_EXTRACT_PORT('https://h.com:8080/a%20b?x=1&y=a%20b#fr%20ag')", 8080, INT),
        ("URL_EXTRACT_PORT('https://h.com/a')", None, INT),
        ("URL_EXTRACT_PATH('https://h.com:8080/a%20b?x=1&y=a%20b#fr%20ag')", "/a b", S),
        ("URL_EXTRACT_QUERY('https://h.com:8080/a%20b?x=1&y=a%20b#fr%20ag')", "x=1&y=a b", S),
        ("URL_EXTRACT_FRAGMENT('https://h.com:8080/a%20b?x=1&y=a%20b#fr%20ag')", "fr ag", S),
        ("URL_EXTRACT_FRAGMENT('https://h.com/')", None, S),
        ("URL_EXTRACT_PARAMETER('https://h.com/?x=1&y=a%20b', 'y')", "a b", S),
        ("URL_EXTRACT_PARAMETER('https://h.com/?x=1', 'z')", None, S),
        # date and time (TIMESTAMP: epoch ms, DATE: epoch days, TIME: ms of the day)
        ("TIMESTAMPADD(SECONDS, 5, FROM_UNIXTIME(1000))", 6000, T.TIMESTAMP),
        ("TIMESTAMPSUB(MINUTE, 1, FROM_UNIXTIME(0))", -60_000, T.TIMESTAMP),
        ("TIMESTAMPADD(MILLISECONDS, -1, FROM_UNIXTIME(0))", -1, T.TIMESTAMP),
        ("DATEADD(DAYS, 2, FROM_DAYS(10))", 12, T.DATE),
        ("DATEADD(HOURS, 47, FROM_DAYS(10))", 11, T.DATE),
        ("DATESUB(DAYS, 3, FROM_DAYS(10))", 7, T.DATE),
        ("TIMEADD(HOURS, 25, PARSE_TIME('10:00', 'HH:mm'))", 11 * 3_600_000, T.TIME),
        (
            "TIMESUB(MINUTES, 61, PARSE_TIME('00:30', 'HH:mm'))",
            23 * 3_600_000 + 29 * 60_000,
            T.TIME,
        ),
        ("FORMAT_TIMESTAMP(FROM_UNIXTIME(1000), 'yyyy-MM-dd HH:mm:ss')", "1970-01-01 00:00:01", S),
        (
            "FORMAT_TIMESTAMP(FROM_UNIXTIME(0), 'yyyy-MM-dd HH:mm', 'America/Los_Angeles')",
            "1969-12-31 16:00",
            S,
        ),
        ("PARSE_TIMESTAMP('1970-01-01 00:00:01', 'yyyy-MM-dd HH:mm:ss')", 1000, T.TIMESTAMP),
        (
            "PARSE_TIMESTAMP('1970-01-01 00:00', 'yyyy-MM-dd HH:mm', 'Europe/Paris')",
            -3_600_000,
            T.TIMESTAMP,
        ),
        ("PARSE_DATE('2021-03-04', 'yyyy-MM-dd')", 18690, T.DATE),
        ("FORMAT_DATE(FROM_DAYS(18690), 'dd/MM/yyyy')", "04/03/2021", S),
        ("FORMAT_TIME(PARSE_TIME('13:45:10', 'HH:mm:ss'), 'hh:mm a')", "01:45 PM", S),
        ("DATETOSTRING(18690, 'yyyy-MM-dd')", "2021-03-04", S),
        ("STRINGTODATE('2021-03-04', 'yyyy-MM-dd')", 18690, INT),
        ("UNIX_DATE(FROM_DAYS(5))", 5, INT),
        ("CONVERT_TZ(FROM_UNIXTIME(0), 'UTC', 'America/Los_Angeles')", -28_800_000, T.TIMESTAMP),
        ("CONVERT_TZ(FROM_UNIXTIME(0), 'Asia/Kolkata', 'UTC')", -19_800_000, T.TIMESTAMP),
    ],
)
def test_function_values_and_types(expr: str, value: Any, typ: T.SqlType) -> None:
    got, got_type = evaluate(expr, ROW)
    assert got_type == typ
    if isinstance(value, float) and math.isnan(value):
        assert isinstance(got, float) and math.isnan(got)
    elif isinstance(value, float):
        assert got == pytest.approx(value)
    else:
        assert got == value


NULL_CALLS = [
    "CHR(CAST(NULL AS INT))",
    "ENCODE(CAST(NULL AS STRING), 'hex', 'utf8')",
    "TO_BYTES(CAST(NULL AS STRING), 'hex')",
    "FROM_BYTES(CAST(NULL AS BYTES), 'hex')",
    "INITCAP(CAST(NULL AS STRING))",
    "SPLIT_TO_MAP(CAST(NULL AS STRING), '/', '=')",
    "REGEXP_EXTRACT('a', CAST(NULL AS STRING))",
    "REGEXP_EXTRACT_ALL('a', CAST(NULL AS STRING))",
    "REGEXP_REPLACE(CAST(NULL AS STRING), 'a', 'b')",
    "REGEXP_SPLIT_TO_ARRAY(CAST(NULL AS STRING), 'a')",
    "UUID(CAST(NULL AS BYTES))",
    "EXTRACTJSONFIELD(CAST(NULL AS STRING), '$.a')",
    "JSON_ARRAY_LENGTH(CAST(NULL AS STRING))",
    "JSON_CONCAT('[1]', CAST(NULL AS STRING))",
    "JSON_KEYS(CAST(NULL AS STRING))",
    "JSON_RECORDS(CAST(NULL AS STRING))",
    "JSON_ITEMS(CAST(NULL AS STRING))",
    "ACOS(CAST(NULL AS DOUBLE))",
    "ATAN2(CAST(NULL AS DOUBLE), 1)",
    "CBRT(CAST(NULL AS DOUBLE))",
    "LOG(CAST(NULL AS DOUBLE))",
    "LOG(2, CAST(NULL AS DOUBLE))",
    "TRUNC(CAST(NULL AS DOUBLE))",
    "TRUNC(M, CAST(NULL AS INT))",
    "GEO_DISTANCE(CAST(NULL AS DOUBLE), 1, 2, 3)",
    "NULLIF(CAST(NULL AS INT), 1)",
    "ARRAY_CONCAT(CAST(NULL AS ARRAY<INT>), CAST(NULL AS ARRAY<INT>))",
    "ARRAY_DISTINCT(CAST(NULL AS ARRAY<INT>))",
    "ARRAY_EXCEPT(ARRAY[1], CAST(NULL AS ARRAY<INT>))",
    "ARRAY_INTERSECT(CAST(NULL AS ARRAY<INT>), ARRAY[1])",
    "ARRAY_UNION(ARRAY[1], CAST(NULL AS ARRAY<INT>))",
    "ARRAY_REMOVE(CAST(NULL AS ARRAY<INT>), 1)",
    "ARRAY_JOIN(CAST(NULL AS ARRAY<INT>))",
    "ARRAY_MAX(CAST(NULL AS ARRAY<INT>))",
    "ARRAY_SORT(CAST(NULL AS ARRAY<INT>))",
    "SLICE(ARRAY[1], CAST(NULL AS INT), 1)",
    "ELT(CAST(NULL AS INT), 'a')",
    "ENTRIES(CAST(NULL AS MAP<STRING, INT>), TRUE)",
    "GENERATE_SERIES(CAST(NULL AS INT), 3)",
    "AS_MAP(CAST(NULL AS ARRAY<STRING>), ARRAY[1])",
    "MAP_KEYS(CAST(NULL AS MAP<STRING, INT>))",
    "MAP_VALUES(CAST(NULL AS MAP<STRING, INT>))",
    "MAP_UNION(CAST(NULL AS MAP<STRING, INT>), CAST(NULL AS MAP<STRING, INT>))",
    "TRANSFORM(CAST(NULL AS ARRAY<INT>), x => x + 1)",
    "FILTER(CAST(NULL AS MAP<STRING, INT>), (k, v) => v > 1)",
    "REDUCE(ARRAY[1], CAST(NULL AS INT), (s, x) => s + x)",
    "URL_ENCODE_PARAM(CAST(NULL AS STRING))",
    "URL_DECODE_PARAM(CAST(NULL AS STRING))",
    "URL_EXTRACT_HOST(CAST(NULL AS STRING))",
    "URL_EXTRACT_PARAMETER('http://h/?a=1', CAST(NULL AS STRING))",
    "URL_EXTRACT_PORT(CAST(NULL AS STRING))",
    "TIMESTAMPADD(SECONDS, CAST(NULL AS INT), FROM_UNIXTIME(0))",
    "TIMESTAMPSUB(SECONDS, 1, CAST(NULL AS TIMESTAMP))",
    "DATEADD(DAYS, 1, CAST(NULL AS DATE))",
    "TIMEADD(HOURS, 1, CAST(NULL AS TIME))",
    "FORMAT_TIMESTAMP(CAST(NULL AS TIMESTAMP), 'yyyy')",
    "FORMAT_DATE(CAST(NULL AS DATE), 'yyyy')",
    "FORMAT_TIME(CAST(NULL AS TIME), 'HH')",
    "PARSE_TIMESTAMP(CAST(NULL AS STRING), 'yyyy')",
    "PARSE_DATE('2020-01-01', CAST(NULL AS STRING))",
    "PARSE_TIME(CAST(NULL AS STRING), 'HH')",
    "CONVERT_TZ(CAST(NULL AS TIMESTAMP), 'UTC', 'UTC')",
    "FROM_DAYS(CAST(NULL AS INT))",
    "UNIX_DATE(CAST(NULL AS DATE))",
]


@pytest.mark.parametrize("expr", NULL_CALLS)
def test_null_argument_gives_null(expr: str) -> None:
    assert evaluate(expr, ROW)[0] is None


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("IS_JSON_STRING(CAST(NULL AS STRING))", False),
        ("JSON_ARRAY_CONTAINS(CAST(NULL AS STRING), 1)", False),
        ("FIELD(CAST(NULL AS STRING), 'a')", 0),
        ("TO_JSON_STRING(CAST(NULL AS INT))", "null"),
        ("ARRAY_CONCAT(CAST(NULL AS ARRAY<INT>), ARRAY[1])", [1]),
    ],
)
def test_functions_that_answer_null_with_a_value(expr: str, value: Any) -> None:
    assert evaluate(expr, ROW)[0] == value


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("GENERATE_SERIES", (1, 3, 0), "GENERATE_SERIES step cannot be zero"),
        ("GENERATE_SERIES", (1, 3, -1), "GENERATE_SERIES step has wrong sign"),
        ("GENERATE_SERIES", (0, 10**9), "more than"),
        ("ENCODE", ("a", "utf8", "ebcdic"), "Supported input and output encodings are"),
        ("TO_BYTES", ("a", "latin1"), "Supported input and output encodings are"),
        ("GEO_DISTANCE", (0, 0, 1, 1, "parsecs"), "units parameter must be one of"),
        ("GEO_DISTANCE", (91, 0, 1, 1), "valid latitude values"),
        ("REGEXP_EXTRACT", ("(", "a"), "Invalid regular expression"),
        ("PARSE_DATE", ("nope", "yyyy-MM-dd"), "Failed to parse 'nope'"),
        ("PARSE_DATE", ("2021-01-01 10", "yyyy-MM-dd HH"), "Date format contains time field."),
        ("PARSE_TIME", ("2021 10", "yyyy HH"), "Time format contains date field."),
        ("CONVERT_TZ", (0, "Mars/Olympus", "UTC"), "Unknown time-zone ID: Mars/Olympus"),
    ],
)
def test_function_errors(name: str, args: tuple[Any, ...], message: str) -> None:
    fn = lookup(name)
    assert fn is not None
    with pytest.raises(KsqlError, match=re.escape(message)):
        fn.impl(*args)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("FILTER(ARRAY[1], x => x)", "FILTER's lambda must return a BOOLEAN"),
        ("TRANSFORM(ARRAY[1], (x, y) => x)", "expects a lambda with 1 parameter(s)"),
        ("TRANSFORM(I, x => x)", "Function 'TRANSFORM' does not accept parameters"),
        ("x => x", "A lambda is only allowed as an argument"),
        ("TIMESTAMPADD(I, 1, FROM_UNIXTIME(0))", "expects a time unit"),
    ],
)
def test_compile_time_errors(expr: str, message: str) -> None:
    with pytest.raises(KsqlError, match=re.escape(message)):
        evaluate(expr, ROW)


def test_lambda_body_taller_than_the_hoist_height() -> None:
    """A lambda body deep enough to be split into functions of its own still sees its
    parameters (the hoisted functions take them as arguments)."""
    body = " + ".join(["x"] * 31)
    assert evaluate(f"TRANSFORM(ARRAY[1, 2], x => {body})", ROW)[0] == [31, 62]
    state = "s + " + " + ".join(["x"] * 30)
    assert evaluate(f"REDUCE(ARRAY[1, 2], 0, (s, x) => {state})", ROW)[0] == 90


# -- properties ------------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@given(texts)
def test_url_param_round_trip(text: str) -> None:
    encode = lookup("URL_ENCODE_PARAM")
    decode = lookup("URL_DECODE_PARAM")
    assert encode is not None and decode is not None
    encoded = encode.impl(text)
    assert re.fullmatch(r"[A-Za-z0-9.\-*_+%]*", encoded)
    assert decode.impl(encoded) == text


@given(
    st.binary(max_size=40), st.sampled_from(["hex", "base64"]), st.sampled_from(["hex", "base64"])
)
def test_bytes_encodings_round_trip(data: bytes, first: str, second: str) -> None:
    to_bytes, from_bytes, encode = (lookup(n) for n in ("TO_BYTES", "FROM_BYTES", "ENCODE"))
    assert to_bytes is not None and from_bytes is not None and encode is not None
    text = from_bytes.impl(data, first)
    assert to_bytes.impl(text, first) == data
    assert to_bytes.impl(encode.impl(text, first, second), second) == data


@given(st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=12))
def test_array_sort_is_a_sorted_permutation_nulls_last(items: list[int | None]) -> None:
    sort = lookup("ARRAY_SORT")
    assert sort is not None
    out = sort.impl(items)
    values = [x for x in items if x is not None]
    assert out == sorted(values) + [None] * (len(items) - len(values))
    assert sort.impl(items, "DESC") == sorted(values, reverse=True) + [None] * (
        len(items) - len(values)
    )


@given(st.lists(st.text("ab", max_size=3), min_size=1, max_size=6))
def test_regexp_split_inverts_a_join(parts: list[str]) -> None:
    split = lookup("REGEXP_SPLIT_TO_ARRAY")
    assert split is not None
    assert split.impl(",".join(parts), ",") == parts
