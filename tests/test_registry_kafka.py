"""The registry against the real broker, driven by Confluent's own Python client.

- the stack's registry (the `schema_registry_url` fixture) with `SchemaRegistryClient` calls and
  an `AvroSerializer` -> Kafka -> `AvroDeserializer` round trip;
- a private instance on a fresh storage topic that is restarted and must return the same ids;
- two instances on one topic, written to concurrently, that must never hand out an id twice,
  and whose follower takes over when the leader stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from services.common.kafka import delete_topics
from services.common.process import free_port
from services.schema_registry.errors import RegistryError
from services.schema_registry.kafka_log import KafkaLog
from services.schema_registry.state import RegistryState, SchemaVersion, schema_key, schema_value

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def avro_record(*fields: tuple[str, object], name: str = "Payment") -> Schema:
    body: dict[str, object] = {
        "type": "record",
        "name": name,
        "namespace": "fraudstream.test",
        "fields": [
            {"name": n, "type": t, **({"default": None} if isinstance(t, list) else {})}
            for n, t in fields
        ],
    }
    return Schema(json.dumps(body), "AVRO")


V1 = avro_record(("id", "long"), ("amount", "double"))
V2 = avro_record(("id", "long"), ("amount", "double"), ("user", ["null", "string"]))
BREAKING = avro_record(("id", "string"))


@pytest.fixture
def shared_subject(schema_registry_url: str, unique: str) -> Iterator[str]:
    """A fresh subject on the shared registry, removed afterwards even if the test fails."""
    subject = f"payments-{unique}-value"
    yield subject
    httpx.delete(f"{schema_registry_url}/subjects/{subject}")
    httpx.delete(f"{schema_registry_url}/subjects/{subject}", params={"permanent": "true"})


def test_client_calls(schema_registry_url: str, shared_subject: str) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    subject = shared_subject
    first = client.register_schema(subject, V1)
    assert client.register_schema(subject, V1) == first
    assert client.get_schema(first).schema_str is not None
    second = client.register_schema(subject, V2)
    assert second != first
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, second)
    looked_up = client.lookup_schema(subject, V1)
    assert (looked_up.version, looked_up.schema_id) == (1, first)
    assert client.get_versions(subject) == [1, 2]
    assert subject in client.get_subjects()
    assert client.get_version(subject, 1).schema_id == first
    assert client.get_schema_types() == ["JSON", "PROTOBUF", "AVRO"]
    assert client.get_subjects_by_schema_id(first, subject_name=subject) == [subject]
    versions = client.get_schema_versions(second, subject_name=subject)
    assert [(v.subject, v.version) for v in versions] == [(subject, 2)]
    assert client.get_global_mode() == "READWRITE"

    assert client.test_compatibility(subject, BREAKING) is False
    with pytest.raises(SchemaRegistryError) as incompatible:
        client.register_schema(subject, BREAKING)
    assert incompatible.value.error_code == 409
    assert client.set_compatibility(subject, "NONE") == {"compatibility": "NONE"}
    assert client.get_compatibility(subject) == "NONE"
    assert client.test_compatibility(subject, BREAKING) is True
    assert client.delete_config(subject).compatibility_level is not None
    assert client.get_config().compatibility_level is not None

    assert client.delete_version(subject, 1) == 1
    assert client.get_versions(subject) == [2]
    assert client.delete_subject(subject) == [2]
    assert client.delete_subject(subject, permanent=True) == [1, 2]
    with pytest.raises(SchemaRegistryError) as gone:
        SchemaRegistryClient({"url": schema_registry_url}).get_latest_version(subject)
    assert gone.value.error_code == 40401


def test_avro_round_trip_through_kafka(
    schema_registry_url: str, kafka_bootstrap: str, topic_name: str, unique: str
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    serializer = AvroSerializer(client, V2.schema_str)
    deserializer = AvroDeserializer(client)
    context = SerializationContext(topic_name, MessageField.VALUE)
    rows = [{"id": i, "amount": i * 1.5, "user": None if i % 2 else f"u{i}"} for i in range(5)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for row in rows:
        producer.produce(topic_name, serializer(row, context))
    producer.flush(30)
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": unique, "auto.offset.reset": "earliest"}
    )
    try:
        consumer.subscribe([topic_name])
        seen: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        while len(seen) < len(rows) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                seen.append(deserializer(msg.value(), context))
        assert seen == rows
        latest = client.get_latest_version(f"{topic_name}-value")
        value = (msg.value() if msg is not None else None) or b""
        assert int.from_bytes(value[1:5], "big") == latest.schema_id
    finally:
        consumer.close()
        delete_subject_everywhere(client, f"{topic_name}-value")
        delete_topics([topic_name], kafka_bootstrap)


def delete_subject_everywhere(client: SchemaRegistryClient, subject: str) -> None:
    """Leave the shared registry as we found it (soft, then permanent delete)."""
    with contextlib.suppress(SchemaRegistryError):
        client.delete_subject(subject)
        client.delete_subject(subject, permanent=True)


# -- private instances on a fresh storage topic ------------------------------------------------


class Instance:
    """One `fraudstream registry serve` process."""

    def __init__(self, topic: str, group: str, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(log_dir / f"registry-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "registry",
                "serve",
                "--port",
                str(self.port),
                "--topic",
                topic,
                "--group",
                group,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "registry instance exited during start-up"
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"registry on {self.url} not healthy within {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def register(self, subject: str, schema: Schema) -> int:
        return SchemaRegistryClient({"url": self.url}).register_schema(subject, schema)


@pytest.fixture
def storage(kafka_bootstrap: str, unique: str, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    topic = f"_schemas_test_{unique}"
    yield topic, f"registry-test-{unique}", tmp_path
    delete_topics([topic], kafka_bootstrap)


def distinct_schema(i: int) -> Schema:
    return avro_record(("id", "long"), name=f"Rec{i}")


MONEY_PROTO = 'syntax = "proto3";\npackage acme;\nmessage Money { int64 cents = 1; }\n'
PAYMENT_PROTO = (
    'syntax = "proto3";\npackage acme;\nimport "acme/money.proto";\n'
    "message Payment { string id = 1; Money value = 2; }\n"
)


def register_typed_with_references(url: str) -> dict[str, Any]:
    """A Protobuf schema referencing another and a JSON schema; the answers to read back."""
    money = {"schema": MONEY_PROTO, "schemaType": "PROTOBUF"}
    httpx.post(url + "/subjects/acme%2Fmoney.proto/versions", json=money).raise_for_status()
    payment = {
        "schema": PAYMENT_PROTO,
        "schemaType": "PROTOBUF",
        "references": [{"name": "acme/money.proto", "subject": "acme/money.proto", "version": 1}],
    }
    done = httpx.post(url + "/subjects/payment/versions", json=payment)
    done.raise_for_status()
    as_json = {"schema": '{"type":"object"}', "schemaType": "JSON"}
    httpx.post(url + "/subjects/doc/versions", json=as_json).raise_for_status()
    paths = [
        "/subjects/payment/versions/1",
        f"/schemas/ids/{done.json()['id']}",
        "/subjects/doc/versions/1",
        "/subjects/acme%2Fmoney.proto/versions/1/referencedby",
    ]
    return {path: httpx.get(url + path).json() for path in paths}


def test_restart_keeps_ids(storage: tuple[str, str, Path]) -> None:
    topic, group, logs = storage
    first = Instance(topic, group, logs)
    try:
        ids = {f"s{i}": first.register(f"s{i}", distinct_schema(i)) for i in range(3)}
        ids["s0-again"] = first.register("s0-again", distinct_schema(0))
        first.register("s1", avro_record(("id", "long"), ("x", ["null", "int"]), name="Rec1"))
        httpx.put(first.url + "/config/s2", json={"compatibility": "FULL"}).raise_for_status()
        httpx.delete(first.url + "/subjects/s2/versions/1").raise_for_status()
        typed = register_typed_with_references(first.url)
    finally:
        first.stop()
    second = Instance(topic, group, logs)
    try:
        for path, answer in typed.items():  # JSON/Protobuf schemas and references survive
            assert httpx.get(second.url + path).json() == answer
        refused = httpx.delete(second.url + "/subjects/acme%2Fmoney.proto")
        assert refused.json()["error_code"] == 42206
        client = SchemaRegistryClient({"url": second.url})
        for subject in ("s0", "s1"):
            assert (
                client.lookup_schema(subject, distinct_schema(int(subject[1]))).schema_id
                == ids[subject]
            )
        assert ids["s0-again"] == ids["s0"]
        assert client.get_versions("s1") == [1, 2]
        assert client.get_compatibility("s2") == "FULL"
        assert httpx.get(second.url + "/subjects/s2/versions").json()["error_code"] == 40401
        fresh = second.register("s9", distinct_schema(9))
        s1_latest = client.get_latest_version("s1").schema_id or 0
        typed_ids = [a["id"] for a in typed.values() if isinstance(a, dict) and "id" in a]
        assert fresh == max(s1_latest, *ids.values(), *typed_ids) + 1
    finally:
        second.stop()


def test_two_instances_never_share_an_id(storage: tuple[str, str, Path]) -> None:
    topic, group, logs = storage
    leader = Instance(topic, group, logs)
    follower = Instance(topic, group, logs)
    try:
        instances = [leader, follower]

        def register(i: int) -> tuple[int, int]:
            return i, instances[i % 2].register(f"sub{i}", distinct_schema(i))

        with ThreadPoolExecutor(max_workers=6) as pool:
            got = dict(pool.map(register, range(24)))
        assert len(set(got.values())) == 24, "two schemas were given one id"
        # Both instances answer reads for every subject (the follower reads the same log).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(len(httpx.get(i.url + "/subjects").json()) == 24 for i in instances):
                break
            time.sleep(0.2)
        for instance in instances:
            assert len(httpx.get(instance.url + "/subjects").json()) == 24
        # The same schema through the other instance gets the same id.
        assert follower.register("sub0", distinct_schema(0)) == got[0]
        # The leader goes away: the survivor takes over writing.
        leader.stop()
        survivor_id = follower.register("after-failover", distinct_schema(100))
        assert survivor_id == max(got.values()) + 1
    finally:
        for instance in (leader, follower):
            instance.stop()


def leads(instance: Instance) -> bool:
    return bool(httpx.get(instance.url + "/fraudstream/leader", timeout=5).json()["is_leader"])


def test_a_frozen_leader_is_fenced(storage: tuple[str, str, Path]) -> None:
    """A leader that stops answering (GC pause, SIGSTOP) loses the partition; when it wakes up
    it must not write with its old producer: the new leader's transactional id fenced it."""
    topic, group, logs = storage
    first = Instance(topic, group, logs)
    second = Instance(topic, group, logs)
    try:
        assert leads(first) and not leads(second)
        before = first.register("before", distinct_schema(0))
        os.kill(first.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 40
        while not leads(second):
            assert time.monotonic() < deadline, "the follower never took over"
            time.sleep(0.5)
        during = second.register("during", distinct_schema(1))
        os.kill(first.proc.pid, signal.SIGCONT)
        body = {"schema": distinct_schema(2).schema_str}
        woke = httpx.post(first.url + "/subjects/after/versions", json=body, timeout=60)
        if woke.status_code == 200:  # it noticed in time and forwarded to the new leader
            assert woke.json()["id"] not in (before, during)
        else:
            assert woke.json()["error_code"] in (50001, 50003, 50004), woke.text
        assert second.register("after", distinct_schema(2)) not in (before, during)
        latest = [
            httpx.get(f"{second.url}/subjects/{s}/versions/latest").json()["id"]
            for s in ("before", "during", "after")
        ]
        assert len(set(latest)) == 3
    finally:
        os.kill(first.proc.pid, signal.SIGCONT) if first.proc.poll() is None else None
        for instance in (first, second):
            instance.stop()


def test_a_new_writer_fences_the_old_one(
    kafka_bootstrap: str, storage: tuple[str, str, Path]
) -> None:
    """The deterministic half of the test above: once a second writer has stepped up on the same
    topic, the first one's next write fails with 50001 instead of landing in the log."""
    topic, group, _logs = storage
    writers = []
    for name in ("old", "new"):
        log = KafkaLog(
            RegistryState(),
            threading.RLock(),
            bootstrap=kafka_bootstrap,
            topic=topic,
            group=group,
            advertised_url=name,
        )
        log.start(elect=False)
        writers.append(log)
    old, new = writers
    try:
        entry = SchemaVersion("s", 1, 1, '"string"')
        old.become_leader()
        old.write([(schema_key("s", 1), schema_value(entry))])
        new.become_leader()
        with pytest.raises(RegistryError) as fenced:
            old.write([(schema_key("s", 2), schema_value(SchemaVersion("s", 2, 2, '"int"')))])
        assert fenced.value.error_code == 50001 and not old.is_leader
        new.write([(schema_key("s", 2), schema_value(SchemaVersion("s", 2, 3, '"long"')))])
        assert [v.schema_id for v in new.state.live_versions("s")] == [1, 3]
    finally:
        for log in writers:
            log.close()


def test_bad_input_over_http_keeps_the_server_serving(
    schema_registry_url: str, unique: str
) -> None:
    """Through the real HTTP server (hypercorn), not just the ASGI app."""
    headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
    path = f"{schema_registry_url}/subjects/bad-{unique}/versions"
    malformed = httpx.post(path, content=b'{"schema": ', headers=headers)
    assert (malformed.status_code, malformed.json()["error_code"]) == (400, 400)
    huge = httpx.post(path, content=b'{"schema": "' + b" " * (5 * 2**20) + b'"}', headers=headers)
    assert (huge.status_code, huge.json()["error_code"]) == (413, 413)
    not_avro = httpx.post(path, json={"schema": '{"type": "nosuch"}', "schemaType": "JSON"})
    assert (not_avro.status_code, not_avro.json()["error_code"]) == (422, 42201)
    unknown = httpx.get(f"{schema_registry_url}/no/such/route")
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, 404)
    wrong_method = httpx.patch(f"{schema_registry_url}/subjects")
    assert (wrong_method.status_code, wrong_method.json()["error_code"]) == (405, 405)
    assert httpx.get(schema_registry_url + "/").json() == {}


# -- limits and failed writes (issue #11) -------------------------------------------------------


def huge_schema() -> str:
    """About 1.47 MB of valid Avro: more than the broker's default max.message.bytes."""
    fields = [{"name": f"field_{i:06d}_padding_pad", "type": "double"} for i in range(26_300)]
    text = json.dumps({"type": "record", "name": "Huge", "fields": fields})
    assert 1_400_000 < len(text) < 1_550_000
    return text


def test_huge_and_deep_schemas_are_422_quickly_and_the_writer_keeps_leading(
    schema_registry_url: str, shared_subject: str
) -> None:
    """The attack's case: 1.47 MB used to answer 500 after a failed _schemas write and leave
    the registry without a writer (50004 on every write until a restart)."""
    started = time.monotonic()
    huge = httpx.post(
        f"{schema_registry_url}/subjects/{shared_subject}/versions",
        json={"schema": huge_schema()},
        timeout=60,
    )
    assert (huge.status_code, huge.json()["error_code"]) == (422, 42201), huge.text
    assert time.monotonic() - started < 5
    deep = '{"type":"array","items":' * 2000 + '"int"' + "}" * 2000
    too_deep = httpx.post(
        f"{schema_registry_url}/subjects/{shared_subject}/versions", json={"schema": deep}
    )
    assert (too_deep.status_code, too_deep.json()["error_code"]) == (422, 42201), too_deep.text
    started = time.monotonic()
    assert SchemaRegistryClient({"url": schema_registry_url}).register_schema(shared_subject, V1)
    assert time.monotonic() - started < 5


def set_max_message_bytes(bootstrap: str, topic: str, value: int | None) -> None:
    """Set (or, with None, remove) the topic-level max.message.bytes."""
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
    )

    operation = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    entry = ConfigEntry("max.message.bytes", str(value or ""), incremental_operation=operation)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.incremental_alter_configs([resource])[resource].result(timeout=15)


def padded_schema(name: str, doc_bytes: int) -> Schema:
    body = {"type": "record", "name": name, "doc": "d" * doc_bytes, "fields": []}
    return Schema(json.dumps(body), "AVRO")


def test_a_write_the_broker_refuses_is_50001_and_the_next_one_works(
    kafka_bootstrap: str, storage: tuple[str, str, Path]
) -> None:
    """The broker refuses a record (the topic's max.message.bytes lowered after the instance
    read it): that request alone gets 50001, the instance stays the leader, nothing of the
    failed write shows, and the next write goes through at once. An instance started after the
    change reads the lower limit and refuses the same schema with 422 before writing."""
    topic, group, logs = storage
    first = Instance(topic, group, logs)
    try:
        small_id = first.register("small", distinct_schema(1))
        set_max_message_bytes(kafka_bootstrap, topic, 2_000)
        body = {"schema": padded_schema("Big", 4_000).schema_str}
        refused = httpx.post(f"{first.url}/subjects/big/versions", json=body, timeout=60)
        assert (refused.status_code, refused.json()["error_code"]) == (500, 50001), refused.text
        assert "MSG_SIZE_TOO_LARGE" in refused.json()["message"]
        assert leads(first)
        started = time.monotonic()
        next_id = first.register("next", distinct_schema(2))
        assert time.monotonic() - started < 5
        assert next_id == small_id + 1, "the failed write must not have used up an id"
        assert httpx.get(f"{first.url}/subjects/big/versions").json()["error_code"] == 40401
        assert sorted(httpx.get(f"{first.url}/subjects").json()) == ["next", "small"]
    finally:
        first.stop()
    second = Instance(topic, group, logs)
    try:
        refused = httpx.post(f"{second.url}/subjects/big/versions", json=body, timeout=60)
        assert (refused.status_code, refused.json()["error_code"]) == (422, 42201), refused.text
        set_max_message_bytes(kafka_bootstrap, topic, None)
        assert sorted(httpx.get(f"{second.url}/subjects").json()) == ["next", "small"]
        assert second.register("after", distinct_schema(3)) == next_id + 1
    finally:
        second.stop()


def test_a_leader_whose_producer_is_fenced_replaces_it_while_it_still_leads(
    kafka_bootstrap: str, storage: tuple[str, str, Path]
) -> None:
    """A producer that cannot abort (here: fenced by a stray writer outside the group) fails
    that one write with 50001; since the group still assigns the partition to this instance, it
    makes a new producer and the next write goes through, instead of 50004 until a restart."""
    topic, group, logs = storage
    instance = Instance(topic, group, logs)
    stray = KafkaLog(
        RegistryState(),
        threading.RLock(),
        bootstrap=kafka_bootstrap,
        topic=topic,
        group=f"{group}-stray",
        advertised_url="stray",
    )
    try:
        first = instance.register("a", distinct_schema(1))
        stray.start(elect=False)
        stray.become_leader()  # same transactional.id: the instance's producer is fenced
        body = {"schema": distinct_schema(2).schema_str}
        fenced = httpx.post(f"{instance.url}/subjects/b/versions", json=body, timeout=60)
        assert (fenced.status_code, fenced.json()["error_code"]) == (500, 50001), fenced.text
        started = time.monotonic()
        assert instance.register("b", distinct_schema(2)) == first + 1
        assert time.monotonic() - started < 15
        assert leads(instance)
    finally:
        stray.close()
        instance.stop()
