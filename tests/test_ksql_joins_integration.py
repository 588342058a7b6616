"""Joins on the real broker: the demo's per-user join (`ksql/examples/30_per_user_join.sql`, run
as written) against rows computed independently with pandas, and a stream-table join whose
server is killed with SIGKILL mid-stream: the restarted server (its join state restored from the
join's changelog topic, its inputs read from the committed offsets only, exactly-once) writes
every joined row once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from services.common.kafka import client_config
from services.ksql_server.engine import Engine
from services.ksql_server.parser import split_statements

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "ksql" / "examples" / "30_per_user_join.sql"
N_USERS = 12
N_TX = 300

pytestmark = pytest.mark.slow

VS = ", ".join(f"V{i}" for i in range(1, 29))
DEMO = [
    "CREATE STREAM creditcardfraud_enahnced AS SELECT *, `USER` AS USERID "
    "FROM creditcardfraud_source;",
    # the demo's statement, as its notebook wrote it
    "CREATE STREAM creditcardfraud_per_user WITH (VALUE_FORMAT='AVRO', "
    "KAFKA_TOPIC='creditcardfraud_preprocessed_avro') AS "
    f"SELECT Time, {VS}, Amount, Class FROM creditcardfraud_enahnced c "
    "INNER JOIN USERS u on c.userid = u.userid "
    "WHERE V1 > 5 AND V2 IS NOT NULL AND u.CITY LIKE 'Premium%';",
]


def _users() -> list[dict[str, Any]]:
    cities = ["Premium Berlin", "Premium Paris", "Hamburg", "Lyon"]
    return [
        {"USERID": f"user{i}", "CITY": cities[i % len(cities)], "LEVEL": "gold"}
        for i in range(N_USERS)
    ]


def _transactions(n: int, seed: int = 7) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    v = rng.normal(4, 3, size=(n, 28)).round(4)
    frame = pd.DataFrame(v, columns=[f"V{i}" for i in range(1, 29)])
    frame.insert(0, "ID", range(n))
    frame.insert(1, "TIMESTAMP", "2026-12-03 10:00:00")
    # some users have no USERS row: the inner join drops them
    frame.insert(2, "USER", [f"user{i % (N_USERS + 3)}" for i in range(n)])
    frame.insert(3, "TIME", range(n))
    frame["AMOUNT"] = rng.lognormal(3, 1, n).round(2)
    frame["CLASS"] = ["1" if i % 17 == 0 else "0" for i in range(n)]
    return frame


def _line(row: pd.Series) -> bytes:
    values = [str(row["ID"]), row["TIMESTAMP"], row["USER"], str(row["TIME"])]
    values += [repr(float(row[f"V{i}"])) for i in range(1, 29)]
    values += [repr(float(row["AMOUNT"])), f'"{row["CLASS"]}"']
    return ",".join(values).encode()


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(client_config(bootstrap))
    for key, value in records:
        producer.produce(topic, value, key)
        producer.poll(0)
    assert producer.flush(30) == 0


def _expected(users: list[dict[str, Any]], tx: pd.DataFrame) -> pd.DataFrame:
    """The example's rows, computed with pandas (inner join, WHERE, projection)."""
    joined = tx.merge(pd.DataFrame(users), left_on="USER", right_on="USERID", how="inner")
    kept = joined[(joined.V1 > 5) & joined.V2.notna() & joined.CITY.str.startswith("Premium")]
    return kept[["ID", "USER", "CITY", "TIME", "V1", "V2", "AMOUNT", "CLASS"]]


def _read(bootstrap: str, registry_url: str, topic: str, want: int) -> pd.DataFrame:
    """The AVRO sink topic (read_committed) as a frame, once it holds `want` rows (or 60 s),
    read with Confluent's own deserializer."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    deser = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    consumer = Consumer(
        {
            **client_config(bootstrap),
            "group.id": f"t-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                ctx = SerializationContext(topic, MessageField.VALUE)
                rows.append({**deser(msg.value(), ctx), "USER": (msg.key() or b"").decode()})
                continue
            if len(rows) >= want:
                quiet_until = quiet_until or time.monotonic() + 2  # a late duplicate shows
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return pd.DataFrame(rows)


def _compare(got: pd.DataFrame, want: pd.DataFrame) -> None:
    cols = ["ID", "USER", "CITY", "TIME", "V1", "V2", "AMOUNT", "CLASS"]
    assert len(got) == len(want), (len(got), len(want))
    a = got[cols].sort_values("ID").reset_index(drop=True)
    b = want[cols].sort_values("ID").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def _statements() -> list[str]:
    texts = split_statements((ROOT / "ksql" / "01_source.sql").read_text())
    return texts + split_statements(EXAMPLE.read_text())


def _engine(bootstrap: str, registry_url: str, prefix: str) -> Engine:
    return Engine(
        bootstrap,
        registry_url,
        service_id=prefix,
        properties={"auto.offset.reset": "earliest"},
        topic_prefix=prefix,
        command_topic=False,
        fast=True,
        processing_log=False,
    )


def test_per_user_join_example_matches_pandas(
    kafka_bootstrap: str, schema_registry_url: str
) -> None:
    """The example, and (on a second engine: same sink name) the demo's own statement."""
    prefixes = [f"join_{uuid.uuid4().hex[:8]}_", f"demo_{uuid.uuid4().hex[:8]}_"]
    engines = [_engine(kafka_bootstrap, schema_registry_url, p) for p in prefixes]
    try:
        source, example = _statements()[:1], _statements()[1:]
        for text in source + example:
            engines[0].execute(text)
        for text in source + example[:1]:  # the source and USERS
            engines[1].execute(text)
        for text in DEMO:  # key-less, as ksqlDB's new planner allows
            engines[1].execute(text, {"ksql.new.query.planner.enabled": "true"})
        users, tx = _users(), _transactions(N_TX)
        lines = [(str(row["ID"]).encode(), _line(row)) for _, row in tx.iterrows()]
        for prefix, engine in zip(prefixes, engines, strict=True):
            _produce(
                kafka_bootstrap,
                prefix + "users",
                [(u["USERID"].encode(), json.dumps(u).encode()) for u in users],
            )
            assert engine.wait_until_caught_up(30)
            _produce(kafka_bootstrap, prefix + "creditcardfraud_source", lines)
        want = _expected(users, tx)
        assert 10 < len(want) < N_TX
        # the source is keyed by ID, joined on USER: re-keyed through ksqlDB's topic
        join_query = next(q for q in engines[0].queries if "PER_USER" in q)
        rekeyed = (
            f"{prefixes[0]}_confluent-ksql-{prefixes[0]}query_{join_query}-Join-left-repartition"
        )
        assert rekeyed in _topics(kafka_bootstrap)
        got = _read(
            kafka_bootstrap,
            schema_registry_url,
            prefixes[0] + "creditcardfraud_per_user",
            len(want),
        )
        _compare(got, want)
        demo = _read(
            kafka_bootstrap,
            schema_registry_url,
            prefixes[1] + "creditcardfraud_preprocessed_avro",
            len(want),
        )
        cols = ["TIME", *(f"V{i}" for i in range(1, 29)), "AMOUNT", "CLASS"]
        assert len(demo) == len(want)
        pd.testing.assert_frame_equal(
            demo[cols].sort_values("TIME").reset_index(drop=True),
            tx[tx.ID.isin(want.ID)][cols].sort_values("TIME").reset_index(drop=True),
            check_dtype=False,
        )
    finally:
        for engine in engines:
            engine.close()


SERVER = textwrap.dedent(
    """
    import json, os, sys, time
    from services.ksql_server.engine import Engine
    bootstrap, registry, prefix, stats = sys.argv[1:5]
    engine = Engine(bootstrap, registry, service_id=prefix, topic_prefix=prefix,
                    properties={"auto.offset.reset": "earliest",
                                "processing.guarantee": "exactly_once_v2"},
                    command_topic=True, fast=True, processing_log=False)
    for text in sys.argv[5:]:
        engine.execute(text)
    print("ready", flush=True)
    while True:  # what each query read since this server started
        counts = {q: query.processed for q, query in engine.queries.items()}
        with open(stats + ".tmp", "w") as f:
            json.dump(counts, f)
        os.replace(stats + ".tmp", stats)
        time.sleep(0.2)
    """
)


def _server(bootstrap: str, registry: str, prefix: str, statements: list[str], stats: Path) -> Any:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, bootstrap, registry, prefix, str(stats), *statements],
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == b"ready", line
    return proc


def _topics(bootstrap: str) -> set[str]:
    from confluent_kafka.admin import AdminClient

    return set(AdminClient(client_config(bootstrap)).list_topics(timeout=10).topics)


def test_stream_table_join_survives_kill_9(
    kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path
) -> None:
    prefix = f"joinkill_{uuid.uuid4().hex[:8]}_"
    users, tx = _users(), _transactions(N_TX, seed=11)
    stats = tmp_path / "stats.json"
    first = _server(kafka_bootstrap, schema_registry_url, prefix, _statements(), stats)
    try:
        _produce(
            kafka_bootstrap,
            prefix + "users",
            [(u["USERID"].encode(), json.dumps(u).encode()) for u in users],
        )
        time.sleep(2)  # the table side is read before the stream's first records
        lines = [(str(row["ID"]).encode(), _line(row)) for _, row in tx.iterrows()]
        _produce(kafka_bootstrap, prefix + "creditcardfraud_source", lines[: N_TX // 2])
        time.sleep(1.5)  # part of it joined and committed, the rest in flight
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    join_query = next(q for q in json.loads(stats.read_text()) if "PER_USER" in q)
    changelog = (
        f"{prefix}_confluent-ksql-{prefix}query_{join_query}-KafkaTopic_Right-Reduce-changelog"
    )
    assert changelog in _topics(kafka_bootstrap)  # the USERS side of the join, durable
    _produce(kafka_bootstrap, prefix + "creditcardfraud_source", lines[N_TX // 2 :])
    stats.unlink()
    second = _server(kafka_bootstrap, schema_registry_url, prefix, [], stats)  # replays commands
    try:
        want = _expected(users, tx)
        got = _read(
            kafka_bootstrap, schema_registry_url, prefix + "creditcardfraud_per_user", len(want)
        )
        _compare(got, want)  # every row, once
        read = json.loads(stats.read_text())[join_query]
        # USERS come back from the changelog; of the stream, what the first run had not
        # committed and the second half (without the restore it would be N_USERS + N_TX)
        assert read < N_USERS + N_TX, read
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait(10)
