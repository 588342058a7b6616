"""The registry's REST API and Confluent semantics, on an in-memory log (no broker needed).

Covers every route, the id/version rules (one global id space, re-registering returns the same
id), soft then permanent deletes, config, mode, and each error code the issue lists, plus bad
input (malformed JSON, oversize bodies, unknown routes and methods) answered as JSON errors.
"""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace
from typing import Any, cast

import pytest
from starlette.testclient import TestClient

from services.schema_registry import app as app_module
from services.schema_registry.app import create_app
from services.schema_registry.kafka_log import KafkaLog, NotLeader
from services.schema_registry.registry import Registry
from services.schema_registry.state import RegistryState

CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


def record(*fields: tuple[str, Any], name: str = "R", **extra: Any) -> str:
    body = {"type": "record", "name": name, "fields": [], **extra}
    for fname, ftype in fields:
        field: dict[str, Any] = {"name": fname, "type": ftype}
        if isinstance(ftype, list) and ftype[0] == "null":
            field["default"] = None
        body["fields"].append(field)
    return json.dumps(body)


V1 = record(("a", "int"))
V2 = record(("a", "int"), ("b", ["null", "string"]))
INCOMPATIBLE = record(("a", "string"))
BAD_DEFAULT = json.dumps(
    {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "x"}]}
)


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(Registry()))


def register(client: TestClient, subject: str, schema: str, **params: str) -> Any:
    return client.post(f"/subjects/{subject}/versions", json={"schema": schema}, params=params)


def error_code(response: Any) -> int:
    body = response.json()
    assert set(body) == {"error_code", "message"}, body
    return int(body["error_code"])


def test_root_and_types(client: TestClient) -> None:
    assert client.get("/").json() == {}
    assert client.get("/schemas/types").json() == ["JSON", "PROTOBUF", "AVRO"]
    assert client.get("/contexts").json() == ["."]


def test_responses_use_the_registry_content_type(client: TestClient) -> None:
    response = register(client, "s", V1)
    assert response.headers["content-type"].startswith("application/vnd.schemaregistry.v1+json")


def test_register_assigns_global_ids_and_versions(client: TestClient) -> None:
    assert register(client, "s1", V1).json() == {"id": 1}
    assert register(client, "s1", V1).json() == {"id": 1}, "re-registering returns the same id"
    assert register(client, "s2", V1).json() == {"id": 1}, "same schema, other subject: same id"
    assert register(client, "s1", V2).json() == {"id": 2}
    assert client.get("/subjects/s1/versions").json() == [1, 2]
    assert client.get("/subjects/s2/versions").json() == [1]
    assert client.get("/subjects").json() == ["s1", "s2"]


def test_whitespace_and_key_order_do_not_make_a_new_schema(client: TestClient) -> None:
    first = register(client, "s", V1).json()["id"]
    respelled = json.dumps(
        {"fields": [{"type": "int", "name": "a"}], "name": "R", "type": "record"}, indent=2
    )
    assert register(client, "s", respelled).json()["id"] == first
    assert client.get("/subjects/s/versions").json() == [1]


def test_a_different_default_is_a_different_schema(client: TestClient) -> None:
    a = json.dumps(
        {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int", "default": 1}]}
    )
    b = json.dumps(
        {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int", "default": 2}]}
    )
    assert register(client, "s", a).json()["id"] != register(client, "s", b).json()["id"]


def test_normalize_matches_namespace_spellings(client: TestClient) -> None:
    inner_relative = {
        "type": "record",
        "name": "R",
        "namespace": "n",
        "fields": [{"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}],
    }
    inner_absolute = {
        "type": "record",
        "name": "n.R",
        "fields": [{"name": "e", "type": {"type": "enum", "name": "n.E", "symbols": ["A"]}}],
    }
    sid = register(client, "s", json.dumps(inner_relative), normalize="true").json()["id"]
    again = register(client, "s", json.dumps(inner_absolute), normalize="True").json()["id"]
    assert again == sid
    found = client.post(
        "/subjects/s", json={"schema": json.dumps(inner_absolute)}, params={"normalize": "true"}
    )
    assert found.json()["id"] == sid


def test_get_by_id_and_usages(client: TestClient) -> None:
    sid = register(client, "s1", V1).json()["id"]
    register(client, "s2", V1)
    assert client.get(f"/schemas/ids/{sid}").json() == {
        "schema": json.dumps(json.loads(V1), separators=(",", ":"))
    }
    assert client.get(f"/schemas/ids/{sid}/schema").json() == json.loads(V1)
    assert client.get(f"/schemas/ids/{sid}/versions").json() == [
        {"subject": "s1", "version": 1},
        {"subject": "s2", "version": 1},
    ]
    assert client.get(f"/schemas/ids/{sid}/subjects").json() == ["s1", "s2"]
    only_s2 = client.get(f"/schemas/ids/{sid}/versions", params={"subject": "s2"}).json()
    assert only_s2 == [{"subject": "s2", "version": 1}]
    missing = client.get("/schemas/ids/999")
    assert missing.status_code == 404 and error_code(missing) == 40403


def test_versions_latest_and_schema(client: TestClient) -> None:
    register(client, "s", V1)
    register(client, "s", V2)
    one = client.get("/subjects/s/versions/1").json()
    assert one == {"subject": "s", "version": 1, "id": 1, "schema": one["schema"]}
    assert client.get("/subjects/s/versions/latest").json()["version"] == 2
    assert client.get("/subjects/s/versions/-1").json()["version"] == 2
    assert client.get("/subjects/s/versions/2/schema").json() == json.loads(V2)
    assert client.get("/subjects/s/versions/1/referencedby").json() == []


@pytest.mark.parametrize("bad", ["abc", "0", "-2", "1.5", "99999999999"])
def test_invalid_version_is_42202(client: TestClient, bad: str) -> None:
    register(client, "s", V1)
    response = client.get(f"/subjects/s/versions/{bad}")
    assert response.status_code == 422 and error_code(response) == 42202


def test_unknown_subject_and_version(client: TestClient) -> None:
    assert error_code(client.get("/subjects/nope/versions")) == 40401
    assert error_code(client.get("/subjects/nope/versions/latest")) == 40401
    register(client, "s", V1)
    response = client.get("/subjects/s/versions/7")
    assert response.status_code == 404 and error_code(response) == 40402


def test_lookup(client: TestClient) -> None:
    register(client, "s", V1)
    found = client.post("/subjects/s", json={"schema": V1}).json()
    assert found["id"] == 1 and found["version"] == 1 and found["subject"] == "s"
    assert error_code(client.post("/subjects/s", json={"schema": V2})) == 40403
    assert error_code(client.post("/subjects/other", json={"schema": V1})) == 40401


def test_incompatible_schema_is_409_and_config_none_allows_it(client: TestClient) -> None:
    register(client, "s", V1)
    response = register(client, "s", INCOMPATIBLE)
    assert response.status_code == 409 and error_code(response) == 409
    assert client.put("/config/s", json={"compatibility": "NONE"}).json() == {
        "compatibility": "NONE"
    }
    assert register(client, "s", INCOMPATIBLE).status_code == 200


def test_global_and_subject_config(client: TestClient) -> None:
    assert client.get("/config").json() == {"compatibilityLevel": "BACKWARD"}
    assert client.put("/config", json={"compatibility": "full"}).json() == {"compatibility": "FULL"}
    assert client.get("/config").json() == {"compatibilityLevel": "FULL"}
    unset = client.get("/config/s")
    assert unset.status_code == 404 and error_code(unset) == 40408
    assert client.get("/config/s", params={"defaultToGlobal": "true"}).json() == {
        "compatibilityLevel": "FULL"
    }
    client.put("/config/s", json={"compatibility": "FORWARD_TRANSITIVE"})
    assert client.get("/config/s").json() == {"compatibilityLevel": "FORWARD_TRANSITIVE"}
    assert client.delete("/config/s").json() == {"compatibilityLevel": "FORWARD_TRANSITIVE"}
    assert error_code(client.get("/config/s")) == 40408
    client.delete("/config")
    assert client.get("/config").json() == {"compatibilityLevel": "BACKWARD"}


@pytest.mark.parametrize("body", [{"compatibility": "SIDEWAYS"}, {"compatibility": 5}, {}])
def test_invalid_compatibility_level_is_42203(client: TestClient, body: dict[str, Any]) -> None:
    response = client.put("/config", json=body)
    assert response.status_code == 422 and error_code(response) == 42203


def test_subject_soft_then_permanent_delete(client: TestClient) -> None:
    register(client, "s", V1)
    register(client, "s", V2)
    not_soft = client.delete("/subjects/s", params={"permanent": "true"})
    assert not_soft.status_code == 404 and error_code(not_soft) == 40405
    assert client.delete("/subjects/s").json() == [1, 2]
    assert client.get("/subjects").json() == []
    assert client.get("/subjects", params={"deleted": "true"}).json() == ["s"]
    assert error_code(client.get("/subjects/s/versions")) == 40401
    assert client.get("/subjects/s/versions", params={"deleted": "true"}).json() == [1, 2]
    assert error_code(client.delete("/subjects/s")) == 40404
    assert client.get("/schemas/ids/1").status_code == 200, "soft-deleted ids still resolve"
    assert client.delete("/subjects/s", params={"permanent": "true"}).json() == [1, 2]
    assert error_code(client.delete("/subjects/s", params={"permanent": "true"})) == 40401
    assert error_code(client.get("/schemas/ids/1")) == 40403


def test_version_soft_then_permanent_delete(client: TestClient) -> None:
    register(client, "s", V1)
    register(client, "s", V2)
    assert (
        error_code(client.delete("/subjects/s/versions/1", params={"permanent": "true"})) == 40407
    )
    assert client.delete("/subjects/s/versions/1").json() == 1
    assert error_code(client.delete("/subjects/s/versions/1")) == 40406
    assert client.get("/subjects/s/versions").json() == [2]
    assert error_code(client.get("/subjects/s/versions/1")) == 40402
    assert client.get("/subjects/s/versions/1", params={"deleted": "true"}).json()["version"] == 1
    assert client.delete("/subjects/s/versions/1", params={"permanent": "true"}).json() == 1
    assert client.get("/subjects/s/versions", params={"deleted": "true"}).json() == [2]
    assert error_code(client.delete("/subjects/s/versions/9")) == 40402
    assert error_code(client.delete("/subjects/s/versions/x")) == 42202


def test_reregistering_a_soft_deleted_schema_keeps_its_id(client: TestClient) -> None:
    register(client, "s", V1)
    client.delete("/subjects/s")
    assert register(client, "s", V1).json() == {"id": 1}
    assert client.get("/subjects/s/versions").json() == [2]


def test_compatibility_endpoint(client: TestClient) -> None:
    path = "/compatibility/subjects/s/versions"
    assert client.post(path, json={"schema": V1}).json() == {"is_compatible": True}
    register(client, "s", V1)
    assert client.post(path + "/latest", json={"schema": V2}).json() == {"is_compatible": True}
    verbose = client.post(path + "/1", json={"schema": INCOMPATIBLE}, params={"verbose": "True"})
    assert verbose.json()["is_compatible"] is False and verbose.json()["messages"]
    plain = client.post(path, json={"schema": INCOMPATIBLE}, params={"verbose": "False"})
    assert plain.json() == {"is_compatible": False}
    assert (
        error_code(client.post("/compatibility/subjects/x/versions/1", json={"schema": V1}))
        == 40401
    )
    assert error_code(client.post(path + "/5", json={"schema": V1})) == 40402
    assert error_code(client.post(path + "/zero", json={"schema": V1})) == 42202


def test_mode(client: TestClient) -> None:
    assert client.get("/mode").json() == {"mode": "READWRITE"}
    assert error_code(client.get("/mode/s")) == 40409
    assert client.put("/mode/s", json={"mode": "READONLY"}).json() == {"mode": "READONLY"}
    refused = register(client, "s", V1)
    assert refused.status_code == 422 and error_code(refused) == 42205
    assert register(client, "other", V1).status_code == 200
    assert client.delete("/mode/s").json() == {"mode": "READONLY"}
    assert register(client, "s", V1).status_code == 200
    invalid = client.put("/mode", json={"mode": "SOMETIMES"})
    assert invalid.status_code == 422 and error_code(invalid) == 42204


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"schema": "not json"}, "not JSON"),
        ({"schema": '{"type": "record", "name": "R"}'}, "fields"),
        ({"schema": '{"type": "nosuchtype"}'}, "nosuchtype"),
        ({"schema": BAD_DEFAULT}, "default"),
        ({"schema": '{"type": "nosuch"}', "schemaType": "JSON"}, "nosuch"),
        (
            {"schema": "syntax = 'proto3'; message M { strin x = 1; }", "schemaType": "PROTOBUF"},
            "strin",
        ),
        ({"schema": V1, "schemaType": "XML"}, "not supported"),
        (
            {"schema": V1, "references": [{"name": "x", "subject": "y", "version": 1}]},
            "no schema y",
        ),
        ({}, "non-empty string"),
        ({"schema": {"type": "int"}}, "non-empty string"),
    ],
)
def test_invalid_schema_is_42201(client: TestClient, body: dict[str, Any], reason: str) -> None:
    response = client.post("/subjects/s/versions", json=body)
    assert response.status_code == 422 and error_code(response) == 42201
    assert reason in response.json()["message"]
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"schema"', b"\xff\xfe"])
def test_malformed_body_is_400(client: TestClient, raw: bytes) -> None:
    response = client.post("/subjects/s/versions", content=raw, headers=CT)
    assert response.status_code == 400 and error_code(response) == 400


def test_oversize_body_is_413(client: TestClient) -> None:
    huge = json.dumps({"schema": " " * (app_module.MAX_BODY_BYTES + 10)})
    response = client.post("/subjects/s/versions", content=huge, headers=CT)
    assert response.status_code == 413 and error_code(response) == 413
    assert client.get("/").json() == {}


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    missing = client.get("/no/such/route")
    assert missing.status_code == 404 and error_code(missing) == 404
    wrong = client.put("/subjects/s/versions", json={})
    assert wrong.status_code == 405 and error_code(wrong) == 405
    non_int_id = client.get("/schemas/ids/abc")
    assert non_int_id.status_code == 404 and error_code(non_int_id) == 404


def test_bad_boolean_is_400(client: TestClient) -> None:
    response = client.get("/subjects", params={"deleted": "maybe"})
    assert response.status_code == 400 and error_code(response) == 400


def test_plain_json_content_type_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/subjects/s/versions",
        content=json.dumps({"schema": V1}),
        headers={"Content-Type": "application/json"},
    )
    assert response.json() == {"id": 1}


def test_subject_prefix_filter(client: TestClient) -> None:
    for subject in ("orders-value", "orders-key", "users-value"):
        register(client, subject, V1)
    assert client.get("/subjects", params={"subjectPrefix": "orders"}).json() == [
        "orders-key",
        "orders-value",
    ]


# -- readiness, store failures and leader forwarding -------------------------------------------


def fake_kafka(**attrs: Any) -> KafkaLog:
    ready = threading.Event()
    if attrs.pop("ready", True):
        ready.set()
    base = {
        "ready": ready,
        "failure": None,
        "advertised_url": "http://127.0.0.1:1",
        "forget_leader": lambda: None,
    }
    return cast(KafkaLog, SimpleNamespace(**{**base, **attrs}))


class RefusingLog:
    """A log on a follower: every write raises NotLeader with the given leader URL."""

    def __init__(self, leader: str | None) -> None:
        self.leader = leader

    def write(self, records: Any) -> None:
        raise NotLeader(self.leader)


def test_not_ready_is_503_with_50002() -> None:
    client = TestClient(create_app(Registry(), fake_kafka(ready=False)))
    for response in (client.get("/"), client.get("/subjects")):
        assert response.status_code == 503 and error_code(response) == 50002


def test_store_failure_is_50001() -> None:
    client = TestClient(create_app(Registry(), fake_kafka(failure="broker gone")))
    response = client.get("/subjects")
    assert response.status_code == 500 and error_code(response) == 50001


def test_no_leader_is_50004(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "LEADER_WAIT_S", 0.3)
    registry = Registry(RegistryState(), log_factory=lambda s, lock: RefusingLog(None))
    client = TestClient(create_app(registry, fake_kafka()))
    response = register(client, "s", V1)
    assert response.status_code == 500 and error_code(response) == 50004


def test_unreachable_leader_is_50003() -> None:
    registry = Registry(log_factory=lambda s, lock: RefusingLog("http://127.0.0.1:9"))
    client = TestClient(create_app(registry, fake_kafka()))
    response = register(client, "s", V1)
    assert response.status_code == 500 and error_code(response) == 50003


def test_forwarded_request_is_not_forwarded_again() -> None:
    registry = Registry(log_factory=lambda s, lock: RefusingLog("http://127.0.0.1:9"))
    client = TestClient(create_app(registry, fake_kafka()))
    response = client.post(
        "/subjects/s/versions",
        json={"schema": V1},
        headers={app_module.FORWARDED_HEADER: "1"},
    )
    assert error_code(response) == 50004


def test_list_all_schemas(client: TestClient) -> None:
    register(client, "a", V1)
    register(client, "a", V2)
    register(client, "b", V1)
    every = client.get("/schemas").json()
    assert [(s["subject"], s["version"]) for s in every] == [("a", 1), ("a", 2), ("b", 1)]
    latest = client.get("/schemas", params={"latestOnly": "true", "subjectPrefix": "a"}).json()
    assert [(s["subject"], s["version"], s["id"]) for s in latest] == [("a", 2, 2)]


def test_pagination(client: TestClient) -> None:
    for subject in ("a", "b", "c", "d"):
        register(client, subject, V1)
    assert client.get("/subjects", params={"offset": "1", "limit": "2"}).json() == ["b", "c"]
    assert client.get("/schemas/ids/1/subjects", params={"offset": 3, "limit": -1}).json() == ["d"]
    assert error_code(client.get("/subjects", params={"limit": "many"})) == 400
