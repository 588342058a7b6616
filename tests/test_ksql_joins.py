"""Joins, Kafka-free: the planner's schema, key and errors, and each operator record by record
against ksqlDB's (Kafka Streams') documented join semantics."""

from __future__ import annotations

from typing import Any

import pytest
from ksql_planner_support import metastore_of, select_of

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.metastore import DataSource
from services.ksql_server.planner.join import STREAM_STREAM, STREAM_TABLE, plan_join
from services.ksql_server.runtime.join import (
    LEFT,
    RIGHT,
    ForeignKeyJoin,
    StreamStreamJoin,
    StreamTableJoin,
    TableTableJoin,
    join_key,
)
from services.ksql_server.state import KeyValueStore


def _source(name: str, kind: str, key: str, values: list[str], fmt: str = "JSON") -> DataSource:
    return DataSource(
        name,
        kind,
        name.lower(),
        [(key, T.INTEGER)],
        [(v, T.INTEGER) for v in values],
        FormatInfo("KAFKA"),
        FormatInfo(fmt),
        "",
    )


STREAMS = metastore_of(
    _source("L", "STREAM", "A", ["B", "C"]),
    _source("R", "STREAM", "A", ["B", "C"]),
    _source("T", "TABLE", "A", ["D"]),
    _source("K", "STREAM", "A", ["B"], fmt="KAFKA"),
)


def _plan(sql: str) -> Any:
    return plan_join(select_of(sql), STREAMS, persistent=True, sink_name="OUTPUT")


# ------------------------------------------------------------------ planner


def test_select_star_names_every_column_by_its_source() -> None:
    plan = _plan("CREATE STREAM OUTPUT AS SELECT * FROM L JOIN R WITHIN 10 SECONDS ON L.A = R.A;")
    assert plan.join_type == STREAM_STREAM
    assert [n for n, _ in plan.plan.key_columns] == ["L_A"]
    assert [n for n, _ in plan.plan.value_columns] == ["L_B", "L_C", "R_A", "R_B", "R_C"]


def test_unique_columns_keep_their_name_shared_ones_get_the_alias() -> None:
    plan = _plan("CREATE STREAM OUTPUT AS SELECT l.A, l.B, D FROM L l JOIN T t ON l.A = t.A;")
    assert plan.join_type == STREAM_TABLE
    assert [n for n, _ in plan.plan.output] == ["L_A", "B", "D"]


def test_full_outer_join_has_a_synthetic_rowkey() -> None:
    plan = _plan(
        "CREATE STREAM OUTPUT AS SELECT * FROM L FULL OUTER JOIN R WITHIN 1 SECOND ON L.A = R.A;"
    )
    assert plan.synthetic_key and plan.key_name == "ROWKEY"
    assert next(n for n, _ in plan.plan.output) == "ROWKEY"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "CREATE STREAM OUTPUT AS SELECT l.B FROM L JOIN R WITHIN 1 SECOND ON L.A = R.A;",
            "must include the join expressions L.A or R.A in its projection",
        ),
        (
            "CREATE STREAM OUTPUT AS SELECT l.B FROM L JOIN R WITHIN 1 SECOND "
            "ON ABS(L.A) = ABS(R.A);",
            "ROWKEY was added as a synthetic key column",
        ),
        (
            "CREATE STREAM OUTPUT AS SELECT * FROM L JOIN R ON L.A = R.A;",
            "Stream-Stream joins must have a WITHIN clause specified",
        ),
        (
            "CREATE STREAM OUTPUT AS SELECT * FROM L JOIN T WITHIN 1 SECOND ON L.A = T.A;",
            "A window definition was provided for a Stream-Table join",
        ),
        (
            "CREATE STREAM OUTPUT AS SELECT * FROM T JOIN L ON L.A = T.A;",
            "Invalid join order: table-stream joins are not supported; only stream-table joins. "
            "Got T [INNER] JOIN L.",
        ),
        (
            "CREATE STREAM OUTPUT AS SELECT * FROM L FULL OUTER JOIN T ON L.A = T.A;",
            "Invalid join type: full-outer join not supported for stream-table join.",
        ),
        (
            "CREATE STREAM OUTPUT AS SELECT * FROM L JOIN T ON L.A = T.D;",
            "stream-table joins require to join on the table's primary key. Got L.A = T.D.",
        ),
        (
            "CREATE STREAM OUTPUT AS SELECT * FROM L JOIN R WITHIN 1 SECOND ON L.A = 0;",
            "Invalid comparison expression '0' in join '(L.A = 0)'.",
        ),
        (
            "CREATE STREAM OUTPUT AS SELECT * FROM L JOIN R WITHIN 1 SECOND ON L.X = R.A;",
            "JOIN ON column 'L.X' cannot be resolved.",
        ),
        (
            "CREATE STREAM OUTPUT AS SELECT * FROM L JOIN K WITHIN 1 SECOND ON L.A = K.A;",
            "Source(s) K are using the 'KAFKA' value format.",
        ),
        (
            "CREATE STREAM OUTPUT AS SELECT l.A, l.A AS KEY2, R.C FROM L JOIN R WITHIN 1 SECOND "
            "ON L.A = R.A;",
            "The projection contains a key column (`L_A`) more than once, aliased as: KEY2 and L_A",
        ),
    ],
)
def test_ksqldb_errors(sql: str, message: str) -> None:
    with pytest.raises(KsqlError) as err:
        _plan(sql)
    assert message in str(err.value)


# ------------------------------------------------------------------ operators


def test_stream_stream_inner_join_within_the_window_only() -> None:
    op = StreamStreamJoin("INNER", 10, 10)
    assert op.process(LEFT, 1, ["l0"], 100) == []
    assert op.process(RIGHT, 1, ["r0"], 105) == [(1, ["l0"], ["r0"], 105)]
    assert op.process(RIGHT, 1, ["r1"], 111) == []  # 11 ms after: outside
    assert op.process(RIGHT, 2, ["r2"], 100) == []  # other key


def test_stream_stream_asymmetric_window() -> None:
    op = StreamStreamJoin("INNER", 0, 10)  # WITHIN (0, 10): right at most 10 ms after left
    op.process(LEFT, 1, ["l"], 100)
    assert op.process(RIGHT, 1, ["before"], 99) == []
    assert op.process(RIGHT, 1, ["after"], 110) == [(1, ["l"], ["after"], 110)]


def test_stream_stream_left_join_without_grace_is_eager() -> None:
    op = StreamStreamJoin("LEFT", 11_000, 11_000)
    assert op.process(LEFT, 0, ["zero"], 0) == [(0, ["zero"], None, 0)]
    assert op.process(RIGHT, 0, ["blah"], 10_000) == [(0, ["zero"], ["blah"], 10_000)]
    assert op.process(RIGHT, 5, ["x"], 10_000) == []  # right side is not outer


def test_stream_stream_left_join_with_grace_waits_for_the_window_to_close() -> None:
    op = StreamStreamJoin("LEFT", 60_000, 60_000, 60_000)
    assert op.process(LEFT, 0, ["A"], 0) == []
    assert op.process(RIGHT, 0, ["a"], 60_000) == [(0, ["A"], ["a"], 60_000)]
    assert op.process(LEFT, 1, ["B"], 330_000) == []  # waits: its window is open
    # out of order, window already closed: emitted at once with nulls, never joined
    assert op.process(LEFT, 2, ["C"], 90_000) == [(2, ["C"], None, 90_000)]
    assert op.process(RIGHT, 2, ["c"], 90_000) == []
    # stream time passes B's window close: B comes out with nulls
    assert op.process(RIGHT, 9, ["z"], 451_000) == [(1, ["B"], None, 330_000)]


def test_stream_stream_full_outer_and_right_join() -> None:
    full = StreamStreamJoin("FULL", 5, 5)
    assert full.process(RIGHT, 1, ["r"], 10) == [(1, None, ["r"], 10)]
    assert full.process(LEFT, 1, ["l"], 12) == [(1, ["l"], ["r"], 12)]
    right = StreamStreamJoin("RIGHT", 5, 5)
    assert right.process(LEFT, 1, ["l"], 10) == []
    assert right.process(RIGHT, 2, ["r"], 10) == [(2, None, ["r"], 10)]


def test_stream_stream_state_is_bounded_by_the_window() -> None:
    op = StreamStreamJoin("INNER", 10, 10, 0)
    for t in range(0, 10_000, 5):
        op.process(LEFT, t % 7, [t], t)
    assert op.buffered() <= 5


def test_stream_stream_drops_null_keys_and_values() -> None:
    op = StreamStreamJoin("LEFT", 10, 10)
    assert op.process(LEFT, None, ["x"], 1) == []
    assert op.process(LEFT, 1, None, 1) == []


def test_stream_table_join_reads_the_latest_table_row() -> None:
    op = StreamTableJoin("LEFT")
    assert op.process(LEFT, 1, ["s0"], 1) == [(1, ["s0"], None, 1)]
    assert op.process(RIGHT, 1, ["t1"], 2) == []  # table updates emit nothing
    assert op.process(LEFT, 1, ["s1"], 3) == [(1, ["s1"], ["t1"], 3)]
    op.process(RIGHT, 1, None, 4)  # tombstone deletes the row
    assert op.process(LEFT, 1, ["s2"], 5) == [(1, ["s2"], None, 5)]
    inner = StreamTableJoin("INNER")
    assert inner.process(LEFT, 1, ["s"], 1) == []


def test_table_table_joins_emit_upserts_and_tombstones() -> None:
    inner = TableTableJoin("INNER")
    assert inner.process(LEFT, 1, ["l"], 1) == []
    assert inner.process(RIGHT, 1, ["r"], 2) == [(1, ["l"], ["r"], 2)]
    assert inner.process(LEFT, 1, None, 3) == [(1, None, None, 3)]
    left = TableTableJoin("LEFT")
    assert left.process(LEFT, 1, ["l"], 1) == [(1, ["l"], None, 1)]
    assert left.process(RIGHT, 1, ["r"], 2) == [(1, ["l"], ["r"], 2)]
    assert left.process(RIGHT, 1, None, 3) == [(1, ["l"], None, 3)]
    assert left.process(LEFT, 1, None, 4) == [(1, None, None, 4)]
    full = TableTableJoin("FULL")
    assert full.process(RIGHT, 2, ["r"], 1) == [(2, None, ["r"], 1)]


def test_foreign_key_join_rejoins_on_right_updates() -> None:
    op = ForeignKeyJoin("LEFT")
    assert op.process(LEFT, 1, ["l1"], 1, fk=10) == [(1, ["l1"], None, 1)]
    assert op.process(LEFT, 2, ["l2"], 2, fk=10) == [(2, ["l2"], None, 2)]
    out = op.process(RIGHT, 10, ["r"], 3)
    assert out == [(1, ["l1"], ["r"], 3), (2, ["l2"], ["r"], 3)]


def test_array_and_struct_keys_join_by_value() -> None:
    op = StreamStreamJoin("INNER", 10, 10)
    op.process(LEFT, join_key([1, 2]), ["l"], 1)
    out = op.process(RIGHT, join_key([1, 2]), ["r"], 2)
    assert len(out) == 1 and out[0][0].value == [1, 2]
    assert op.process(RIGHT, join_key({"F": 1}), ["r"], 2) == []


# ---------------------------------------------------------------------- restored state


def _restored(
    store: KeyValueStore, changelogs: dict[str, list[tuple[bytes, bytes | None]]] | None = None
) -> KeyValueStore:
    """`store` as a restarted query gets it back: its changes since the last commit appended
    to its changelog (`changelogs`, by store name), the whole changelog replayed, JSON and
    all, into a new store (what state/stores.py's restore does)."""
    log = (changelogs if changelogs is not None else {}).setdefault(store.name, [])
    store.flush(lambda _topic, key, value: log.append((key, value)))
    store.committed()
    again = KeyValueStore(store.name, store.changelog)
    for key, value in log:
        again.load(key, value)
    again.committed()
    return again


STREAM_STREAM_FEED = [
    (LEFT, 0, ["A"], 0),
    (RIGHT, 0, ["a"], 60_000),
    (LEFT, 1, ["B"], 330_000),
    (LEFT, 2, ["C"], 90_000),
    (RIGHT, 2, ["c"], 90_000),
    (RIGHT, 1, ["b"], 331_000),
    (LEFT, 3, ["D"], 332_000),
    (RIGHT, 9, ["z"], 851_000),
    (LEFT, 3, ["E"], 851_500),
]


@pytest.mark.parametrize("kind", ["INNER", "LEFT", "FULL"])
def test_stream_stream_join_continues_from_its_restored_stores(kind: str) -> None:
    """Stopped after each record and restored from the changelog, the join emits what one
    that never stopped emits: buffered records, matched flags, pending outer records and
    stream time all come back from the two window stores."""
    whole = StreamStreamJoin(kind, 60_000, 60_000, 60_000)
    want = [whole.process(*r) for r in STREAM_STREAM_FEED]
    op = StreamStreamJoin(kind, 60_000, 60_000, 60_000)
    got = []
    changelogs: dict[str, list[tuple[bytes, bytes | None]]] = {}
    for record in STREAM_STREAM_FEED:
        got.append(op.process(*record))
        assert op.stores is not None
        stores = (_restored(op.stores[0], changelogs), _restored(op.stores[1], changelogs))
        op = StreamStreamJoin(kind, 60_000, 60_000, 60_000, stores)
    assert got == want
    assert op.buffered() == whole.buffered()


def test_table_joins_continue_from_their_restored_stores() -> None:
    """DECIMAL keys come back from JSON as text: a restored entry still meets the live key."""
    from decimal import Decimal

    from services.ksql_server.formats.base import coercer

    st = StreamTableJoin("INNER")
    st.process(RIGHT, Decimal("1.50"), ["one"], 1)
    st = StreamTableJoin("INNER", _restored(st.table))
    assert st.process(LEFT, Decimal("1.50"), ["s"], 2) == [(Decimal("1.50"), ["s"], ["one"], 2)]
    tt = TableTableJoin("LEFT")
    tt.process(RIGHT, 7, ["r"], 1)
    tt = TableTableJoin("LEFT", (_restored(tt.tables[0]), _restored(tt.tables[1])))
    assert tt.process(LEFT, 7, ["l"], 5) == [(7, ["l"], ["r"], 5)]
    assert tt.process(RIGHT, 7, None, 6) == [(7, ["l"], None, 6)]
    fk = ForeignKeyJoin("INNER", revive_key=coercer(T.INTEGER))
    fk.process(LEFT, 1, ["l1", "x"], 1, fk="x")
    fk = ForeignKeyJoin("INNER", (_restored(fk.lefts), _restored(fk.rights)), coercer(T.INTEGER))
    assert fk.process(RIGHT, "x", ["rx"], 3) == [(1, ["l1", "x"], ["rx"], 3)]


# ---------------------------------------------------------------------- clauses after a join


def test_partition_by_after_a_join_rekeys_the_result() -> None:
    plan = _plan(
        "CREATE STREAM OUTPUT AS SELECT L.B, L.A, R.C FROM L JOIN R WITHIN 10 SECONDS "
        "ON L.A = R.A PARTITION BY L.B;"
    ).plan
    assert plan.partition_by
    assert [n for n, _ in plan.key_columns] == ["L_B"]
    star = _plan(
        "CREATE STREAM OUTPUT AS SELECT * FROM L JOIN R WITHIN 10 SECONDS ON L.A = R.A "
        "PARTITION BY L.B;"
    ).plan
    names = [n for n, _ in star.output]
    assert names[0] == "L_B" and names.count("L_B") == 1
    assert names[1:6] == ["L_C", "L_ROWTIME", "L_ROWPARTITION", "L_ROWOFFSET", "L_A"]
    with pytest.raises(KsqlError, match=r"partitioning expression L\.C"):
        _plan(
            "CREATE STREAM OUTPUT AS SELECT L.B FROM L JOIN R WITHIN 10 SECONDS ON L.A = R.A "
            "PARTITION BY L.C;"
        )


def test_group_by_after_a_join_aggregates_the_joined_rows() -> None:
    from services.ksql_server.planner.aggregate import AggregationPlan

    join = _plan(
        "CREATE TABLE OUTPUT AS SELECT L.B, COUNT(*) AS N, SUM(T.D) AS S FROM L "
        "JOIN T ON L.A = T.A GROUP BY L.B HAVING COUNT(*) > 1;"
    )
    spec = join.plan.stateful
    assert isinstance(spec, AggregationPlan) and join.plan.join is join
    assert spec.repartition is None  # the join query re-keys in memory
    assert [n for n, _ in join.plan.output] == ["B", "N", "S"]
    with pytest.raises(KsqlError, match="SELECT column 'WINDOWSTART' cannot be resolved"):
        _plan(
            "CREATE TABLE OUTPUT AS SELECT L.B, COUNT(*), WINDOWSTART AS WS FROM L "
            "JOIN T ON L.A = T.A WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY L.B;"
        )


def test_group_by_repartitions_a_stream_grouped_by_another_key() -> None:
    from services.ksql_server.planner.aggregate import repartition_name

    source = STREAMS.get("L")
    assert source is not None
    by_key = select_of("CREATE TABLE O AS SELECT A, COUNT(*) FROM L GROUP BY A;")
    by_value = select_of("CREATE TABLE O AS SELECT B, COUNT(*) FROM L GROUP BY B;")
    assert repartition_name(by_key, source) is None
    assert repartition_name(by_value, source) == "Aggregate-GroupBy"
    table = STREAMS.get("T")
    assert table is not None
    assert (
        repartition_name(
            select_of("CREATE TABLE O AS SELECT D, COUNT(*) FROM T GROUP BY D;"), table
        )
        is None
    )
