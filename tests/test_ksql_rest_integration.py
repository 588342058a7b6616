"""The KSQL server end to end on the real broker and Schema Registry (marked slow).

- the demo notebook's ksql-python-ng calls, unchanged, and the Avro records read back with
  confluent-kafka's AvroDeserializer;
- `fraudstream ksql apply` of the project's ksql/ files (renamed onto fresh topics), twice, and
  `fraudstream ksql query`;
- kill -9 of a server while a persistent query runs: after the restart the sink holds every
  input at least once (default) or exactly once (exactly_once_v2);
- fuzzed statements against the real engine never get a 500 or a stack trace.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.kafka import (
    count_records,
    delete_topics,
    ensure_topic,
    make_consumer,
    make_producer,
)
from services.common.process import free_port
from services.common.settings import get_settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DEMO_COLUMNS = (
    ["Id bigint", "Timestamp varchar", "User varchar", "Time int"]
    + [f"V{i} double" for i in range(1, 29)]
    + ["Amount double", "Class string"]
)
FEATURES = ["Time", *[f"V{i}" for i in range(1, 29)], "Amount", "Class"]


def delimited_row(i: int, labelled: bool) -> bytes:
    """One source value in the demo's 34-field layout; Amount = i + 0.25 identifies it."""
    features = ",".join(f"{0.1 * j:.1f}" for j in range(28))
    label = '"1"' if labelled and i % 5 == 0 else ('"0"' if labelled else "")
    return f'{i},"2019-01-01 00:00:{i % 60:02d}",user{i % 7},{i},{features},{i}.25,{label}'.encode()


def produce(topic: str, values: list[bytes]) -> None:
    producer = make_producer()
    for value in values:
        producer.produce(topic, value)
    producer.flush(30)


def read_avro(
    topic: str, registry_url: str, count: int, timeout: float = 60
) -> list[dict[str, Any]]:
    """`count` records of `topic` decoded with confluent-kafka's own AvroDeserializer."""
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    values = [
        deserializer(raw, SerializationContext(topic, MessageField.VALUE))
        for raw in read_raw(topic, count, timeout)
    ]
    return [v for v in values if v is not None]


def read_raw(topic: str, count: int, timeout: float = 60) -> list[bytes]:
    consumer: Consumer = make_consumer(f"it-read-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                value = message.value()
                if message.error() is None and value is not None:
                    out.append(value)
    finally:
        consumer.close()
    return out


def read_ids(topic: str, total: int, timeout: float) -> list[int]:
    """IDs of a JSON sink (read_committed), until all of 0..total-1 are there and a second
    has passed without a new record (so duplicates written late are counted too)."""
    consumer: Consumer = make_consumer(f"it-ids-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    ids: list[int] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            messages = [m for m in consumer.consume(500, 0.3) if m.error() is None]
            values = [m.value() for m in messages]
            ids += [json.loads(v)["ID"] for v in values if v is not None]
            if messages:
                quiet_since = time.monotonic()
            elif len(set(ids)) >= total and time.monotonic() - quiet_since > 1.0:
                break
    finally:
        consumer.close()
    return ids


@pytest.fixture
def topics() -> Iterator[list[str]]:
    """Topics this test uses; deleted afterwards with their value subjects."""
    created: list[str] = []
    yield created
    delete_topics(created)
    registry = get_settings().schema_registry_url
    for topic in created:
        with contextlib.suppress(httpx.HTTPError):  # a stale subject harms no other test
            httpx.delete(f"{registry}/subjects/{topic}-value", timeout=5)


def drop_streams(url: str, names: list[str]) -> None:
    """Terminate the queries writing into `names`, then drop them: the shared server keeps
    nothing of a test once it ends."""
    wanted = {n.upper() for n in names}

    def ksql(sql: str) -> Any:
        return httpx.post(f"{url}/ksql", json={"ksql": sql}, timeout=30).json()

    for query in ksql("SHOW QUERIES;")[0]["queries"]:
        if wanted & set(query["sinks"]):
            ksql(f"TERMINATE {query['id']};")
    for name in wanted:
        ksql(f"DROP STREAM IF EXISTS {name};")


@pytest.fixture
def streams(ksql_url: str, topics: list[str]) -> Iterator[list[str]]:
    """Streams this test creates on the shared server (dropped before its topics go)."""
    created: list[str] = []
    yield created
    drop_streams(ksql_url, created)


# -- the demo notebook, unchanged --------------------------------------------------------------


def test_demo_notebook_calls(
    ksql_url: str, schema_registry_url: str, unique: str, topics: list[str], streams: list[str]
) -> None:
    from ksql import KSQLAPI  # type: ignore[attr-defined]

    source, sink = f"it_demo_src_{unique}", f"it_demo_pre_{unique}"
    topics += [source, sink]
    streams += [f"ccf_source_{unique}", f"ccf_pre_{unique}"]
    ensure_topic(source, 1)
    client = KSQLAPI(ksql_url)
    assert client.create_stream(
        table_name=f"ccf_source_{unique}",
        columns_type=DEMO_COLUMNS,
        topic=source,
        value_format="DELIMITED",
    )
    produce(source, [delimited_row(i, labelled=i % 3 != 0) for i in range(30)])
    assert client.create_stream_as(
        table_name=f"ccf_pre_{unique}",
        select_columns=FEATURES,
        src_table=f"ccf_source_{unique}",
        kafka_topic=sink,
        value_format="AVRO",
        conditions="Class IS NOT NULL",
    )
    # The persistent query starts at the end of the source (ksqlDB's default): feed rounds of
    # new rows until the first reach the sink, then one more round that must arrive whole.
    late: list[int] = []
    for start in range(100, 400, 10):
        produce(source, [delimited_row(i, labelled=i % 3 != 0) for i in range(start, start + 10)])
        late += range(start, start + 10)
        if read_raw(sink, 1, timeout=1.0):
            break
    final = range(late[-1] + 1, late[-1] + 11)
    produce(source, [delimited_row(i, labelled=i % 3 != 0) for i in final])
    labelled = {i for i in [*late, *final] if i % 3 != 0}

    earliest = {"auto.offset.reset": "earliest"}
    sql = f"SELECT * FROM ccf_source_{unique} EMIT CHANGES LIMIT 5"
    http1 = "".join(client.query(sql, stream_properties=earliest))
    parsed = json.loads(http1)
    assert "`AMOUNT` DOUBLE" in parsed[0]["header"]["schema"]
    assert [r["row"]["columns"][0] for r in parsed[1:6]] == [0, 1, 2, 3, 4]
    assert parsed[-1] == {"finalMessage": "Limit Reached"}
    rows = list(client.query(sql, stream_properties=earliest, use_http2=True, parse=True))
    assert [r["ID"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["CLASS"] is None and rows[1]["CLASS"] == "0" and rows[1]["AMOUNT"] == 1.25

    names = [s["name"] for s in client.ksql("SHOW STREAMS")[0]["streams"]]
    assert {f"CCF_SOURCE_{unique}".upper(), f"CCF_PRE_{unique}".upper()} <= set(names)

    final_labelled = {i for i in final if i % 3 != 0}
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while not final_labelled <= {round(r["AMOUNT"] - 0.25) for r in records}:
        assert time.monotonic() < deadline, "the last round never reached the sink"
        records = read_avro(sink, schema_registry_url, len(labelled), timeout=2)
    assert {round(r["AMOUNT"] - 0.25) for r in records} <= labelled
    assert all(r["CLASS"] in ("0", "1") for r in records)
    assert list(records[0]) == [c.upper() for c in FEATURES]
    schema = SchemaRegistryClient({"url": schema_registry_url}).get_latest_version(f"{sink}-value")
    assert schema.schema.schema_str is not None
    doc = json.loads(schema.schema.schema_str)
    assert (doc["namespace"], doc["name"]) == (
        "io.confluent.ksql.avro_schemas",
        "KsqlDataSourceSchema",
    )
    assert all(f["type"][0] == "null" and f["default"] is None for f in doc["fields"])


def test_inserts_pull_push_and_close_query(
    ksql_url: str, unique: str, topics: list[str], streams: list[str]
) -> None:
    from ksql import KSQLAPI  # type: ignore[attr-defined]

    name = f"it_ins_{unique}"
    topics.append(name)
    streams.append(name)
    client = KSQLAPI(ksql_url)
    client.ksql(
        f"CREATE STREAM {name} (ID BIGINT, S VARCHAR) "
        f"WITH (KAFKA_TOPIC='{name}', VALUE_FORMAT='JSON', PARTITIONS=1);"
    )
    acks = client.inserts_stream(name.upper(), [{"ID": i, "S": f"s{i}"} for i in range(3)])
    assert acks == [{"status": "ok", "seq": i} for i in range(3)]

    pulled: list[Any] = []
    deadline = time.monotonic() + 30
    while len(pulled) < 3 and time.monotonic() < deadline:
        with httpx.Client(http2=True, http1=False, timeout=30) as h2:
            response = h2.post(f"{ksql_url}/query-stream", json={"sql": f"SELECT * FROM {name};"})
        header, *pulled = [json.loads(line) for line in response.text.splitlines()]
    assert header["columnNames"] == ["ID", "S"] and sorted(pulled) == [
        [i, f"s{i}"] for i in range(3)
    ]

    lines = client.query(
        f"SELECT * FROM {name} EMIT CHANGES",
        stream_properties={"auto.offset.reset": "earliest"},
        use_http2=True,
    )
    query_id = json.loads(next(lines))["queryId"]
    assert [json.loads(next(lines)) for _ in range(3)] == [[i, f"s{i}"] for i in range(3)]
    assert client.close_query(query_id) is True
    assert list(lines) == []
    assert client.close_query(query_id) is False


# -- the project's statements, through the CLI -------------------------------------------------


def _renamed_pipeline(tmp_path: Path, prefix: str, pattern: str = "*.sql") -> Path:
    """ksql/*.sql (or other files of ksql/) with every stream and topic renamed onto fresh ones."""
    folder = tmp_path / "ksql"
    folder.mkdir(exist_ok=True)
    for file in sorted((ROOT / "ksql").glob(pattern)):
        text = re.sub("creditcardfraud_", f"{prefix}_ccf_", file.read_text(), flags=re.I)
        text = re.sub("fraud_alerts", f"{prefix}_fraud_alerts", text, flags=re.I)
        (folder / file.name).write_text(text)
    return folder


def _cli(ksql_url: str, *args: str) -> list[str]:
    env = {**os.environ, "KSQL_URL": ksql_url}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "ksql", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_apply_pipeline_twice_and_query(
    ksql_url: str,
    schema_registry_url: str,
    unique: str,
    topics: list[str],
    streams: list[str],
    tmp_path: Path,
) -> None:
    prefix = f"it_{unique}"
    folder = _renamed_pipeline(tmp_path, prefix)
    names = [f"{prefix}_ccf_{t}" for t in ("source", "preprocessed_avro", "scoring_avro")]
    names.append(f"{prefix}_fraud_alerts")
    topics += names
    streams += names
    # Records produced before the queries exist must reach the sinks: the files SET
    # auto.offset.reset=earliest (the topic has the 3 partitions 01_source.sql declares).
    ensure_topic(f"{prefix}_ccf_source", 3)
    produce(f"{prefix}_ccf_source", [delimited_row(i, labelled=i % 4 != 0) for i in range(40)])
    first = _cli(ksql_url, "apply", str(folder))
    assert first[-1] == "applied 6 statements"
    assert _cli(ksql_url, "apply", str(folder))[-1] == "applied 6 statements"

    labelled = [i for i in range(40) if i % 4 != 0]
    scoring = read_avro(f"{prefix}_ccf_scoring_avro", schema_registry_url, 40)
    assert sorted(r["ID"] for r in scoring) == list(range(40))
    preprocessed = read_avro(f"{prefix}_ccf_preprocessed_avro", schema_registry_url, len(labelled))
    assert sorted(r["ID"] for r in preprocessed) == labelled
    assert {"ID", "TIMESTAMP", "USER", "TIME", "V28", "AMOUNT", "CLASS"} <= set(preprocessed[0])

    shown = _cli(
        ksql_url,
        "query",
        "-p",
        "auto.offset.reset=earliest",
        f"SELECT ID, AMOUNT FROM {prefix}_ccf_scoring_avro EMIT CHANGES LIMIT 3;",
    )
    assert shown[0] == "ID | AMOUNT" and shown[-1] == "3 rows" and len(shown) == 5
    for line in shown[1:4]:
        ident, amount = line.split(" | ")
        assert 0 <= int(ident) < 40 and float(amount) == int(ident) + 0.25
    # FRAUD_ALERTS reads what the scorer writes (its schema, registered by the scorer's way).
    from confluent_kafka.schema_registry.avro import AvroSerializer

    from services.scorer.records import alert_schema

    alert = {
        "ID": 7,
        "USER": "u7",
        "TIMESTAMP": "2019-01-01 00:00:07",
        "AMOUNT": 7.25,
        "SCORE": 0.9,
        "THRESHOLD": 0.5,
        "MODEL_VERSION": "v1",
        "SCORED_AT": 1_700_000_000_000,
        "CLASS": "1",
        "EXPLANATION": [
            {"FEATURE": "V14", "SHARE": 0.75, "VALUE": -9.5, "NORMAL_LOW": -2.5,
             "NORMAL_HIGH": 2.0},
            {"FEATURE": "AMOUNT", "SHARE": 0.25, "VALUE": 9.0, "NORMAL_LOW": None,
             "NORMAL_HIGH": None},
        ],
    }  # fmt: skip
    serializer = AvroSerializer(
        SchemaRegistryClient({"url": schema_registry_url}), json.dumps(alert_schema())
    )
    alerts_topic = f"{prefix}_fraud_alerts"
    value = serializer(alert, SerializationContext(alerts_topic, MessageField.VALUE))
    assert value is not None
    produce(alerts_topic, [value])
    shown = _cli(
        ksql_url,
        "query",
        "-p",
        "auto.offset.reset=earliest",
        "--json",
        f"SELECT * FROM {prefix}_FRAUD_ALERTS EMIT CHANGES LIMIT 1;",
    )
    assert json.loads(shown[0]) == alert and shown[-1] == "1 rows"


def test_examples_masking_and_ifnull(
    ksql_url: str, unique: str, topics: list[str], streams: list[str], tmp_path: Path
) -> None:
    prefix = f"it_{unique}"
    names = [f"{prefix}_ccf_{t}" for t in ("source", "masked", "labelled_or_unknown")]
    topics += names
    streams += names
    folder = _renamed_pipeline(tmp_path, prefix, "01_source.sql")
    _renamed_pipeline(tmp_path, prefix, "examples/[12]0_*.sql")
    ensure_topic(names[0], 3)
    produce(names[0], [delimited_row(i, labelled=i % 2 == 0) for i in range(6)])
    assert _cli(ksql_url, "apply", str(folder))[-1] == "applied 5 statements"

    masked = {r["ID"]: r for r in map(json.loads, read_raw(names[1], 6))}
    assert masked[3] == {
        "ID": 3,
        "USER_MASKED": "xxer3",
        "USER_FULLY_MASKED": "xxxxn",
        "TIMESTAMP_TIME_ONLY": "nnnn-nn-nn-00:00:03",
        "AMOUNT": 3.25,
    }
    labels = {r["ID"]: r for r in map(json.loads, read_raw(names[2], 6))}
    assert (labels[0]["CLASS"], labels[0]["LABEL_TEXT"]) == ("1", "1")
    assert (labels[2]["CLASS"], labels[2]["LABEL_TEXT"]) == ("0", "0")
    assert (labels[1]["CLASS"], labels[1]["LABEL_TEXT"]) == ("-1", "unlabelled")


# -- kill -9 and restart -----------------------------------------------------------------------


class ServerProcess:
    """A KSQL server of its own (own port, own service id, so its own command topic)."""

    def __init__(self, service_id: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service_id = service_id
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KSQL_URL": self.url}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "services.cli",
                    "ksql",
                    "serve",
                    "--service-id",
                    self.service_id,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                if httpx.get(self.url + "/healthcheck", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("KSQL server did not start")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once_v2"])
def test_kill9_restart_resumes_persistent_query(
    schema_registry_url: str, unique: str, topics: list[str], tmp_path: Path, guarantee: str
) -> None:
    source, sink = f"it_restart_src_{unique}", f"it_restart_sink_{unique}"
    command_topic = f"_confluent-ksql-it_{unique}_command_topic"
    topics += [source, sink, command_topic]
    ensure_topic(source, 1)
    server = ServerProcess(f"it_{unique}", tmp_path / "server.log")
    total = 3000
    server.start()
    try:
        httpx.post(
            f"{server.url}/ksql",
            timeout=30,
            json={
                "ksql": f"CREATE STREAM src_{unique} (ID BIGINT, V DOUBLE) WITH "
                f"(KAFKA_TOPIC='{source}', VALUE_FORMAT='DELIMITED');"
                f"CREATE STREAM sink_{unique} WITH (KAFKA_TOPIC='{sink}', "
                f"VALUE_FORMAT='JSON') AS SELECT ID, V * 2 AS V2 FROM src_{unique};",
                "streamsProperties": {
                    "auto.offset.reset": "earliest",
                    "processing.guarantee": guarantee,
                },
            },
        ).raise_for_status()

        def feed() -> None:
            producer = make_producer()
            for i in range(total):
                producer.produce(source, f"{i},{i}.5".encode())
                if i % 100 == 99:
                    producer.flush(10)
                    time.sleep(0.15)
            producer.flush(30)

        feeder = threading.Thread(target=feed)
        feeder.start()
        deadline = time.monotonic() + 20
        while count_records(sink) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        written_before_kill = count_records(sink)
        assert 0 < written_before_kill < total and feeder.is_alive(), "not killed mid-stream"
        server.kill9()
        server.start()
        feeder.join(60)

        ids = read_ids(sink, total, timeout=90)
        assert set(ids) == set(range(total)), f"missing {len(set(range(total)) - set(ids))}"
        if guarantee == "exactly_once_v2":
            assert len(ids) == total, f"{len(ids) - total} duplicates"
    finally:
        server.stop()


# -- fuzzed statements on the real engine ------------------------------------------------------

sql_tokens = st.sampled_from(
    [
        "SELECT",
        "*",
        "FROM",
        "CREATE",
        "STREAM",
        "TABLE",
        "DROP",
        "INSERT",
        "INTO",
        "VALUES",
        "WITH",
        "(",
        ")",
        ",",
        ";",
        "'",
        "`",
        "x",
        "y1",
        "KAFKA_TOPIC",
        "=",
        "'t'",
        "VALUE_FORMAT",
        "'JSON'",
        "'AVRO'",
        "'DELIMITED'",
        "INT",
        "BIGINT",
        "STRING",
        "DECIMAL(4,2)",
        "KEY",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "NULL",
        "IS",
        "LIKE",
        "CAST",
        "AS",
        "EMIT",
        "CHANGES",
        "LIMIT",
        "1",
        "-1",
        "1e400",
        "SHOW",
        "STREAMS",
        "QUERIES",
        "DESCRIBE",
        "EXTENDED",
        "TERMINATE",
        "SET",
        "UNSET",
        "'auto.offset.reset'",
        "PARTITION",
        "BY",
        "CASE",
        "WHEN",
        "THEN",
        "END",
        "MASK_LEFT",
        "IFNULL",
        "ROWTIME",
        "\n",
        "--",
        "/*",
        "*/",
        "\x00",
        "é",
    ]
)


@pytest.fixture(scope="module")
def private_server(
    schema_registry_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server of its own, so fuzzed DROP/TERMINATE/INSERT cannot touch anyone's streams."""
    service_id = f"fuzz_{uuid.uuid4().hex[:8]}"
    server = ServerProcess(service_id, tmp_path_factory.mktemp("fuzz") / "server.log")
    server.start()
    yield server
    server.stop()
    delete_topics([f"_confluent-ksql-{service_id}_command_topic"])


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tokens=st.lists(sql_tokens, max_size=14),
    endpoint=st.sampled_from(["/ksql", "/query", "/query-stream", "/inserts-stream"]),
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(["ID", "S", "x", "ROWTIME"]),
            st.none() | st.integers() | st.text(max_size=5) | st.floats(),
        ),
        max_size=3,
    ),
)
def test_fuzzed_statements_real_engine(
    private_server: ServerProcess, tokens: list[str], endpoint: str, rows: list[dict[str, Any]]
) -> None:
    sql = " ".join(tokens)
    if endpoint == "/inserts-stream":
        target = json.dumps({"target": tokens[0] if tokens else ""})
        content = "\n".join([target, *map(json.dumps, rows)]).encode()
    else:
        field = "sql" if endpoint == "/query-stream" else "ksql"
        content = json.dumps({field: sql}).encode()
    with (
        httpx.Client(http2=True, http1=False, timeout=20) as client,
        client.stream(
            "POST",
            private_server.url + endpoint,
            content=content,
            headers={"Content-Type": "application/json"},  # the guard refuses untyped bodies
        ) as response,
    ):
        if response.status_code < 400:
            if endpoint == "/inserts-stream":  # failures are per-row acks, never 50000
                acks = [json.loads(line) for line in response.read().splitlines() if line]
                assert all(ack.get("error_code") != 50000 for ack in acks), acks
            return
        response.read()
    assert response.status_code < 500, f"{sql!r}: {response.text}"
    assert "Traceback" not in response.text
    assert response.json()["@type"] in ("statement_error", "generic_error")


def test_private_server_healthy_after_fuzzing(private_server: ServerProcess) -> None:
    assert httpx.get(private_server.url + "/healthcheck").json()["isHealthy"] is True
