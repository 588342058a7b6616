"""Tables, GROUP BY and state stores on the real broker.

An aggregation's state lives in a store backed by its changelog topic (named as ksqlDB names
it, compacted); the output is one update per input record. The restart test SIGKILLs an engine
process in the middle of a GROUP BY under exactly_once_v2, starts a new engine (which replays its
statements, restores the store from the changelog and resumes from the committed offsets) and
checks the output changelog: per key, the counts 1, 2, … n, each once — nothing lost, nothing
counted twice — as a run never killed writes it; the same for a tumbling-window aggregation
(per user and window).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from test_scorer_support import read_all

from services.common.kafka import make_admin
from services.ksql_server.engine import Engine
from services.ksql_server.runtime.table import find_view
from services.ksql_server.state import changelog_topic

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def _produce(
    bootstrap: str,
    topic: str,
    rows: Sequence[tuple[str, str | None]],
    stamps: Sequence[int] | None = None,
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, (key, value) in enumerate(rows):
        value_bytes = None if value is None else value.encode()
        if stamps is None:
            producer.produce(topic, value_bytes, key.encode())
        else:
            producer.produce(topic, value_bytes, key.encode(), timestamp=stamps[i])
    assert producer.flush(30) == 0


def _cleanup(bootstrap: str, prefix: str) -> None:
    admin = make_admin(bootstrap)
    names = [t for t in admin.list_topics(timeout=10).topics if prefix in t]
    if names:
        admin.delete_topics(names, operation_timeout=10)


def _key(m: Any) -> str:
    return str(m.key().decode())


def _table(messages: list[Any]) -> dict[str, Any]:
    """The last value per key of a changelog topic (tombstones delete)."""
    out: dict[str, Any] = {}
    for m in messages:
        key = _key(m)
        if m.value() is None:
            out.pop(key, None)
        else:
            out[key] = json.loads(m.value())
    return out


def test_group_by_over_a_stream_and_a_table(kafka_bootstrap: str, unique: str) -> None:
    """COUNT/SUM per user over a stream, COUNT per city over a table (updates move a row from
    one group to another, tombstones take it out), a CTAS filter over the table, and the
    stores' changelog topics and read views."""
    service = f"tables_{unique}_"
    engine = Engine(
        kafka_bootstrap,
        None,
        service_id=service,
        properties={"auto.offset.reset": "earliest"},
        command_topic=False,
        processing_log=False,
    )
    tx, users = f"tx_{unique}", f"users_{unique}"
    try:
        engine.execute(
            f"CREATE STREAM TX (USERID STRING KEY, AMOUNT DOUBLE) WITH (KAFKA_TOPIC='{tx}', "
            "VALUE_FORMAT='JSON', PARTITIONS=2);"
            f"CREATE TABLE USERS (USERID STRING PRIMARY KEY, CITY STRING) WITH "
            f"(KAFKA_TOPIC='{users}', VALUE_FORMAT='JSON', PARTITIONS=1);"
            f"CREATE TABLE PER_USER WITH (KAFKA_TOPIC='per_user_{unique}') AS SELECT USERID, "
            "COUNT(*) AS N, SUM(AMOUNT) AS TOTAL FROM TX GROUP BY USERID;"
            f"CREATE TABLE PER_CITY WITH (KAFKA_TOPIC='per_city_{unique}') AS SELECT CITY, "
            "COUNT(*) AS N FROM USERS GROUP BY CITY HAVING COUNT(*) > 0;"
            f"CREATE TABLE PREMIUM WITH (KAFKA_TOPIC='premium_{unique}') AS SELECT USERID, CITY "
            "FROM USERS WHERE CITY LIKE 'Premium%';"
        )
        amounts = [(f"u{i % 7}", float(i)) for i in range(200)]
        _produce(kafka_bootstrap, tx, [(u, json.dumps({"AMOUNT": a})) for u, a in amounts])
        city_rows = [
            ("a", {"CITY": "Premium Paris"}),
            ("b", {"CITY": "Lyon"}),
            ("a", {"CITY": "Lyon"}),  # moves from Premium Paris to Lyon
            ("c", {"CITY": "Premium Oslo"}),
            ("b", None),  # deleted
        ]
        _produce(
            kafka_bootstrap,
            users,
            [(k, None if v is None else json.dumps(v)) for k, v in city_rows],
        )
        assert engine.wait_until_caught_up(60)
        assert all(q.error is None for q in engine.queries.values())

        per_user = read_all(f"per_user_{unique}", kafka_bootstrap)
        assert len(per_user) == len(amounts)  # one update per input record
        counts, sums = Counter[str](), defaultdict[str, float](float)
        for u, a in amounts:
            counts[u] += 1
            sums[u] += a
        assert _table(per_user) == {u: {"N": counts[u], "TOTAL": sums[u]} for u in counts}

        per_city = [(_key(m), m.value()) for m in read_all(f"per_city_{unique}", kafka_bootstrap)]
        assert per_city == [
            ("Premium Paris", b'{"N":1}'),
            ("Lyon", b'{"N":1}'),
            ("Premium Paris", None),  # HAVING COUNT(*) > 0 retracts the emptied group
            ("Lyon", b'{"N":2}'),
            ("Premium Oslo", b'{"N":1}'),
            ("Lyon", b'{"N":1}'),
        ]
        premium = [(_key(m), m.value()) for m in read_all(f"premium_{unique}", kafka_bootstrap)]
        assert premium == [
            ("a", b'{"CITY":"Premium Paris"}'),
            ("a", None),  # left the filter: deleted from the output
            ("c", b'{"CITY":"Premium Oslo"}'),
        ]

        query = next(q for q in engine.queries.values() if q.sink.name == "PER_USER")
        topic = changelog_topic(service, query.query_id, "Aggregate-Aggregate-Materialize")
        admin = make_admin(kafka_bootstrap)
        from confluent_kafka.admin import ConfigResource

        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        config = admin.describe_configs([res])[res].result(15)
        assert config["cleanup.policy"].value == "compact"
        view = find_view(engine.queries.values(), "PER_USER")
        assert view is not None and view.get(["u3"]) == (counts["u3"], sums["u3"])
        city_view = find_view(engine.queries.values(), "PER_CITY")
        assert city_view is not None
        assert dict(city_view.scan()) == {("Lyon",): (1,), ("Premium Oslo",): (1,)}
    finally:
        engine.close()
        _cleanup(kafka_bootstrap, unique)


def _start(service: str, statements: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "ksql_engine_process.py"), service, *statements],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


KILL_CASES = {
    "group_by": "",
    "windowed": "WINDOW TUMBLING (SIZE 1 MINUTE) ",
}


@pytest.mark.parametrize("case", sorted(KILL_CASES))
def test_kill_9_during_an_aggregation_loses_and_repeats_nothing(
    kafka_bootstrap: str, unique: str, case: str
) -> None:
    """GROUP BY, and the same in a tumbling window (records one tenth of a second apart over
    five minutes: five windows per user): kill -9 in the middle, restart, and the output holds
    per key (per user and window) the counts 1, 2, … n, each once, as a run never killed."""
    window = KILL_CASES[case]
    service = f"tables_kill_{case}_{unique}_"
    source = f"clicks_{case}_{unique}"
    statements = [
        f"CREATE STREAM CLICKS (USERID STRING KEY, N INT) WITH (KAFKA_TOPIC='{source}', "
        "VALUE_FORMAT='JSON', PARTITIONS=2);",
        f"CREATE TABLE COUNTS_{unique} AS SELECT USERID, COUNT(*) AS N FROM CLICKS "
        f"{window}GROUP BY USERID;",
    ]
    sink = f"COUNTS_{unique}".upper()
    base = (int(time.time() * 1000) // 60_000 - 10) * 60_000  # recent: within retention
    rows = [(f"u{i % 13}", json.dumps({"N": i})) for i in range(3000)]
    stamps = [base + i * 100 for i in range(len(rows))]
    proc = _start(service, statements)
    successor: Engine | None = None
    try:
        _produce(kafka_bootstrap, source, rows[:1500], stamps[:1500])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill once part of the input is aggregated
            done = len(read_all(sink, kafka_bootstrap)) if _exists(kafka_bootstrap, sink) else 0
            if done >= 300:
                break
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _produce(kafka_bootstrap, source, rows[1500:], stamps[1500:])
        # the successor runs in this process (already imported: a second process costs ~15 s)
        successor = Engine(
            kafka_bootstrap,
            None,
            service_id=service,
            properties={"auto.offset.reset": "earliest", "processing.guarantee": "exactly_once_v2"},
            processing_log=False,
        )
        assert len(successor.queries) == 1  # replayed from the command topic
        deadline = time.monotonic() + 120
        while True:
            updates = read_all(sink, kafka_bootstrap)
            if len(updates) >= len(rows) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(1)
        updates = read_all(sink, kafka_bootstrap)
        seen: dict[Any, list[int]] = defaultdict(list)
        for m in updates:
            seen[_window_key(m.key(), bool(window))].append(json.loads(m.value() or b"null")["N"])
        expected = Counter(
            (u, (ts // 60_000) * 60_000) if window else u
            for (u, _), ts in zip(rows, stamps, strict=True)
        )
        # the changelog a run never killed writes: per key 1, 2, … n, each exactly once
        assert {k: v for k, v in seen.items()} == {
            k: list(range(1, n + 1)) for k, n in expected.items()
        }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if successor is not None:
            successor.close()
        _cleanup(kafka_bootstrap, unique)


def _window_key(key: bytes | None, windowed: bool) -> Any:
    """A sink key: the user, or (user, window start) of a time-windowed key (KAFKA STRING
    followed by the window start as a big-endian 8-byte long)."""
    assert key is not None
    if not windowed:
        return key.decode()
    return key[:-8].decode(), int.from_bytes(key[-8:], "big")


def _exists(bootstrap: str, topic: str) -> bool:
    return topic in make_admin(bootstrap).list_topics(timeout=10).topics
