"""Pull queries over tables: the WHERE analysis (pure) and one query over HTTP on the real stack.

The planner's decisions (key lookup, scan, or ksqlDB's refusal) are checked without Kafka; the
slow test materialises a table with a CTAS on the running KSQL server and pull-queries it over
`/query` and `/query-stream` as a notebook would (key lookup, IN, scan with LIMIT, ROWTIME).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.metastore import DataSource
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.parser import parse
from services.ksql_server.planner.pull import check_pull_clauses, codegen_message, plan_pull
from services.ksql_server.runtime.table import TableView
from services.ksql_server.state import KeyValueStore

SCAN_OFF = {"ksql.query.pull.table.scan.enabled": False}


def _table(*keys: tuple[str, Any]) -> DataSource:
    return DataSource(
        "T",
        "TABLE",
        "t",
        list(keys),
        [("N", T.BIGINT)],
        FormatInfo("KAFKA"),
        FormatInfo("JSON"),
        "",
    )


def _select(where: str) -> A.Select:
    stmt = parse(f"SELECT * FROM T WHERE {where};")
    assert isinstance(stmt, A.Query)
    return stmt.select


STRING_KEY = _table(("ID", T.STRING))
INT_KEY = _table(("ID", T.INTEGER))


@pytest.mark.parametrize(
    ("where", "keys"),
    [
        ("ID = 'a'", [("a",)]),
        ("ID IN ('a', 'b', 'a')", [("a",), ("b",)]),
        ("ID = 'a' OR ID = 'b'", [("a",), ("b",)]),
        ("ID = 'a' AND N > 1", [("a",)]),
        ("N > 1", None),
        ("ID = 'a' OR N > 1", None),
    ],
)
def test_lookups_and_scans(where: str, keys: list[tuple[Any, ...]] | None) -> None:
    assert plan_pull(_select(where), STRING_KEY, {}, windowed=False).keys == keys


@pytest.mark.parametrize(
    ("source", "where", "message"),
    [
        (INT_KEY, "N = 100", "WHERE clause missing key column for disjunct: (N = 100)"),
        (INT_KEY, "ID != 100", "Bound on key columns '[`ID` INTEGER KEY]' must currently be '='"),
        (INT_KEY, "ID + 10 = 20", "A comparison must directly reference a key column."),
        (INT_KEY, "ID = N", "A comparison must be between a key column and a resolvable"),
        (INT_KEY, "0 < ID AND ID < 100", "cannot be combined with other comparisons"),
        (INT_KEY, "ID >= 12", "Query requires table scan to be enabled"),
        (STRING_KEY, "ID <= '1' OR ID >= '3'", "Query requires table scan to be enabled"),
    ],
)
def test_refusals_without_table_scan(source: DataSource, where: str, message: str) -> None:
    with pytest.raises(KsqlError, match=None) as exc:
        plan_pull(_select(where), source, SCAN_OFF, windowed=False)
    assert message in str(exc.value)


def test_range_on_a_string_key_needs_no_table_scan() -> None:
    assert plan_pull(_select("ID < '12'"), STRING_KEY, SCAN_OFF, windowed=False).keys is None


def test_in_lists_are_checked_whichever_way_the_query_runs() -> None:
    with pytest.raises(KsqlError, match="'10' can not be converted to the type of the key"):
        plan_pull(_select("ID IN ('10', 8)"), INT_KEY, {}, windowed=False)
    with pytest.raises(KsqlError, match=r"Primary key columns can not be NULL: \(ID = null\)"):
        plan_pull(_select("ID IN (NULL)"), INT_KEY, {}, windowed=False)


def test_multi_column_keys_need_every_key() -> None:
    source = _table(("A", T.STRING), ("B", T.INTEGER))
    assert plan_pull(_select("A = 'x' AND B IN (1, 2)"), source, {}, False).keys == [
        ("x", 1),
        ("x", 2),
    ]
    with pytest.raises(KsqlError, match="Multi-column sources must specify every key"):
        plan_pull(_select("A = 'x'"), source, SCAN_OFF, windowed=False)


def test_key_values_are_resolved_and_take_the_key_type() -> None:
    """ksqlDB resolves an expression without columns to the key value it looks up, and coerces
    numbers to the key's type (a DOUBLE key looked up with 10 reads 10.0)."""
    assert plan_pull(_select("ID = 10 + 1"), INT_KEY, SCAN_OFF, windowed=False).keys == [(11,)]
    double_key = _table(("ID", T.DOUBLE))
    keys = plan_pull(_select("ID IN (10, 8.0)"), double_key, {}, windowed=False).keys
    assert keys == [(10.0,), (8.0,)]
    assert keys is not None and all(type(k[0]) is float for k in keys)
    with pytest.raises(KsqlError, match=r"Primary key columns can not be NULL: \(ID = CAST"):
        plan_pull(_select("ID = CAST(NULL AS INTEGER)"), INT_KEY, {}, windowed=False)


def test_like_in_a_pull_query() -> None:
    with pytest.raises(KsqlError, match="The column type for Like condition must be VARCHAR"):
        plan_pull(_select("ID LIKE 12"), INT_KEY, {}, windowed=False)
    with pytest.raises(KsqlError, match="Like condition must be between strings"):
        plan_pull(_select("'12' LIKE '12'"), INT_KEY, SCAN_OFF, windowed=False)
    assert plan_pull(_select("'12' LIKE '12'"), INT_KEY, {}, windowed=False).keys is None


def test_a_between_bound_of_the_wrong_type_is_found_at_code_generation() -> None:
    select = _select("N BETWEEN 'a' AND 10")
    analyzer = "Error in WHERE expression: Cannot compare N (BIGINT) to 'a' (STRING) with "
    assert codegen_message(select, analyzer + "GREATER_THAN_OR_EQUAL.") == (
        "Invalid expression: Cannot compare N (BIGINT) to 'a' (STRING) with GREATER_THAN_OR_EQUAL."
    )
    other = _select("N = 'a'")
    assert codegen_message(other, analyzer + "EQUAL.") == analyzer + "EQUAL."


def test_table_view_reads_rowtime_and_nested_keys() -> None:
    """A row's ROWTIME is the timestamp its entry was last put with; ARRAY and STRUCT keys,
    kept hashable in the store, come back as the engine's lists and dicts."""
    array_key = T.SqlType("ARRAY", item=T.STRING)
    store = KeyValueStore("s", "changelog")
    store.put((["1", "0"],), (5,), timestamp=12)
    store.put((["1", "0"],), (6,), timestamp=34)
    view = TableView(store, [("ID", array_key)], [("N", T.BIGINT)])
    assert view.entries() == [((["1", "0"],), (6,), 34)]
    assert view.lookup([["1", "0"]]) == ((6,), 34)
    assert view.get([["1", "1"]]) is None
    struct_key = T.SqlType("STRUCT", fields=(("A", T.INTEGER),))
    store = KeyValueStore("s2", "changelog")
    store.put(({"A": 1},), [7, 99])
    view = TableView(store, [("K", struct_key)], [("N", T.BIGINT)], lambda _k, v: (v[0],))
    view_time = TableView(
        store, [("K", struct_key)], [("N", T.BIGINT)], lambda _k, v: (v[0],), lambda _k, v: v[1]
    )
    assert view.entries() == [(({"A": 1},), (7,), None)]
    assert view_time.lookup([{"A": 1}]) == ((7,), 99)


def test_clauses_no_pull_query_takes() -> None:
    stmt = parse("SELECT ID, COUNT(*) FROM T WHERE ID = 1 GROUP BY ID;")
    assert isinstance(stmt, A.Query)
    with pytest.raises(KsqlError, match="Pull queries don't support GROUP BY clauses"):
        check_pull_clauses(stmt.select)


def _ksql(url: str, sql: str) -> Any:
    # earliest: with ksqlDB's default (latest) a record inserted while the new query's consumer
    # is still joining its group is skipped, as on ksqlDB
    props = {"ksql.streams.auto.offset.reset": "earliest"}
    r = httpx.post(f"{url}/ksql", json={"ksql": sql, "streamsProperties": props}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _pull(url: str, sql: str) -> list[list[Any]]:
    r = httpx.post(f"{url}/query", json={"ksql": sql, "streamsProperties": {}}, timeout=60)
    assert r.status_code == 200, r.text
    return [m["row"]["columns"] for m in r.json() if "row" in m]


@pytest.mark.slow
def test_pull_queries_over_http(ksql_url: str, unique: str) -> None:
    """A CTAS counted per user, then pull queries by key, IN, scan with LIMIT, over /query and
    /query-stream; a table no query materialises is refused with ksqlDB's words."""
    s, t = f"PULL_TX_{unique}".upper(), f"PULL_PER_USER_{unique}".upper()
    _ksql(
        ksql_url,
        f"CREATE STREAM {s} (USERID STRING KEY, AMOUNT DOUBLE) WITH "
        f"(KAFKA_TOPIC='{s.lower()}', VALUE_FORMAT='JSON', PARTITIONS=1);"
        f"CREATE TABLE {t} AS SELECT USERID, COUNT(*) AS N, SUM(AMOUNT) AS TOTAL "
        f"FROM {s} GROUP BY USERID;",
    )
    try:
        base = int(time.time() * 1000) - 60_000  # recent: older records may be expired
        for i in range(9):
            _ksql(
                ksql_url,
                f"INSERT INTO {s} (ROWTIME, USERID, AMOUNT) "
                f"VALUES ({base + i}, 'u{i % 3}', {float(i)});",
            )
        deadline = time.monotonic() + 60
        while _pull(ksql_url, f"SELECT * FROM {t} WHERE USERID = 'u2';") != [["u2", 3, 15.0]]:
            assert time.monotonic() < deadline, "the table never reached its final state"
            time.sleep(0.5)
        # ROWTIME: the largest record time of the group (its last update's)
        assert _pull(ksql_url, f"SELECT USERID, ROWTIME FROM {t} WHERE USERID = 'u2';") == [
            ["u2", base + 8]
        ]
        assert _pull(ksql_url, f"SELECT * FROM {t} WHERE USERID IN ('u0', 'x');") == [
            ["u0", 3, 9.0]
        ]
        assert len(_pull(ksql_url, f"SELECT * FROM {t} WHERE TOTAL > 0 LIMIT 2;")) == 2
        r = httpx.post(
            f"{ksql_url}/query-stream",
            json={"sql": f"SELECT * FROM {t} WHERE USERID = 'u1';", "properties": {}},
            timeout=60,
        )
        lines = [json.loads(x) for x in r.text.splitlines() if x.strip()]
        assert lines[0]["columnNames"] == ["USERID", "N", "TOTAL"]
        assert lines[1:] == [["u1", 3, 12.0]]
        r = httpx.post(
            f"{ksql_url}/query",
            json={"ksql": f"SELECT * FROM {s.replace('TX', 'NOPE')} WHERE USERID = 'a';"},
            timeout=60,
        )
        assert r.status_code == 400
    finally:
        _ksql(ksql_url, f"DROP TABLE IF EXISTS {t} DELETE TOPIC; DROP STREAM {s} DELETE TOPIC;")
