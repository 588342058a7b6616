"""Requests generated from the registry's OpenAPI description, valid and adversarial, must never
get a 5xx: every 4xx carries the `{"error_code", "message"}` shape with a code that starts with
the status, and every 2xx body matches the response schema the description declares.

The description itself is checked against the app's routes, so it cannot drift. The fuzz runs
twice: quickly in process on the in-memory registry, and (slow) against a real
`fraudstream registry serve` on the real broker, on a private storage topic so that fuzzed
global config and mode changes never reach the stack's shared registry. Both are bounded in
examples and in size; the live one talks to loopback only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from registry_openapi import Operation, load_spec, operations, validate
from starlette.routing import Route
from starlette.testclient import TestClient

from services.schema_registry.app import RegistryApp, create_app
from services.schema_registry.limits import SchemaLimits
from services.schema_registry.registry import Registry

SPEC = load_spec()
OPERATIONS = operations(SPEC)
LIMITS = SchemaLimits()
SUBJECTS = ["fuzz-a", "fuzz-b", "fuzz-c"]


def test_the_description_lists_exactly_the_served_routes() -> None:
    served = set()
    for route in RegistryApp(Registry()).routes():
        assert isinstance(route, Route)
        path = route.path.replace("{schema_id:int}", "{id}").replace(":path}", "}")
        served |= {(m, path) for m in route.methods or () if m != "HEAD"}
    described = {(op.method, op.path) for op in OPERATIONS}
    assert described == served


# -- strategies generated from the description --------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=12,
)
field_types = st.sampled_from(
    ["int", "long", "string", "double", "boolean", "bytes", ["null", "string"], ["null", "long"]]
)


@st.composite
def valid_records(draw: st.DrawFn) -> str:
    names = draw(
        st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), max_size=6, unique=True)
    )
    fields = []
    for name in names:
        kind = draw(field_types)
        field: dict[str, Any] = {"name": name, "type": kind}
        if isinstance(kind, list):
            field["default"] = None
        fields.append(field)
    return json.dumps(
        {"type": "record", "name": draw(st.sampled_from(["R", "S"])), "fields": fields}
    )


def deep_text(levels: int) -> str:
    return '{"type":"array","items":' * levels + '"int"' + "}" * levels


def wide_union(branches: int) -> str:
    named = [{"type": "record", "name": f"B{i}", "fields": []} for i in range(branches)]
    return json.dumps({"type": "record", "name": "U", "fields": [{"name": "u", "type": named}]})


adversarial_schemas = st.one_of(
    st.integers(LIMITS.max_depth - 2, 3000).map(deep_text),
    st.integers(LIMITS.max_union_branches - 2, LIMITS.max_union_branches + 30).map(wide_union),
    st.integers(LIMITS.max_schema_bytes - 100, LIMITS.max_schema_bytes + 100).map(
        lambda n: json.dumps({"type": "record", "name": "P", "doc": "x" * (n - 50), "fields": []})
    ),
    st.integers(0, 300).map(lambda n: "[" * n),
    st.text(max_size=40),
)
schema_texts = st.one_of(valid_records(), adversarial_schemas, json_values.map(json.dumps))


def body_for(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object shaped by a request schema: its properties, with values drawn from the
    property's enum or type, mixed with wrong types and unknown keys."""
    props: dict[str, st.SearchStrategy[Any]] = {}
    for name, prop in schema.get("properties", {}).items():
        if name == "schema":
            props[name] = schema_texts | json_values
        elif "enum" in prop:
            props[name] = (
                st.sampled_from(prop["enum"]) | st.sampled_from(["full", "x"]) | json_values
            )
        else:
            props[name] = json_values
    required = {n: props[n] for n in schema.get("required", [])}
    optional = {n: s for n, s in props.items() if n not in required}
    optional["unknownKey"] = json_values
    return st.fixed_dictionaries(required, optional=optional)


def param_values(param: dict[str, Any]) -> st.SearchStrategy[str]:
    schema = param.get("schema", {})
    if "$ref" in schema and schema["$ref"].endswith("QueryBool"):
        return st.sampled_from(["true", "false", "True", "FALSE", "", "1", "yes"])
    if param["name"] == "subject" and param["in"] == "path":
        return st.sampled_from(SUBJECTS) | st.text(min_size=1, max_size=20)
    if param["name"] == "version":
        return st.sampled_from(["latest", "-1", "1", "2", "0", "2147483648", "x"]) | st.text(
            max_size=5
        )
    if schema.get("type") == "integer":
        return st.integers(-5, 2**40).map(str) | st.sampled_from(["", "x", "1.5"])
    return st.text(max_size=12)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes | None]:
    op: Operation = draw(st.sampled_from(OPERATIONS))
    path, query = op.path, {}
    for param in op.parameters:
        if param["in"] == "path":
            value = draw(param_values(param))
            path = path.replace("{" + param["name"] + "}", quote(value, safe=""))
        elif draw(st.booleans()):
            query[param["name"]] = draw(param_values(param))
    body = None
    if op.body is not None:
        body = draw(
            st.one_of(
                body_for(op.body).map(lambda d: json.dumps(d).encode()),
                st.binary(max_size=64),
                json_values.map(lambda v: json.dumps(v).encode()),
                st.integers(0, 50_000).map(lambda n: b'{"schema":' + b"[" * n + b"}"),
            )
        )
    return op.method, path, query, body


def check_answer(method: str, path: str, status: int, payload: Any) -> None:
    where = f"{method} {path} -> {status} {str(payload)[:300]}"
    assert status < 500, where
    if status >= 400:
        validate(SPEC, {"$ref": "#/components/schemas/ErrorMessage"}, payload, where)
        assert str(payload["error_code"]).startswith(str(status)), where
        return
    # a trailing slash is served as the path without it (Confluent's registry does the same)
    bare = path.rstrip("/") or "/"
    op = next((o for o in OPERATIONS if o.method == method and matches(o.path, bare)), None)
    assert op is not None, where
    content = op.responses[str(status)]["content"]
    validate(SPEC, content["application/vnd.schemaregistry.v1+json"]["schema"], payload, where)


def matches(template: str, path: str) -> bool:
    parts, actual = template.split("/"), path.split("/")
    return len(parts) == len(actual) and all(
        p == a or (p.startswith("{") and a) for p, a in zip(parts, actual, strict=True)
    )


# -- in process (quick) ---------------------------------------------------------------------------

IN_PROCESS = TestClient(create_app(Registry()))
for _subject in SUBJECTS[:2]:
    IN_PROCESS.post(
        f"/subjects/{_subject}/versions",
        json={"schema": json.dumps({"type": "record", "name": "R", "fields": []})},
    )


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=requests())
def test_described_requests_in_process(
    request: tuple[str, str, dict[str, str], bytes | None],
) -> None:
    method, path, query, body = request
    response = IN_PROCESS.request(
        method, path, params=query, content=body, headers={"content-type": "application/json"}
    )
    # Starlette redirects a trailing slash: check the answer of the path finally served.
    check_answer(method, response.url.path, response.status_code, response.json())


# -- against a real registry on the real broker (slow) -------------------------------------------

LIVE_BUDGET_S = 240.0


@pytest.fixture(scope="module")
def live_registry(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from test_registry_kafka import Instance

    from services.common.kafka import delete_topics

    suffix = str(time.time_ns())[-10:]
    topic = f"_schemas_fuzz_{suffix}"
    logs: Path = tmp_path_factory.mktemp("registry-fuzz")
    instance = Instance(topic, f"registry-fuzz-{suffix}", logs)
    try:
        for subject in SUBJECTS[:2]:
            body = {"schema": json.dumps({"type": "record", "name": "R", "fields": []})}
            httpx.post(f"{instance.url}/subjects/{subject}/versions", json=body).raise_for_status()
        yield instance.url
    finally:
        instance.stop()
        delete_topics([topic], kafka_bootstrap)


@pytest.mark.slow
def test_described_requests_against_a_live_registry(live_registry: str) -> None:
    assert live_registry.startswith("http://127.0.0.1:")
    started = time.monotonic()
    answered = {"2xx": 0, "4xx": 0}

    with httpx.Client(base_url=live_registry, timeout=30, follow_redirects=True) as http:

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
        @given(request=requests())
        def run(request: tuple[str, str, dict[str, str], bytes | None]) -> None:
            if time.monotonic() - started > LIVE_BUDGET_S:
                return  # bounded in time as well as in count
            method, path, query, body = request
            response = http.request(
                method,
                path,
                params=query,
                content=body,
                headers={"content-type": "application/vnd.schemaregistry.v1+json"},
            )
            check_answer(method, response.url.path, response.status_code, response.json())
            answered["2xx" if response.status_code < 400 else "4xx"] += 1

        run()
        # Still serving, and still the writer: a valid registration goes through at once.
        http.put("/mode", json={"mode": "READWRITE"}).raise_for_status()
        http.put("/config", json={"compatibility": "NONE"}).raise_for_status()
        schema = {"type": "record", "name": "After", "fields": [{"name": "a", "type": "int"}]}
        after = http.post("/subjects/fuzz-after/versions", json={"schema": json.dumps(schema)})
        assert after.status_code == 200, after.text
    assert answered["2xx"] > 10 and answered["4xx"] > 10, answered
