"""The engine end to end on the real broker: persistent queries, push/pull queries, entities,
the processing log, Avro sinks, and command-topic replay with exactly-once."""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from services.ksql_server.engine import Engine
from services.ksql_server.engine_api import KsqlStatementError
from services.ksql_server.runtime.query import PersistentQuery

pytestmark = pytest.mark.slow


def _read_all(bootstrap: str, topic: str, expect: int, timeout: float = 15.0) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chk-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < expect:
            m = consumer.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m)
        end = time.monotonic() + 1.0  # catch duplicates arriving after the expected count
        while time.monotonic() < end:
            m = consumer.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m)
    finally:
        consumer.close()
    return out


@pytest.fixture
def engine(kafka_bootstrap: str, unique: str) -> Iterator[Engine]:
    eng = Engine(
        kafka_bootstrap,
        None,
        service_id=f"t{unique}_",
        topic_prefix=f"eng_{unique}_",
        command_topic=False,
        properties={"auto.offset.reset": "earliest"},
    )
    yield eng
    eng.close()
    _delete_prefixed(kafka_bootstrap, eng.ctx.topic_prefix)


def _delete_prefixed(bootstrap: str, prefix: str) -> None:
    """Remove the topics a test created (the broker is shared)."""
    from services.common.kafka import delete_topics, make_admin

    names = [
        t for t in make_admin(bootstrap).list_topics(timeout=10).topics if t.startswith(prefix)
    ]
    delete_topics(names, bootstrap)


def test_csas_filter_project_and_entities(engine: Engine, kafka_bootstrap: str) -> None:
    prefix = engine.ctx.topic_prefix
    entities = engine.execute(
        "CREATE STREAM src (K STRING KEY, ID BIGINT, NAME VARCHAR, AMOUNT DOUBLE) "
        "WITH (kafka_topic='src', value_format='DELIMITED', partitions=1);"
        "CREATE STREAM big WITH (value_format='JSON') AS SELECT K, ID, UCASE(NAME) AS N, "
        "MASK_LEFT(NAME, 2) AS M, AMOUNT * 2 AS A FROM src WHERE AMOUNT > 10;"
    )
    assert [e["@type"] for e in entities] == ["currentStatus", "currentStatus"]
    status = entities[1]["commandStatus"]
    assert status["status"] == "SUCCESS" and status["queryId"].startswith("CSAS_BIG_")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    # Recent timestamps: records dated 1970 are past the broker's 7-day retention, and its
    # periodic retention check may delete them before the query reads them (a CI flake).
    base = int(time.time() * 1000) - 60_000
    for i, line in enumerate([b"1,alice,5.0", b"2,bob,50.5", b"3,,20", b"not,a,number,x"]):
        producer.produce(prefix + "src", line, str(i).encode(), timestamp=base + i)
    producer.flush()
    assert engine.wait_until_caught_up(20)
    records = _read_all(kafka_bootstrap, prefix + "BIG", 2)
    assert [(m.key(), json.loads(m.value()), m.timestamp()[1]) for m in records] == [
        (b"1", {"ID": 2, "N": "BOB", "M": "xxb", "A": 101.0}, base + 1),
        (b"2", {"ID": 3, "N": None, "M": None, "A": 40.0}, base + 2),
    ]
    assert engine.plog.count == 1  # the malformed record went to the processing log
    [entry] = _read_all(kafka_bootstrap, prefix + f"{engine.service_id}ksql_processing_log", 1)
    logged = json.loads(entry.value())
    assert logged["level"] == "ERROR" and logged["logger"].startswith("processing.CSAS_BIG_")
    assert "Unexpected field count" in logged["message"]["deserializationError"]["errorMessage"]
    assert logged["code"] == "deserialize_value"  # docs/errors.md: what tools count by

    shown = engine.execute("SHOW STREAMS; SHOW QUERIES; DESCRIBE big; SHOW TOPICS;")
    streams = {s["name"]: s for s in shown[0]["streams"]}
    assert streams["BIG"] == {
        "type": "STREAM",
        "name": "BIG",
        "topic": "BIG",
        "keyFormat": "KAFKA",
        "valueFormat": "JSON",
        "isWindowed": False,
    }
    assert shown[1]["queries"][0]["state"] == "RUNNING"
    fields = shown[2]["sourceDescription"]["fields"]
    assert fields[0] == {
        "name": "K",
        "schema": {"type": "STRING", "fields": None, "memberSchema": None},
        "type": "KEY",
    }
    assert [f["name"] for f in fields] == ["K", "ID", "N", "M", "A"]
    assert {"name": "BIG", "replicaInfo": [1]} in shown[3]["topics"]

    with pytest.raises(KsqlStatementError) as err:
        engine.execute("SHOW STREAMS; DROP STREAM src;")
    assert err.value.error_code == 40001 and "CSAS_BIG_" in err.value.message
    assert [e["@type"] for e in err.value.entities] == ["streams"]
    with pytest.raises(KsqlStatementError) as err2:
        engine.execute("SELECT * FROM big EMIT CHANGES;")
    assert err2.value.error_code == 40002
    dropped = engine.execute("DROP STREAM big DELETE TOPIC;")
    assert dropped[0]["commandStatus"]["message"] == "Source `BIG` (topic: BIG) was dropped."
    assert not engine.queries


def test_push_and_pull_queries(engine: Engine, kafka_bootstrap: str) -> None:
    prefix = engine.ctx.topic_prefix
    engine.execute(
        "CREATE STREAM s (ID INT KEY, V INT) WITH (kafka_topic='s', "
        "value_format='JSON', partitions=1);"
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(5):
        producer.produce(prefix + "s", json.dumps({"V": i}).encode(), struct.pack(">i", i))
    producer.flush()

    async def run() -> tuple[list[list[Any]], list[list[Any]], str]:
        pull = await engine.start_query("SELECT ID, V * 10 AS W FROM s WHERE V >= 2;")
        pulled = [row async for row in pull.rows]
        push = await engine.start_query(
            "SELECT * FROM s EMIT CHANGES LIMIT 3;", {"auto.offset.reset": "earliest"}
        )
        pushed = [row async for row in push.rows]
        return pulled, pushed, push.schema

    pulled, pushed, schema = asyncio.run(run())
    assert pulled == [[2, 20], [3, 30], [4, 40]]
    assert pushed == [[0, 0], [1, 1], [2, 2]]
    assert schema == "`ID` INTEGER, `V` INTEGER"


def test_insert_values_and_insert_into(engine: Engine, kafka_bootstrap: str) -> None:
    prefix = engine.ctx.topic_prefix
    engine.execute(
        "CREATE STREAM a (K STRING KEY, V INT) WITH (kafka_topic='a', value_format='JSON', "
        "partitions=1); CREATE STREAM b (K STRING KEY, V INT) WITH (kafka_topic='b', "
        "value_format='JSON', partitions=1); INSERT INTO b SELECT * FROM a;"
    )
    assert engine.execute("INSERT INTO a (K, V, ROWTIME) VALUES ('x', 42, 12345);") == []
    assert engine.wait_until_caught_up(20)
    [record] = _read_all(kafka_bootstrap, prefix + "b", 1)
    assert (record.key(), json.loads(record.value()), record.timestamp()[1]) == (
        b"x",
        {"V": 42},
        12345,
    )


def test_command_topic_replay_resumes_exactly_once(kafka_bootstrap: str, unique: str) -> None:
    """Stop the engine mid-stream; a new one replays the command topic and the query resumes
    from its committed offsets: every input exactly once in the sink."""
    service = f"r{unique}_"
    source, sink = f"replay_src_{unique}", f"replay_out_{unique}"
    props = {"auto.offset.reset": "earliest", "processing.guarantee": "exactly_once_v2"}
    first = Engine(kafka_bootstrap, None, service_id=service, properties=props)
    first.execute(
        f"CREATE STREAM s (ID BIGINT KEY, V INT) WITH (kafka_topic='{source}', "
        "value_format='JSON', partitions=2);"
    )
    created = first.execute(f"CREATE STREAM o WITH (kafka_topic='{sink}') AS SELECT ID, V FROM s;")
    # the query id is the command's offset; commit markers take offsets too (as in ksqlDB)
    query_id = created[0]["commandStatus"]["queryId"]
    assert query_id == f"CSAS_O_{created[0]['commandSequenceNumber']}" == "CSAS_O_2"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def produce(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            producer.produce(source, json.dumps({"V": i}).encode(), struct.pack(">q", i))
        producer.flush()

    produce(0, 300)
    assert first.wait_until_caught_up(30)
    first.close()
    produce(300, 600)
    second = Engine(kafka_bootstrap, None, service_id=service, properties=props)
    try:
        assert second.replay_errors == []
        assert list(second.queries) == [query_id]
        assert second.queries[query_id].exactly_once
        assert second.wait_until_caught_up(30)
        values = [json.loads(m.value())["V"] for m in _read_all(kafka_bootstrap, sink, 600)]
        assert sorted(values) == list(range(600))
        second.execute("DROP STREAM o DELETE TOPIC; DROP STREAM s DELETE TOPIC;")
    finally:
        second.close()
        _delete_prefixed(kafka_bootstrap, f"_confluent-ksql-{service}_command_topic")


def test_replay_starts_only_the_queries_still_running_at_its_end(
    kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query that a later TERMINATE or DROP ended is never started by a replay: starting it
    joined its group and fenced its transactional id only to stop it again, most of a used
    stack's start-up. The one still running starts once the replay is done."""
    service, prefix = f"q{unique}_", f"rq_{unique}_"
    props = {"auto.offset.reset": "earliest", "processing.guarantee": "exactly_once_v2"}

    def engine() -> Engine:
        return Engine(
            kafka_bootstrap, None, service_id=service, topic_prefix=prefix, properties=props
        )

    def create(name: str) -> str:
        entity = first.execute(f"CREATE STREAM {name} AS SELECT ID, V FROM s;")[0]
        return str(entity["commandStatus"]["queryId"])

    first = engine()
    try:
        first.execute(
            "CREATE STREAM s (ID BIGINT KEY, V INT) WITH (kafka_topic='src', "
            "value_format='JSON', partitions=1);"
        )
        terminated, dropped = create("a"), create("b")
        first.execute(f"TERMINATE {terminated}; TERMINATE {dropped}; DROP STREAM b;")
        running = create("c")
    finally:
        first.close()
    started: list[str] = []
    start = PersistentQuery.start

    def recording_start(query: PersistentQuery) -> None:
        started.append(query.query_id)
        start(query)

    monkeypatch.setattr(PersistentQuery, "start", recording_start)
    second = engine()
    try:
        assert second.replay_errors == []
        assert started == [running]
        assert list(second.queries) == [running]
        assert second.wait_until_caught_up(30)
    finally:
        second.close()
        _delete_prefixed(kafka_bootstrap, prefix)
        _delete_prefixed(kafka_bootstrap, f"_confluent-ksql-{service}_command_topic")


def test_demo_preprocessing_to_avro(
    schema_registry_url: str, kafka_bootstrap: str, unique: str
) -> None:
    """The pipeline's statements (ksql/01, 02): 34-field DELIMITED → AVRO, read back with
    confluent-kafka's AvroDeserializer."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from services.ksql_server.parser import split_statements

    engine = Engine(
        kafka_bootstrap,
        schema_registry_url,
        service_id=f"d{unique}_",
        topic_prefix=f"demo_{unique}_",
        command_topic=False,
    )
    try:
        for path in ("ksql/01_source.sql", "ksql/02_preprocessed.sql"):
            sql = open(path).read()  # noqa: SIM115
            assert split_statements(sql)
            engine.execute(sql)
        prefix = engine.ctx.topic_prefix
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        fields = ["0.5"] * 28
        for i, label in enumerate(['"0"', "", '"1"']):
            line = ",".join(
                [str(i), '"2020-01-01 00:00:00"', f"user{i}", str(i), *fields, "12.5", label]
            )
            producer.produce(prefix + "creditcardfraud_source", line.encode(), str(i).encode())
        producer.flush()
        assert engine.wait_until_caught_up(30)
        records = _read_all(kafka_bootstrap, prefix + "creditcardfraud_preprocessed_avro", 2)
        deserializer = AvroDeserializer(SchemaRegistryClient({"url": schema_registry_url}))
        ctx = SerializationContext(prefix + "creditcardfraud_preprocessed_avro", MessageField.VALUE)
        rows = sorted((deserializer(m.value(), ctx) for m in records), key=lambda r: r["ID"])
        assert [(r["ID"], r["CLASS"], r["USER"], r["V28"], r["AMOUNT"]) for r in rows] == [
            (0, "0", "user0", 0.5, 12.5),
            (2, "1", "user2", 0.5, 12.5),
        ]
        assert len(rows[0]) == 34
    finally:
        engine.close()
        _delete_prefixed(kafka_bootstrap, f"demo_{unique}_")
        registry = SchemaRegistryClient({"url": schema_registry_url})
        for subject in registry.get_subjects():
            if subject.startswith(f"demo_{unique}_"):
                registry.delete_subject(subject)
                registry.delete_subject(subject, permanent=True)


def _set_topic_config(bootstrap: str, topic: str, name: str, value: str | None) -> None:
    """Set (or, with None, delete) one config of a topic on the broker."""
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    from services.common.kafka import make_admin

    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    entry = ConfigEntry(name, value or "", incremental_operation=op)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = make_admin(bootstrap)  # kept alive until the futures are done
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(15)


def test_command_topic_write_failure_leaves_no_trace(kafka_bootstrap: str, unique: str) -> None:
    """The broker refuses the command record (the command topic's max.message.bytes is set below
    any command's size, above a transaction marker's, so the abort can still be written): the
    statement answers ksqlDB's 50000 statement_error, no stream or query
    exists, and none appears after a restart. A statement that succeeds is in the command topic
    before its stream exists."""
    from starlette.testclient import TestClient

    from services.ksql_server.rest import create_app

    service = f"w{unique}_"
    source, sink = f"wfail_src_{unique}", f"wfail_out_{unique}"
    first = Engine(kafka_bootstrap, None, service_id=service)
    assert first._commands is not None
    command_topic = first._commands.topic
    logged_before_put: list[int] = []
    put = first.metastore.put

    def put_after_checking_the_log(source: Any) -> None:
        assert first._commands is not None
        logged_before_put.append(len(first._commands.read_all()))
        put(source)

    first.metastore.put = put_after_checking_the_log  # type: ignore[method-assign]
    try:
        first.execute(
            f"CREATE STREAM s (ID BIGINT KEY, V INT) WITH (kafka_topic='{source}', "
            "value_format='JSON', partitions=1);"
        )
        assert logged_before_put == [1]  # the command was committed before the stream existed
        _set_topic_config(kafka_bootstrap, command_topic, "max.message.bytes", "150")
        client = TestClient(create_app(first))
        for statement in (
            f"CREATE STREAM o WITH (kafka_topic='{sink}') AS SELECT ID, V FROM s;",
            f"CREATE STREAM s2 (ID BIGINT KEY, V INT) WITH (kafka_topic='{source}', "
            "value_format='JSON');",
        ):
            response = client.post("/ksql", json={"ksql": statement})
            assert response.status_code == 500, response.text
            body = response.json()
            assert body["@type"] == "statement_error" and body["error_code"] == 50000
            assert body["message"] == (
                f"Could not write the statement '{statement}' into the command topic."
            )
            assert "Exception" not in response.text and "Error" not in body["message"]
        assert first.metastore.get("O") is None and first.metastore.get("S2") is None
        assert list(first.queries) == []
        shown = first.execute("SHOW STREAMS;")[0]["streams"]
        assert [s["name"] for s in shown] == ["S"]
        _set_topic_config(kafka_bootstrap, command_topic, "max.message.bytes", None)
        # the command topic producer recovers from the aborted transaction
        created = first.execute(
            f"CREATE STREAM o2 WITH (kafka_topic='{sink}') AS SELECT ID, V FROM s;"
        )
        query_id = created[0]["commandStatus"]["queryId"]
    finally:
        first.close()
    second = Engine(kafka_bootstrap, None, service_id=service)
    try:
        assert second.replay_errors == []
        assert sorted(second.metastore.sources) == ["O2", "S"]
        assert list(second.queries) == [query_id]
        second.execute("DROP STREAM o2 DELETE TOPIC; DROP STREAM s DELETE TOPIC;")
    finally:
        second.close()
        _delete_prefixed(kafka_bootstrap, f"_confluent-ksql-{service}_command_topic")
