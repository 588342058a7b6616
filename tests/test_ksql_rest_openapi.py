"""docs/openapi/ksql.yaml describes the API the server serves: every route, and the error
envelopes real answers have (checked against the document's schemas with jsonschema)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ksql_rest_fakes import FakeEngine
from starlette.routing import Route
from starlette.testclient import TestClient

from services.ksql_server.rest import create_app

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi" / "ksql.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


@pytest.fixture(scope="module")
def client() -> TestClient:
    engine = FakeEngine()
    engine.crash_on_boom = False
    return TestClient(create_app(engine))  # type: ignore[arg-type]


def _conforms(spec: dict[str, Any], schema_name: str, instance: Any) -> None:
    """Validate against components/schemas/<name>, resolving the document's own $refs."""
    schema = {**spec, "$ref": f"#/components/schemas/{schema_name}"}
    jsonschema.validate(instance, schema)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_the_document_is_openapi_3_and_its_refs_resolve(spec: dict[str, Any]) -> None:
    assert str(spec["openapi"]).startswith("3.")
    for ref in _refs(spec):
        node: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref


def test_every_route_is_described(spec: dict[str, Any], client: TestClient) -> None:
    app = client.app
    routes = [r for r in app.routes if isinstance(r, Route)]  # type: ignore[attr-defined]
    assert routes
    for route in routes:
        assert route.path in spec["paths"], route.path
        described = {m.upper() for m in spec["paths"][route.path]}
        assert (route.methods or set()) - {"HEAD"} <= described, route.path


@pytest.mark.parametrize(
    ("method", "path", "body", "schema", "status"),
    [
        ("POST", "/ksql", {"ksql": "SELECT * FROM nothing;"}, "StatementError", 400),
        ("POST", "/ksql", {"ksql": "GIBBERISH;"}, "StatementError", 400),
        ("POST", "/ksql", {"nope": 1}, "GenericError", 400),
        ("POST", "/ksql", "not json", "GenericError", 400),
        ("POST", "/ksql", '{"ksql": "SELECT \'\\ud800\';"}', "GenericError", 400),
        ("POST", "/close-query", {"queryId": "missing"}, "GenericError", 400),
        ("GET", "/no-such-endpoint", None, "GenericError", 404),
        ("GET", "/status/stream/X/create", None, "GenericError", 404),
    ],
)
def test_error_answers_match_the_documented_envelopes(
    spec: dict[str, Any],
    client: TestClient,
    method: str,
    path: str,
    body: Any,
    schema: str,
    status: int,
) -> None:
    content = body if isinstance(body, str) or body is None else json.dumps(body)
    response = client.request(method, path, content=content)
    assert response.status_code == status, response.text
    _conforms(spec, schema, response.json())
    if path in spec["paths"]:
        assert str(status) in spec["paths"][path][method.lower()]["responses"]


def test_success_answers_match_the_documented_shapes(
    spec: dict[str, Any], client: TestClient
) -> None:
    created = client.post(
        "/ksql",
        content=json.dumps(
            {"ksql": "CREATE STREAM s (a INT) WITH (kafka_topic='s', value_format='JSON');"}
        ),
    )
    assert created.status_code == 200
    for entity in created.json():
        _conforms(spec, "Entity", entity)
    info = client.get("/info").json()
    assert set(info["KsqlServerInfo"]) == set(
        spec["paths"]["/info"]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
            "properties"
        ]["KsqlServerInfo"]["properties"]
    )
