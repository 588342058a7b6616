"""JSON_SR and PROTOBUF through the KSQL server with confluent-kafka's own serializers (slow).

- records written by `JSONSerializer` / `ProtobufSerializer` are read by a stream whose columns
  come from the registry, and a CSAS sink in the same format is read back by
  `JSONDeserializer` / `ProtobufDeserializer`: both directions of the wire format;
- the producer's `--format json_sr|protobuf` path (`produce_csv` with the format's encoder)
  then `ksql/examples/50_*`/`51_*` (renamed onto fresh topics) give the Avro stream the trainer
  reads, labelled rows only.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from test_ksql_rest_integration import read_raw

from services.common.kafka import delete_topics, ensure_topic, make_producer
from services.common.schemas.protobuf import parse
from services.producer.formats import value_encoder
from services.producer.replay import produce_csv

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ROWS: list[dict[str, Any]] = [
    {"ID": 1, "NAME": "alice", "AMOUNT": 1.5, "TAGS": ["a", "b"]},
    {"ID": 2, "NAME": "bob", "AMOUNT": -2.25, "TAGS": []},
    {"ID": 3, "NAME": "", "AMOUNT": 0.0, "TAGS": ["c"]},
]
PROTO = """syntax = "proto3";
package it.sr;
message Payment { int64 ID = 1; string NAME = 2; double AMOUNT = 3; repeated string TAGS = 4; }
"""
JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "ID": {"type": "integer"},
        "NAME": {"type": "string"},
        "AMOUNT": {"type": "number"},
        "TAGS": {"type": "array", "items": {"type": "string"}},
    },
}


def ksql(url: str, sql: str) -> Any:
    earliest = {"ksql.streams.auto.offset.reset": "earliest"}
    response = httpx.post(
        f"{url}/ksql", json={"ksql": sql, "streamsProperties": earliest}, timeout=60
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def cleanup(ksql_url: str, schema_registry_url: str) -> Iterator[tuple[list[str], list[str]]]:
    """(streams, topics) a test creates: queries terminated, streams dropped, topics and their
    value subjects deleted afterwards."""
    streams: list[str] = []
    topics: list[str] = []
    yield streams, topics
    wanted = {s.upper() for s in streams}
    for query in ksql(ksql_url, "SHOW QUERIES;")[0]["queries"]:
        if wanted & set(query["sinks"]):
            ksql(ksql_url, f"TERMINATE {query['id']};")
    for name in streams:
        with contextlib.suppress(AssertionError):
            ksql(ksql_url, f"DROP STREAM IF EXISTS {name};")
    delete_topics(topics)
    for topic in topics:
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(f"{schema_registry_url}/subjects/{topic}-value", timeout=5)


def _serializer(fmt: str, registry: SchemaRegistryClient) -> Any:
    if fmt == "PROTOBUF":
        cls = parse(PROTO).message_class("it.sr.Payment")
        ser = ProtobufSerializer(cls, registry)
        return lambda row, ctx: ser(cls(**row), ctx)
    return JSONSerializer(json.dumps(JSON_SCHEMA), registry)


def _deserializer(fmt: str, registry: SchemaRegistryClient, subject: str) -> Any:
    """confluent-kafka's deserializer; Protobuf's needs the message class: the sink's own."""
    if fmt == "PROTOBUF":
        text = registry.get_latest_version(subject).schema.schema_str
        cls = parse(text).message_class()
        de = ProtobufDeserializer(cls, {"use.deprecated.format": False})

        def to_dict(raw: bytes, ctx: SerializationContext) -> dict[str, Any]:
            msg = de(raw, ctx)
            return {f.name: getattr(msg, f.name) for f in msg.DESCRIPTOR.fields}

        return to_dict
    return JSONDeserializer(None, schema_registry_client=registry)


@pytest.mark.parametrize("fmt", ["JSON_SR", "PROTOBUF"])
def test_confluent_serializers_through_a_ksql_stream(
    fmt: str,
    ksql_url: str,
    schema_registry_url: str,
    unique: str,
    cleanup: tuple[list[str], list[str]],
) -> None:
    streams, topics = cleanup
    source, sink = f"it_sr_{fmt.lower()}_{unique}", f"it_sr_{fmt.lower()}_{unique}_out"
    topics += [source, sink]
    streams += [sink, source]
    ensure_topic(source, 1)
    registry = SchemaRegistryClient({"url": schema_registry_url})
    serialize = _serializer(fmt, registry)
    producer = make_producer()
    for row in ROWS:
        ctx = SerializationContext(source, MessageField.VALUE)
        producer.produce(source, serialize(row, ctx), str(row["ID"]).encode())
    producer.flush(30)

    ksql(ksql_url, f"CREATE STREAM {source} WITH (KAFKA_TOPIC='{source}', VALUE_FORMAT='{fmt}');")
    described = ksql(ksql_url, f"DESCRIBE {source};")[0]["sourceDescription"]["fields"]
    assert [(f["name"], f["schema"]["type"]) for f in described] == [
        ("ID", "BIGINT"),
        ("NAME", "STRING"),
        ("AMOUNT", "DOUBLE"),
        ("TAGS", "ARRAY"),
    ]
    ksql(
        ksql_url,
        f"CREATE STREAM {sink} WITH (KAFKA_TOPIC='{sink}', VALUE_FORMAT='{fmt}') AS "
        f"SELECT ID, UCASE(NAME) AS NAME, AMOUNT * 2 AS AMOUNT, TAGS FROM {source} "
        "EMIT CHANGES;",
    )
    raw = read_raw(sink, len(ROWS))
    assert len(raw) == len(ROWS)
    deserialize = _deserializer(fmt, registry, f"{sink}-value")
    got = [deserialize(v, SerializationContext(sink, MessageField.VALUE)) for v in raw]
    got = [{k: list(v) if k == "TAGS" else v for k, v in row.items()} for row in got]
    want = [{**r, "NAME": r["NAME"].upper(), "AMOUNT": r["AMOUNT"] * 2} for r in ROWS]
    assert sorted(got, key=lambda r: r["ID"]) == want


@pytest.mark.parametrize(("fmt", "example"), [("json_sr", "50"), ("protobuf", "51")])
def test_produce_format_then_example_gives_the_avro_stream(
    fmt: str,
    example: str,
    tmp_path: Path,
    ksql_url: str,
    schema_registry_url: str,
    unique: str,
    cleanup: tuple[list[str], list[str]],
) -> None:
    streams, topics = cleanup
    prefix = f"it{unique}"
    rows = 12
    lines = []
    for i in range(1, rows + 1):
        label = f'"{i % 2}"' if i % 3 else '""'  # every third row unlabelled
        features = ",".join(f"{0.01 * j:.2f}" for j in range(28))
        lines.append(f'{i},"2013-09-01T00:00:{i:02d}Z","Kai",{i},{features},{i}.5,{label}')
    csv = tmp_path / "tx.csv"
    csv.write_text("\n".join(lines) + "\n")
    source = f"{prefix}_ccf_source_{fmt}"
    topics += [source, f"{prefix}_ccf_preprocessed_avro", f"{prefix}_ccf_scoring_avro"]
    streams += [f"{prefix}_ccf_preprocessed_from_{fmt}", f"{prefix}_ccf_scoring_from_{fmt}"]
    streams.append(source)
    # what `fraudstream produce --csv tx.csv --format FMT --topic SOURCE` runs
    result = produce_csv(csv, source, encode_values=value_encoder(fmt, source))
    assert result.records == rows and not result.bad

    file = next((ROOT / "ksql" / "examples").glob(f"{example}_*.sql"))
    text = re.sub("creditcardfraud_", f"{prefix}_ccf_", file.read_text(), flags=re.I)
    statements = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    ksql(ksql_url, statements)

    labelled = [i for i in range(1, rows + 1) if i % 3]
    topic = f"{prefix}_ccf_preprocessed_avro"
    raw = read_raw(topic, len(labelled))
    de = AvroDeserializer(SchemaRegistryClient({"url": schema_registry_url}))
    values = [de(v, SerializationContext(topic, MessageField.VALUE)) for v in raw]
    assert sorted(v["ID"] for v in values) == labelled
    first = min(values, key=lambda v: v["ID"])
    assert first["CLASS"] == "1" and first["TIME"] == 1 and first["AMOUNT"] == 1.5
    assert first["V2"] == pytest.approx(0.01) and first["USER"] == "Kai"
    assert len(read_raw(f"{prefix}_ccf_scoring_avro", rows)) == rows
