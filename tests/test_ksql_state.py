"""State stores and the basic aggregates, without Kafka: the undo log, the changelog records a
flush writes and what a restore rebuilds from them, retention, and COUNT/SUM/MIN/MAX."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.ksql_server import types as T
from services.ksql_server.functions import aggregates_basic  # noqa: F401 - registers
from services.ksql_server.functions.aggregates import resolve_aggregate
from services.ksql_server.state import KeyValueStore, changelog_topic


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
