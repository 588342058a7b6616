"""The registry's bounds on what a client sends, each at its boundary, on an in-memory log.

Every limit is tried at its maximum (accepted, and carried through parsing, canonical and
normalised printing, the defaults check and a FULL compatibility check: the recursive paths) and
one past it (422 with Confluent's 42201, before anything is written). The cases the attack found:
a 1.47 MB schema, a 2,000-deep schema, and a deeply nested request body. Then a quick hypothesis
fuzz of the request handlers without a broker: no 5xx, and the error shape on every 4xx.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from services.schema_registry import errors, schemas
from services.schema_registry.app import create_app
from services.schema_registry.compatibility import BoundedChecker, check
from services.schema_registry.kafka_log import KafkaLog
from services.schema_registry.limits import SchemaLimits
from services.schema_registry.registry import MemoryLog, Registry
from services.schema_registry.state import RegistryState

LIMITS = SchemaLimits()


def make_client(limits: SchemaLimits = LIMITS) -> tuple[TestClient, MemoryLog]:
    registry = Registry(limits=limits)
    assert isinstance(registry.log, MemoryLog)
    return TestClient(create_app(registry)), registry.log


@pytest.fixture
def client() -> TestClient:
    return make_client()[0]


def assert_error(response: Any, status: int, code: int) -> str:
    body = response.json()
    assert (response.status_code, set(body), body["error_code"]) == (
        status,
        {"error_code", "message"},
        code,
    ), body
    return str(body["message"])


def register(client: TestClient, subject: str, schema: str) -> Any:
    return client.post(f"/subjects/{subject}/versions", json={"schema": schema})


def nested_arrays(levels: int, inner: Any = "int") -> dict[str, Any]:
    """`levels` arrays of arrays: JSON depth equals `levels` (each is one object)."""
    node: Any = inner
    for _ in range(levels):
        node = {"type": "array", "items": node}
    return node  # type: ignore[no-any-return]


def nested_arrays_text(levels: int) -> str:
    """The text of `nested_arrays(levels)`, built without recursion (json.dumps recurses)."""
    return '{"type":"array","items":' * levels + '"int"' + "}" * levels


def json_depth(node: Any) -> int:
    """Nesting of objects and arrays (test data is shallow, so recursion is fine here)."""
    if isinstance(node, dict):
        return 1 + max((json_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((json_depth(v) for v in node), default=0)
    return 0


def record_of(n_fields: int, name: str = "R", pad: str = "") -> str:
    fields = [{"name": f"f{i}{pad}", "type": "int"} for i in range(n_fields)]
    return json.dumps({"type": "record", "name": name, "fields": fields})


# -- the cases the attack found -----------------------------------------------------------------


def test_a_1_47_mb_schema_is_422_at_once_and_the_next_registration_works() -> None:
    client, log = make_client()
    huge = record_of(27_000, pad="_" * 20)
    assert 1_400_000 < len(huge) < 1_600_000
    started = time.monotonic()
    message = assert_error(register(client, "big", huge), 422, 42201)
    assert time.monotonic() - started < 2.0
    assert "bytes" in message and str(LIMITS.max_schema_bytes) in message
    assert log.records == [], "nothing may be written for a refused schema"
    assert register(client, "small", record_of(2)).json() == {"id": 1}


@pytest.mark.parametrize("route", ["register", "lookup", "compatibility"])
def test_a_2000_deep_schema_is_422_on_every_route(client: TestClient, route: str) -> None:
    deep = nested_arrays_text(2000)
    register(client, "s", record_of(1))
    path = {
        "register": "/subjects/s/versions",
        "lookup": "/subjects/s",
        "compatibility": "/compatibility/subjects/s/versions/latest",
    }[route]
    message = assert_error(client.post(path, json={"schema": deep}), 422, 42201)
    assert "deeper than 64" in message


def test_a_deeply_nested_body_is_400(client: TestClient) -> None:
    body = b'{"schema": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_error(
        client.post("/subjects/s/versions", content=body, headers={"content-type": "x"}),
        400,
        400,
    )


# -- each limit at its boundary ------------------------------------------------------------------


def padded_record(size: int) -> str:
    """A valid schema of exactly `size` bytes (a doc string takes up the slack)."""
    base = json.dumps({"type": "record", "name": "R", "doc": "", "fields": []})
    text = json.dumps(
        {"type": "record", "name": "R", "doc": "x" * (size - len(base)), "fields": []}
    )
    assert len(text.encode()) == size
    return text


def test_schema_bytes_boundary() -> None:
    limits = SchemaLimits(max_schema_bytes=4096)
    client, _ = make_client(limits)
    assert register(client, "s", padded_record(4096)).status_code == 200
    assert_error(register(client, "t", padded_record(4097)), 422, 42201)


def test_schema_bytes_counts_utf8_bytes_not_characters() -> None:
    client, _ = make_client(SchemaLimits(max_schema_bytes=4096))
    text = json.dumps(
        {"type": "record", "name": "R", "doc": "é" * 2100, "fields": []}, ensure_ascii=False
    )
    assert len(text) < 4096 < len(text.encode())
    assert_error(register(client, "s", text), 422, 42201)


def deep_record_chain(levels: int) -> dict[str, Any]:
    """Records inside records: each level adds three JSON levels (record, fields, field)."""
    node: Any = {"type": "record", "name": "L0", "fields": [{"name": "x", "type": "int"}]}
    for i in range(1, levels):
        node = {
            "type": "record",
            "name": f"L{i}",
            "fields": [
                {"name": "child", "type": node},
                {
                    "name": "opt",
                    "type": ["null", {"type": "map", "values": "long"}],
                    "default": None,
                },
            ],
        }
    return node  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "shape",
    [
        lambda: nested_arrays(LIMITS.max_depth),
        lambda: {"type": "map", "values": nested_arrays(LIMITS.max_depth - 1)},
        lambda: deep_record_chain((LIMITS.max_depth - 1) // 3),
    ],
    ids=["arrays", "map-of-arrays", "records"],
)
def test_depth_at_the_limit_goes_through_every_recursive_path(shape: Any) -> None:
    """Accepted at exactly max_depth, through parse, canonical and normalised printing, the
    defaults check, a FULL_TRANSITIVE check against itself, lookup, and both raw-schema routes,
    on the server's worker threads (TestClient runs handlers as the server does)."""
    tree = shape()
    assert LIMITS.max_depth - 3 < json_depth(tree) <= LIMITS.max_depth
    text = json.dumps(tree)
    client, _ = make_client()
    client.put("/config/s", json={"compatibility": "FULL_TRANSITIVE"})
    assert register(client, "s", text).status_code == 200
    assert register(client, "s", text).json() == {"id": 1}
    compat = client.post(
        "/compatibility/subjects/s/versions", json={"schema": text}, params={"verbose": "true"}
    )
    assert compat.json()["is_compatible"] is True
    assert (
        client.post("/subjects/s", json={"schema": text}, params={"normalize": "true"}).json()["id"]
        == 1
    )
    assert client.get("/schemas/ids/1/schema").status_code == 200
    assert client.get("/subjects/s/versions/1/schema").status_code == 200


def test_depth_one_past_the_limit_is_422() -> None:
    client, _ = make_client()
    text = json.dumps(nested_arrays(LIMITS.max_depth + 1))
    message = assert_error(register(client, "s", text), 422, 42201)
    assert f"deeper than {LIMITS.max_depth}" in message


def test_default_values_count_towards_depth() -> None:
    limits = SchemaLimits(max_depth=10)
    inner: Any = 1
    for _ in range(12):
        inner = [inner]
    text = json.dumps(
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "a", "type": nested_arrays(12, "int"), "default": inner}],
        }
    )
    with pytest.raises(errors.RegistryError) as refused:
        schemas.parse(text, "AVRO", limits)
    assert refused.value.error_code == 42201


def test_node_count_boundary() -> None:
    # A record of n int fields has 4 + 3n JSON values (the object, its two strings and the
    # fields array; each field an object and two strings).
    n = 100
    text = record_of(n)
    values = 4 + 3 * n
    assert schemas.parse(text, "AVRO", SchemaLimits(max_nodes=values)).canonical
    with pytest.raises(errors.RegistryError) as refused:
        schemas.parse(text, "AVRO", SchemaLimits(max_nodes=values - 1))
    assert refused.value.error_code == 42201


def test_fields_and_symbols_count_boundary() -> None:
    limits = SchemaLimits(max_items=50)
    assert schemas.parse(record_of(50), "AVRO", limits)
    symbols = {"type": "enum", "name": "E", "symbols": [f"S{i}" for i in range(51)]}
    for text in (record_of(51), json.dumps(symbols)):
        with pytest.raises(errors.RegistryError) as refused:
            schemas.parse(text, "AVRO", limits)
        assert refused.value.error_code == 42201 and "51 members" in refused.value.message


def test_fields_per_record_boundary(client: TestClient) -> None:
    """avro parses and compares record fields in quadratic time: at the limit both stay fast."""
    started = time.monotonic()
    assert register(client, "s", record_of(LIMITS.max_fields)).status_code == 200
    wider = json.loads(record_of(LIMITS.max_fields - 1))
    wider["fields"].append({"name": "extra", "type": ["null", "int"], "default": None})
    assert register(client, "s", json.dumps(wider)).status_code == 200  # BACKWARD checked
    assert time.monotonic() - started < 10
    message = assert_error(register(client, "t", record_of(LIMITS.max_fields + 1)), 422, 42201)
    assert f"{LIMITS.max_fields + 1} fields" in message


def union_of(branches: int) -> str:
    named = [{"type": "record", "name": f"B{i}", "fields": []} for i in range(branches - 1)]
    return json.dumps(
        {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["null", *named]}]}
    )


def test_union_width_boundary(client: TestClient) -> None:
    started = time.monotonic()
    assert register(client, "u", union_of(LIMITS.max_union_branches)).status_code == 200
    compat = client.post(
        "/compatibility/subjects/u/versions", json={"schema": union_of(LIMITS.max_union_branches)}
    )
    assert compat.json() == {"is_compatible": True}
    assert time.monotonic() - started < 30
    message = assert_error(
        register(client, "v", union_of(LIMITS.max_union_branches + 1)), 422, 42201
    )
    assert "union" in message
    top_level = json.dumps(["null", *[f"B{i}" for i in range(LIMITS.max_union_branches + 1)]])
    assert_error(register(client, "w", top_level), 422, 42201)


def test_a_long_list_outside_a_type_is_not_a_union() -> None:
    symbols = {"type": "enum", "name": "E", "symbols": [f"S{i}" for i in range(500)]}
    assert schemas.parse(json.dumps(symbols)).canonical


def test_compatibility_work_budget() -> None:
    """A union check compares branches pairwise: the budget stops it with 42201, and a budget
    large enough lets the same check through."""
    old = schemas.parse(union_of(60)).parsed
    new = schemas.parse(union_of(60)).parsed
    assert check(new, [old], "FULL", max_steps=20_000) == []
    with pytest.raises(errors.RegistryError) as refused:
        check(new, [old], "FULL", max_steps=1_000)
    assert refused.value.error_code == 42201 and "1000" in refused.value.message


def optional_record(n_fields: int) -> str:
    fields = [{"name": f"f{i}", "type": ["null", "int"], "default": None} for i in range(n_fields)]
    return json.dumps({"type": "record", "name": "R", "fields": fields})


def test_compatibility_budget_counts_every_version_of_a_transitive_check() -> None:
    """One budget for the whole decision: enough for the latest version alone, not for all."""
    one_pair = BoundedChecker(10**6)
    one_pair.get_compatibility(
        schemas.parse(optional_record(21)).parsed, schemas.parse(optional_record(20)).parsed
    )
    steps = 10**6 - one_pair.steps_left
    client, _ = make_client(SchemaLimits(max_compat_steps=steps * 2))
    client.put("/config/s", json={"compatibility": "NONE"})
    for n in range(14, 21):
        assert register(client, "s", optional_record(n)).status_code == 200
    client.put("/config/s", json={"compatibility": "BACKWARD_TRANSITIVE"})
    candidate = {"schema": optional_record(21)}
    latest = client.post("/compatibility/subjects/s/versions/latest", json=candidate)
    assert latest.json() == {"is_compatible": True}
    assert_error(client.post("/compatibility/subjects/s/versions", json=candidate), 422, 42201)
    assert_error(client.post("/subjects/s/versions", json=candidate), 422, 42201)


def test_record_size_boundary() -> None:
    """The `_schemas` record (JSON-escaped schema inside JSON) must fit the topic: checked
    before the write, with the limit the topic's max.message.bytes sets."""
    text = padded_record(2000)
    key = b'{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}'
    value = json.dumps(
        {
            "subject": "s",
            "version": 1,
            "id": 1,
            "schema": schemas.parse(text).canonical,
            "deleted": False,
        },
        separators=(",", ":"),
    ).encode()
    exact = len(key) + len(value)
    ok, _ = make_client(SchemaLimits(max_record_bytes=exact))
    assert register(ok, "s", text).json() == {"id": 1}
    tight, log = make_client(SchemaLimits(max_record_bytes=exact - 1))
    assert "_schemas record" in assert_error(register(tight, "s", text), 422, 42201)
    assert log.records == []


def test_references_must_be_a_bounded_list(client: TestClient) -> None:
    body: dict[str, Any] = {"schema": record_of(1), "references": "x"}
    assert_error(client.post("/subjects/s/versions", json=body), 422, 42201)
    body["references"] = [{"name": "a", "subject": "b", "version": 1}] * 100_000
    assert_error(client.post("/subjects/s/versions", json=body), 422, 42201)


def test_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_MAX_SCHEMA_BYTES", "1000")
    monkeypatch.setenv("SCHEMA_REGISTRY_MAX_DEPTH", "8")
    limits = SchemaLimits.from_env()
    assert (limits.max_schema_bytes, limits.max_depth) == (1000, 8)
    assert limits.max_nodes == SchemaLimits().max_nodes
    monkeypatch.setenv("SCHEMA_REGISTRY_MAX_DEPTH", "-1")
    with pytest.raises(ValueError, match="SCHEMA_REGISTRY_MAX_DEPTH"):
        SchemaLimits.from_env()


def test_a_deeply_nested_stored_record_is_skipped_not_fatal() -> None:
    """A record in `_schemas` is untrusted too: one too deep for `json` is skipped, and the
    reader goes on (it used to die with a RecursionError, leaving the registry at 50001)."""
    state, lock = RegistryState(), threading.RLock()
    kafka = KafkaLog(state, lock, bootstrap="unused:1", topic="t", group="g", advertised_url="u")
    deep = b"[" * 50_000 + b"]" * 50_000
    kafka._apply(Message(topic="t", partition=0, offset=0, key=deep, value=deep))
    good_key = b'{"keytype":"CONFIG","subject":null,"magic":0}'
    kafka._apply(
        Message(
            topic="t", partition=0, offset=1, key=good_key, value=b'{"compatibilityLevel":"FULL"}'
        )
    )
    assert kafka.position == 2 and state.configs == {None: "FULL"}


# -- unit-level fuzz of the handlers (no broker) ------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
avroish = st.recursive(
    st.sampled_from(["int", "long", "string", "null", "bytes", "R", "E", "", "record"]),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["record", "enum", "array", "map", "fixed", "error", "x"])},
            optional={
                "name": st.sampled_from(["R", "E", "a.b", "1x", ""]),
                "fields": st.lists(
                    st.fixed_dictionaries(
                        {"name": st.sampled_from(["a", "b", "-"]), "type": children},
                        optional={"default": json_values},
                    ),
                    max_size=3,
                ),
                "symbols": st.lists(st.sampled_from(["A", "B", "1"]), max_size=3),
                "items": children,
                "values": children,
                "size": st.integers(-2, 4) | st.text(max_size=2),
            },
        ),
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=100),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"schema": avroish.map(json.dumps) | json_values},
        optional={
            "schemaType": st.sampled_from(["AVRO", "JSON", "avro"]) | json_values,
            "references": json_values,
            "compatibility": st.sampled_from(["FULL", "none", "BAD"]) | json_values,
            "mode": st.sampled_from(["READONLY", "READWRITE", "x"]) | json_values,
        },
    ).map(lambda d: json.dumps(d).encode()),
)
segments = st.sampled_from(["s", "t", "latest", "-1", "0", "1", "2", "x%20y", "99999999999"])
paths = st.one_of(
    st.tuples(st.just("/subjects/{}/versions"), segments),
    st.tuples(st.just("/subjects/{}"), segments),
    st.tuples(st.just("/compatibility/subjects/s/versions/{}"), segments),
    st.tuples(st.just("/config/{}"), segments),
    st.tuples(st.just("/mode/{}"), segments),
    st.tuples(st.just("/subjects/s/versions/{}"), segments),
    st.tuples(st.just("/subjects/s/versions/{}/schema"), segments),
    st.tuples(st.just("/schemas/ids/{}"), segments),
    st.tuples(st.just("/schemas/ids/{}/versions"), segments),
).map(lambda t: t[0].format(t[1]))
params = st.dictionaries(
    st.sampled_from(["normalize", "deleted", "permanent", "verbose", "offset", "limit"]),
    st.sampled_from(["true", "False", "1", "", "x", "-1", "10"]),
    max_size=3,
)

FUZZ_CLIENT = make_client()[0]
register(FUZZ_CLIENT, "s", record_of(2))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=paths,
    query=params,
    body=bodies,
)
def test_fuzzed_requests_never_500(
    method: str, path: str, query: dict[str, str], body: bytes
) -> None:
    response = FUZZ_CLIENT.request(
        method, path, params=query, content=body if method in ("POST", "PUT") else None
    )
    assert response.status_code < 500, (method, path, query, body, response.text)
    if response.status_code >= 400:
        payload = response.json()
        assert set(payload) == {"error_code", "message"}, payload
        assert isinstance(payload["error_code"], int) and isinstance(payload["message"], str)
        assert str(payload["error_code"]).startswith(str(response.status_code))
