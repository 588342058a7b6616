"""HAVING retractions without Kafka: ksqlDB's table filter forwards a row that fails HAVING as a
tombstone only when the key's (window's) old value had passed, so a group or window that never
passed writes nothing; the same rule holds per record, under the record cache, for GROUP BY
with and without windows (QTT having.json 'table having', group-by.json 'windowed join')."""

from __future__ import annotations

import pytest
from confluent_kafka import Message

from services.ksql_server.runtime.inprocess import operator_from_sql

SOURCE = (
    "CREATE STREAM TEST (ID BIGINT KEY, NAME STRING, V BIGINT) WITH (KAFKA_TOPIC='test_topic', "
    "VALUE_FORMAT='DELIMITED');"
)
WINDOWS = [
    "",
    "WINDOW TUMBLING (SIZE 30 SECONDS)",
    "WINDOW HOPPING (SIZE 30 SECONDS, ADVANCE BY 30 SECONDS)",
    "WINDOW SESSION (30 SECONDS)",
]
CACHE = {"ksql.streams.cache.max.bytes.buffering": 10_000_000}


def _query(window: str) -> str:
    return (
        "CREATE TABLE T1 WITH (KAFKA_TOPIC='t1') AS SELECT ID, SUM(V) AS S FROM TEST "
        f"{window} GROUP BY ID HAVING SUM(V) > 100;"
    )


def _messages(records: list[tuple[int, int]]) -> list[Message]:
    return [
        Message(
            topic="test_topic",
            value=f"x,{v}".encode(),
            key=key.to_bytes(8, "big"),
            partition=0,
            offset=i,
            timestamp=(1, 1000 + i),
        )
        for i, (key, v) in enumerate(records)
    ]


def _values(window: str, records: list[tuple[int, int]], cached: bool) -> list[bytes | None]:
    op, _proc, _stores = operator_from_sql(SOURCE, _query(window), CACHE if cached else None)
    out = []
    for message in _messages(records):  # one batch per record: every update is emitted
        out += op.process_messages([message])  # type: ignore[attr-defined]
    return [r.value for r in out]


@pytest.mark.parametrize("window", WINDOWS)
def test_a_group_that_never_passed_having_writes_no_tombstone(window: str) -> None:
    """having.json 'table having': key 0 never passes, key 1 passes then fails."""
    got = _values(window, [(0, 0), (1, 101), (1, -5)], cached=False)
    assert got == [b"101", None]


@pytest.mark.parametrize("window", WINDOWS)
def test_a_group_that_fails_again_is_retracted_once(window: str) -> None:
    got = _values(window, [(1, 101), (1, -5), (1, -5), (1, 10)], cached=False)
    assert got == [b"101", None, b"101"]


@pytest.mark.parametrize("window", WINDOWS)
def test_the_record_cache_judges_the_old_value_before_the_batch(window: str) -> None:
    """One batch: the last update per key, a retraction only where the value before the batch
    had passed (key 0 passed before the batch, key 1 did not)."""
    op, _proc, _stores = operator_from_sql(SOURCE, _query(window), CACHE)
    first = op.process_messages(_messages([(0, 101)]))  # type: ignore[attr-defined]
    assert [r.value for r in first] == [b"101"]
    batch = _messages([(0, -5), (0, -5), (1, 101), (1, -5)])
    got = op.process_messages(batch)  # type: ignore[attr-defined]
    assert [r.value for r in got] == [None]
