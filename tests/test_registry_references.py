"""JSON Schema and Protobuf schemas and schema references through the registry's REST API, in
process (no Kafka): the answer shapes Confluent's registry gives, the `_schemas` records it
writes, and the REST gaps clients hit (trailing slashes)."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from starlette.testclient import TestClient

from services.schema_registry.app import create_app
from services.schema_registry.registry import MemoryLog, Registry
from services.schema_registry.state import RegistryState, encode

ADDRESS_AVRO = json.dumps(
    {
        "type": "record",
        "name": "Address",
        "namespace": "com.acme",
        "fields": [{"name": "street", "type": "string"}],
    }
)
PERSON_AVRO = json.dumps(
    {
        "type": "record",
        "name": "Person",
        "namespace": "com.acme",
        "fields": [{"name": "name", "type": "string"}, {"name": "home", "type": "Address"}],
    }
)
ADDRESS_JSON = json.dumps(
    {"type": "object", "properties": {"street": {"type": "string"}}, "required": ["street"]}
)
PERSON_JSON = json.dumps(
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "home": {"$ref": "address.json"}},
    }
)
ADDRESS_PROTO = 'syntax = "proto3";\npackage acme;\nmessage Address { string street = 1; }\n'
PERSON_PROTO = (
    'syntax = "proto3";\npackage acme;\nimport "address.proto";\n'
    "message Person { string name = 1; Address home = 2; }\n"
)
CASES = {
    "AVRO": (ADDRESS_AVRO, PERSON_AVRO, "com.acme.Address"),
    "JSON": (ADDRESS_JSON, PERSON_JSON, "address.json"),
    "PROTOBUF": (ADDRESS_PROTO, PERSON_PROTO, "address.proto"),
}


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def client(registry: Registry) -> TestClient:
    return TestClient(create_app(registry))


def body(schema: str, kind: str, refs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"schema": schema}
    if kind != "AVRO":
        out["schemaType"] = kind
    if refs is not None:
        out["references"] = refs
    return out


def register_pair(client: TestClient, kind: str) -> tuple[int, int, list[dict[str, Any]]]:
    address, person, name = CASES[kind]
    first = client.post("/subjects/address/versions", json=body(address, kind))
    assert first.status_code == 200, first.json()
    refs = [{"name": name, "subject": "address", "version": 1}]
    second = client.post("/subjects/person/versions", json=body(person, kind, refs))
    assert second.status_code == 200, second.json()
    return first.json()["id"], second.json()["id"], refs


@pytest.mark.parametrize("kind", ["AVRO", "JSON", "PROTOBUF"])
def test_references_on_register_get_and_lookup(client: TestClient, kind: str) -> None:
    address_id, person_id, refs = register_pair(client, kind)
    assert person_id == address_id + 1
    got = client.get(f"/schemas/ids/{person_id}").json()
    assert got["references"] == refs
    assert ("schemaType" in got) is (kind != "AVRO")
    assert got.get("schemaType", "AVRO") == kind
    version = client.get("/subjects/person/versions/1").json()
    assert version["references"] == refs and version["id"] == person_id
    assert set(version) == {"subject", "version", "id", "schema", "references"} | (
        {"schemaType"} if kind != "AVRO" else set()
    )
    _, person, _ = CASES[kind]
    found = client.post("/subjects/person", json=body(person, kind, refs))
    assert found.status_code == 200 and found.json()["id"] == person_id
    # the same text without its references is another schema (and here not even valid)
    alone = client.post("/subjects/person", json=body(person, kind))
    assert alone.status_code in (404, 422)
    assert client.get("/subjects/address/versions/1/referencedby").json() == [person_id]
    assert client.get(f"/schemas/ids/{address_id}/referencedby").json() == [person_id]
    assert client.get("/subjects/person/versions/1/referencedby").json() == []


@pytest.mark.parametrize("kind", ["AVRO", "JSON", "PROTOBUF"])
def test_deleting_a_referenced_schema_is_42206(client: TestClient, kind: str) -> None:
    register_pair(client, kind)
    expected = {
        "error_code": 42206,
        "message": "One or more references exist to the schema "
        "{magic=1,keytype=SCHEMA,subject=address,version=1}.",
    }
    for path in ("/subjects/address/versions/1", "/subjects/address"):
        refused = client.delete(path)
        assert (refused.status_code, refused.json()) == (422, expected)
    assert client.delete("/subjects/person").status_code == 200
    assert client.delete("/subjects/address/versions/1").status_code == 200


def test_latest_reference_version_and_missing_reference(client: TestClient) -> None:
    client.post("/subjects/address/versions", json=body(ADDRESS_JSON, "JSON"))
    latest = [{"name": "address.json", "subject": "address", "version": -1}]
    done = client.post("/subjects/person/versions", json=body(PERSON_JSON, "JSON", latest))
    assert done.status_code == 200
    refs = client.get("/subjects/person/versions/1").json()["references"]
    assert refs == [{"name": "address.json", "subject": "address", "version": 1}]
    missing = [{"name": "address.json", "subject": "nowhere", "version": 1}]
    refused = client.post("/subjects/p2/versions", json=body(PERSON_JSON, "JSON", missing))
    assert refused.status_code == 422 and refused.json()["error_code"] == 42201
    bad = [{"name": "x"}]
    refused = client.post("/subjects/p2/versions", json=body(PERSON_JSON, "JSON", bad))
    assert refused.status_code == 422 and refused.json()["error_code"] == 42201


def test_nested_protobuf_references_resolve_transitively(client: TestClient) -> None:
    street = 'syntax = "proto3";\npackage acme;\nmessage Street { string name = 1; }\n'
    address = (
        'syntax = "proto3";\npackage acme;\nimport "street.proto";\n'
        "message Address { Street street = 1; }\n"
    )
    client.post("/subjects/street/versions", json=body(street, "PROTOBUF"))
    refs = [{"name": "street.proto", "subject": "street", "version": 1}]
    assert (
        client.post("/subjects/address/versions", json=body(address, "PROTOBUF", refs)).status_code
        == 200
    )
    refs2 = [{"name": "address.proto", "subject": "address", "version": 1}]
    done = client.post("/subjects/person/versions", json=body(PERSON_PROTO, "PROTOBUF", refs2))
    assert done.status_code == 200, done.json()


def test_ids_are_shared_across_types(client: TestClient) -> None:
    ids = []
    for subject, kind in (("a", "AVRO"), ("j", "JSON"), ("p", "PROTOBUF")):
        answer = client.post(f"/subjects/{subject}/versions", json=body(CASES[kind][0], kind))
        ids.append(answer.json()["id"])
    assert ids == [1, 2, 3]
    # the same schema in another subject keeps its id
    again = client.post("/subjects/p2/versions", json=body(ADDRESS_PROTO, "PROTOBUF"))
    assert again.json() == {"id": 3}
    assert client.get("/schemas/ids/2").json() == {
        "schema": json.dumps(json.loads(ADDRESS_JSON), separators=(",", ":")),
        "schemaType": "JSON",
    }
    assert client.get("/schemas/ids/1").json() == {"schema": ADDRESS_AVRO.replace(" ", "")}
    assert client.get("/schemas/ids/3/versions").json() == [
        {"subject": "p", "version": 1},
        {"subject": "p2", "version": 1},
    ]


def test_protobuf_text_and_base64_descriptor_are_one_schema(client: TestClient) -> None:
    first = client.post("/subjects/p/versions", json=body(ADDRESS_PROTO, "PROTOBUF")).json()
    serialized = client.get(f"/schemas/ids/{first['id']}?format=serialized").json()
    raw = base64.b64decode(serialized["schema"])
    descriptor = descriptor_pb2.FileDescriptorProto.FromString(raw)
    assert [m.name for m in descriptor.message_type] == ["Address"]
    again = client.post("/subjects/p/versions", json=body(serialized["schema"], "PROTOBUF"))
    assert again.json() == first
    as_text = client.get("/subjects/p/versions/1").json()["schema"]
    assert as_text.startswith('syntax = "proto3";') and "message Address" in as_text
    assert (
        client.get("/subjects/p/versions/1?format=serialized").json()["schema"]
        == (serialized["schema"])
    )


@pytest.mark.parametrize(
    ("kind", "first", "second"),
    [
        (
            "JSON",
            '{"type":"object","properties":{"a":{"type":"string"}}}',
            '{"properties":{"a":{"type":"string"}},"type":"object"}',
        ),
        (
            "PROTOBUF",
            'syntax = "proto3"; package x; message M { x.N n = 1; } message N {}',
            'syntax = "proto3";\npackage x;\n\nmessage M {\n  N n = 1;\n}\nmessage N {\n}\n',
        ),
    ],
)
def test_normalize_makes_spellings_one_schema(
    client: TestClient, kind: str, first: str, second: str
) -> None:
    one = client.post("/subjects/s/versions?normalize=true", json=body(first, kind)).json()
    two = client.post("/subjects/s/versions?normalize=true", json=body(second, kind)).json()
    assert one == two
    assert client.get("/subjects/s/versions").json() == [1]
    found = client.post("/subjects/s?normalize=true", json=body(second, kind))
    assert found.status_code == 200 and found.json()["id"] == one["id"]


def test_schemas_records_keep_confluents_fields_and_replay(registry: Registry) -> None:
    client = TestClient(create_app(registry))
    register_pair(client, "PROTOBUF")
    assert isinstance(registry.log, MemoryLog)
    records = registry.log.records
    key, value = records[-1]
    assert key == {"keytype": "SCHEMA", "subject": "person", "version": 1, "magic": 1}
    assert value is not None
    assert value["schemaType"] == "PROTOBUF"
    assert value["references"] == [{"name": "address.proto", "subject": "address", "version": 1}]
    assert set(value) == {
        "subject",
        "version",
        "id",
        "schema",
        "deleted",
        "schemaType",
        "references",
    }
    # a restart: a fresh state folded from the same records answers the same
    replayed = RegistryState()
    for k, v in records:
        replayed.apply(json.loads(encode(k) or b"null"), json.loads(encode(v) or b"null"))
    again = TestClient(create_app(Registry(replayed, threading.RLock())))
    for path in ("/schemas/ids/2", "/subjects/person/versions/1", "/subjects/address/versions/1"):
        assert again.get(path).json() == client.get(path).json()
    refused = again.delete("/subjects/address")
    assert refused.json()["error_code"] == 42206


def test_schema_types_lists_all_three(client: TestClient) -> None:
    assert client.get("/schemas/types").json() == ["JSON", "PROTOBUF", "AVRO"]
    assert client.get("/schemas/types/").json() == ["JSON", "PROTOBUF", "AVRO"]


def test_config_with_a_trailing_slash_is_served_not_redirected(client: TestClient) -> None:
    got = client.get("/config/", follow_redirects=False)
    assert (got.status_code, got.json()) == (200, {"compatibilityLevel": "BACKWARD"})
    put = client.put("/config/", json={"compatibility": "FULL"}, follow_redirects=False)
    assert (put.status_code, put.json()) == (200, {"compatibility": "FULL"})
    assert client.get("/config").json() == {"compatibilityLevel": "FULL"}
    assert client.get("/mode/", follow_redirects=False).json() == {"mode": "READWRITE"}
    assert client.get("/subjects/", follow_redirects=False).json() == []
    client.post("/subjects/s/versions", json=body(ADDRESS_AVRO, "AVRO"))
    versions = client.get("/subjects/s/versions/", follow_redirects=False)
    assert (versions.status_code, versions.json()) == (200, [1])
    subject_config = client.put(
        "/config/s/", json={"compatibility": "NONE"}, follow_redirects=False
    )
    assert (subject_config.status_code, subject_config.json()) == (200, {"compatibility": "NONE"})


def test_a_subject_with_a_slash_is_served(client: TestClient) -> None:
    """Protobuf reference subjects are file names (`acme/address.proto`), sent as %2F."""
    path = "/subjects/acme%2Faddress.proto/versions"
    assert client.post(path, json=body(ADDRESS_PROTO, "PROTOBUF")).json() == {"id": 1}
    assert client.get(path).json() == [1]
    assert client.get(path + "/1").json()["subject"] == "acme/address.proto"
    assert client.get("/subjects").json() == ["acme/address.proto"]
    assert client.put("/config/acme%2Faddress.proto", json={"compatibility": "NONE"}).json() == {
        "compatibility": "NONE"
    }
    refs = [{"name": "address.proto", "subject": "acme/address.proto", "version": 1}]
    done = client.post("/subjects/person/versions", json=body(PERSON_PROTO, "PROTOBUF", refs))
    assert done.status_code == 200
    assert client.get(path + "/1/referencedby").json() == [done.json()["id"]]
    assert client.delete("/subjects/acme%2Faddress.proto").json()["error_code"] == 42206
