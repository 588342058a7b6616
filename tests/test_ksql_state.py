"""State stores and the basic aggregates, without Kafka: the undo log, the changelog records a
flush writes and what a restore rebuilds from them, retention, and COUNT/SUM/MIN/MAX; and the
aggregation's batch-wise fast path under the record cache against the exact per-record path."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ksql_server import types as T
from services.ksql_server.functions import aggregates_basic  # noqa: F401 - registers
from services.ksql_server.functions.aggregates import resolve_aggregate
from services.ksql_server.runtime.agg_batch import caching, last_per_key
from services.ksql_server.runtime.inprocess import operator_from_sql
from services.ksql_server.runtime.processor import OutRecord
from services.ksql_server.state import KeyValueStore, QueryStores, changelog_topic


def _flush(store: KeyValueStore) -> list[tuple[str, bytes, bytes | None]]:
    sent: list[tuple[str, bytes, bytes | None]] = []
    store.flush(lambda topic, key, value: sent.append((topic, key, value)))
    return sent


def test_changelog_topic_is_named_as_ksqldb_names_it() -> None:
    assert (
        changelog_topic("default_", "CTAS_T_1", "Aggregate-Aggregate-Materialize")
        == "_confluent-ksql-default_query_CTAS_T_1-Aggregate-Aggregate-Materialize-changelog"
    )


def test_flush_writes_the_last_value_of_each_changed_key_and_tombstones() -> None:
    store = KeyValueStore("s", "topic")
    store.put(("a", 1), [1])
    store.put(("a", 1), [2])
    store.put("b", {"x": b"\x00"})
    store.delete("b")
    store.put("c", 3)
    sent = _flush(store)
    assert sent == [
        ("topic", b'["a",1]', b"[[2]]"),
        ("topic", b'"b"', None),
        ("topic", b'"c"', b"[3]"),
    ]
    store.committed()
    assert _flush(store) == []


def test_rollback_restores_the_last_commit() -> None:
    store = KeyValueStore("s", "t")
    store.put("k", 1)
    store.committed()
    store.put("k", 2)
    store.put("new", 5)
    store.delete("k")
    store.rollback()
    assert store.get("k") == 1 and "new" not in store and len(store) == 1


def test_restore_rebuilds_the_store_from_its_changelog() -> None:
    store = KeyValueStore("s", "t")
    store.put(("g", None), [1, "x"], timestamp=10)
    store.put("bytes", {"$b": 1, "v": b"\x01\x02"})
    store.put("gone", 1)
    store.delete("gone")
    records = _flush(store)
    restored = KeyValueStore("s", "t")
    for _topic, key, value in records:
        restored.load(key, value)
    assert dict(restored.items()) == dict(store.items())
    assert restored.get(["g", None]) == [1, "x"]
    assert restored.max_timestamp == 10


def test_retention_drops_old_entries_and_tombstones_them() -> None:
    store = KeyValueStore("s", "t", retention_ms=100)
    store.put("old", 1, timestamp=0)
    store.put("new", 2, timestamp=150)
    store.committed()
    assert store.expire() == 1
    assert "old" not in store and store.get("new") == 2
    assert _flush(store) == [("t", b'"old"', None)]


def test_range_is_in_key_order() -> None:
    store = KeyValueStore("s", "t")
    for k in (3, 1, 2, 5):
        store.put(k, k * 10)
    assert list(store.range(2, 3)) == [(2, 20), (3, 30)]


def _run(name: str, types: list[Any], rows: list[tuple[Any, ...]], undo: int = 0) -> Any:
    f = resolve_aggregate(name, types)
    acc = f.initial()
    for r in rows:
        acc = f.add(acc, r)
    for r in rows[:undo]:
        acc = f.undo(acc, r)
    return f.result(f.from_state(f.to_state(acc)))


def test_basic_aggregates() -> None:
    assert _run("COUNT", [], [(), ()]) == 2
    assert _run("COUNT", [T.BIGINT], [(1,), (None,), (3,)]) == 2
    assert _run("COUNT", [T.BIGINT], [(1,), (None,), (3,)], undo=1) == 1
    assert _run("SUM", [T.INTEGER], [(2**31 - 1,), (1,)]) == -(2**31)
    assert _run("SUM", [T.DOUBLE], [(1.5,), (None,), (2.0,)], undo=1) == 2.0
    dec = T.SqlType("DECIMAL", 4, 2)
    assert _run("SUM", [dec], [(Decimal("1.10"),), (Decimal("2.01"),)]) == Decimal("3.11")
    assert _run("MIN", [T.STRING], [("b",), (None,), ("a",)]) == "a"
    assert _run("MAX", [T.BIGINT], [(None,)]) is None
    assert _run("MAX", [dec], [(Decimal("1.10"),), (Decimal("2.01"),)]) == Decimal("2.01")


def test_sum_refuses_strings() -> None:
    with pytest.raises(Exception, match="SUM"):
        resolve_aggregate("SUM", [T.STRING])


# ----------------------------------------------------------------------------- record cache

SOURCE = (
    "CREATE STREAM SRC (ID STRING KEY, U STRING, AMOUNT DOUBLE) WITH (KAFKA_TOPIC='src', "
    "KEY_FORMAT='KAFKA', VALUE_FORMAT='DELIMITED');"
)
WINDOWS = [
    "",
    "WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 5 SECONDS)",
    "WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 4 SECONDS, GRACE PERIOD 3 SECONDS)",
]
CACHE = {"ksql.streams.cache.max.bytes.buffering": 10_000_000}
USERS = ["a", "b", "c", ""]  # "" is a null group key: skipped
Record = tuple[int, float | None, int, bool]
"""(user, amount or None, timestamp offset in ms, tombstone)"""


def _query(window: str) -> str:
    return (
        "CREATE TABLE AGG WITH (KAFKA_TOPIC='agg', VALUE_FORMAT='JSON') AS SELECT U, "
        "COUNT(*) AS N, SUM(AMOUNT) AS TOTAL, MAX(AMOUNT) AS TOP, COUNT(AMOUNT) AS AMOUNTS "
        f"FROM SRC {window} GROUP BY U EMIT CHANGES;"
    )


def _messages(records: list[Record], first_offset: int) -> list[Message]:
    out = []
    for i, (user, amount, ts, tombstone) in enumerate(records, first_offset):
        text = f"{USERS[user]},{'' if amount is None else amount}"
        out.append(
            Message(
                topic="src",
                value=None if tombstone else text.encode(),
                key=f"k{i}".encode(),
                partition=0,
                offset=i,
                timestamp=(1, 1_700_000_000_000 + ts),
            )
        )
    return out


class _Changelog:
    def __init__(self) -> None:
        self.records: dict[bytes, bytes | None] = {}

    def produce(self, _topic: str, value: bytes | None, key: bytes) -> None:
        self.records[key] = value


def _commit(stores: QueryStores) -> dict[bytes, bytes | None]:
    changelog = _Changelog()
    stores.flush(changelog)  # type: ignore[arg-type]
    stores.committed()
    return changelog.records


def _out(records: list[OutRecord]) -> list[tuple[bytes | None, bytes | None, int]]:
    return [(r.key, r.value, r.timestamp) for r in records]


_record = st.tuples(
    st.integers(0, len(USERS) - 1),
    st.one_of(st.none(), st.integers(-10_000, 10_000).map(lambda c: c / 100)),
    st.integers(0, 40_000),
    st.integers(0, 9).map(lambda x: x == 0),  # one record in ten a tombstone
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    window=st.sampled_from(WINDOWS),
    batches=st.lists(st.lists(_record, min_size=1, max_size=25), min_size=1, max_size=5),
    commit_every=st.integers(1, 3),
)
def test_record_cache_fast_path_equals_the_per_record_path(
    window: str, batches: list[list[Record]], commit_every: int
) -> None:
    """Batch by batch, the batch-wise path (column-wise pre-aggregation, one fold per group)
    emits what the exact per-record path emits with its updates deduplicated per key, and the
    two stores flush the same changelog at every commit and end with the same table; the
    per-record path without the cache, deduplicated per batch, agrees too."""
    fast, fast_proc, fast_stores = operator_from_sql(SOURCE, _query(window), CACHE)
    slow, _slow_proc, slow_stores = operator_from_sql(SOURCE, _query(window), CACHE)
    plain, _plain_proc, plain_stores = operator_from_sql(SOURCE, _query(window))
    assert caching(fast_proc.properties) and getattr(fast, "batch_wise", False)
    slow.batch_wise = False  # type: ignore[attr-defined]
    offset = 0
    for n, records in enumerate(batches, 1):
        messages = _messages(records, offset)
        offset += len(records)
        got = _out(fast.process_messages(messages))  # type: ignore[attr-defined]
        assert got == _out(slow.process_messages(messages))  # type: ignore[attr-defined]
        every = _out(plain.process_messages(messages))  # type: ignore[attr-defined]
        assert got == last_per_key(every, lambda r: r[0])
        if n % commit_every == 0:
            changelog = _commit(fast_stores)
            assert changelog == _commit(slow_stores) == _commit(plain_stores)
    assert _commit(fast_stores) == _commit(slow_stores)
    for name, store in fast_stores.stores.items():
        assert store.items() == slow_stores.stores[name].items()


def test_record_cache_is_ksqldbs_cache_size_property() -> None:
    assert caching({"cache.max.bytes.buffering": "10000000"})
    assert caching({"ksql.streams.cache.max.bytes.buffering": 1})
    assert not caching({"cache.max.bytes.buffering": 0})
    assert not caching({})


def test_a_batch_with_a_tombstone_takes_the_row_path_with_the_same_result() -> None:
    """The column-wise decoder declines a batch holding a tombstone; the row path skips it."""
    fast, _proc, _stores = operator_from_sql(SOURCE, _query(""), CACHE)
    records: list[Record] = [(0, 1.5, 0, False), (0, None, 1, True), (1, 2.0, 2, False)]
    out = fast.process_messages(_messages(records, 0))  # type: ignore[attr-defined]
    assert [(r.key, r.value) for r in out] == [
        (b"a", b'{"N":1,"TOTAL":1.5,"TOP":1.5,"AMOUNTS":1}'),
        (b"b", b'{"N":1,"TOTAL":2.0,"TOP":2.0,"AMOUNTS":1}'),
    ]
