"""Compatibility of JSON Schema and Protobuf schemas, with the verdicts Confluent's registry gives.

Each case is (what changes, old schema, new schema, compatible under BACKWARD). Confluent's
checker lists the differences between the old schema (`original`) and the new one (`update`)
and calls the change compatible when every difference is in its COMPATIBLE_CHANGES set, so the
BACKWARD verdict is the verdict of `SchemaDiff.compare(old, new)`; FORWARD swaps the two (checked
at the end through the REST API). Sources are named per group.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from services.common.schemas import json_schema, protobuf
from services.schema_registry import json_compat, proto_compat
from services.schema_registry.app import create_app
from services.schema_registry.registry import Registry

S: dict[str, Any] = {"type": "string"}
N: dict[str, Any] = {"type": "number"}
INT: dict[str, Any] = {"type": "integer"}


def obj(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, **extra}


def arr(**extra: Any) -> dict[str, Any]:
    return {"type": "array", **extra}


# -- JSON Schema ---------------------------------------------------------------------------------

JSON_CASES: list[tuple[str, Any, Any, bool]] = [
    # confluentinc/schema-registry json-schema-provider/src/test/resources/diff-schema-examples.json
    # (the verdicts of SchemaDiffTest) and json/diff/SchemaDiff.java COMPATIBLE_CHANGES:
    # annotations and simple types
    ("anything to the empty schema", {"properties": {}}, {}, True),
    ("id changed", {"$id": "a"}, {"$id": "b"}, True),
    ("title changed", {"title": "a"}, {"title": "b"}, True),
    ("description changed", {"description": "a"}, {"description": "b"}, True),
    ("object to array", {"type": "object"}, {"type": "array"}, False),
    ("string to number", S, N, False),
    # strings
    ("minLength increased", {**S, "minLength": 10}, {**S, "minLength": 11}, False),
    ("minLength decreased", {**S, "minLength": 11}, {**S, "minLength": 10}, True),
    ("maxLength increased", {**S, "maxLength": 10}, {**S, "maxLength": 12}, True),
    ("maxLength decreased", {**S, "maxLength": 12}, {**S, "maxLength": 10}, False),
    ("maxLength added", S, {**S, "maxLength": 10}, False),
    ("pattern removed", {**S, "pattern": "a+"}, S, True),
    ("pattern changed", {**S, "pattern": "a+"}, {**S, "pattern": "b+"}, False),
    ("pattern unchanged", {**S, "pattern": "a+"}, {**S, "pattern": "a+"}, True),
    # numbers
    ("maximum removed", {**N, "maximum": 10}, N, True),
    ("maximum increased", {**N, "maximum": 10}, {**N, "maximum": 11}, True),
    ("maximum decreased", {**N, "maximum": 11}, {**N, "maximum": 10}, False),
    ("minimum removed", {**N, "minimum": 10}, N, True),
    ("minimum increased", {**N, "minimum": 10}, {**N, "minimum": 11}, False),
    ("minimum decreased", {**N, "minimum": 11}, {**N, "minimum": 10}, True),
    ("multipleOf removed", {**N, "multipleOf": 10}, N, True),
    ("multipleOf reduced", {**N, "multipleOf": 10}, {**N, "multipleOf": 2}, True),
    ("multipleOf changed", {**N, "multipleOf": 10}, {**N, "multipleOf": 11}, False),
    ("number narrowed to integer", N, INT, False),
    ("integer extended to number", INT, N, True),
    # not, enum, combined schemas
    ("not narrowed", {"not": N}, {"not": INT}, True),
    ("not extended", {"not": INT}, {"not": N}, False),
    ("enum dropped from a string", {**S, "enum": ["red"]}, S, True),
    (
        "enum in allOf changed",
        {"allOf": [S, {"enum": ["red"]}]},
        {"allOf": [S, {"enum": ["blue"]}]},
        False,
    ),
    (
        "enum in allOf extended",
        {"allOf": [S, {"enum": ["red"]}]},
        {"allOf": [{"enum": ["red", "blue"]}, S]},
        True,
    ),
    ("type list extended", {"type": ["object"]}, {"type": ["object", "array"]}, True),
    ("type list narrowed", {"type": ["object", "array"]}, {"type": ["object"]}, False),
    ("oneOf subschema changed", {"oneOf": [S]}, {"oneOf": [N]}, False),
    ("oneOf extended", {"oneOf": [S]}, {"oneOf": [N, S]}, True),
    ("anyOf of two to oneOf", {"anyOf": [S, N]}, {"oneOf": [S, N]}, False),
    ("oneOf to anyOf", {"oneOf": [S, N]}, {"anyOf": [S, N]}, True),
    ("string to nullable string", S, {"oneOf": [{"type": "null"}, S]}, True),
    # objects: open content model (no additionalProperties)
    ("property renamed in open model", obj({"foo": S}), obj({"bar": S}), False),
    ("property type changed", obj({"foo": S}), obj({"foo": N}), False),
    ("property added to open model", obj({"foo": S}), obj({"foo": S, "bar": N}), False),
    ("property removed from open model", obj({"foo": S, "bar": N}), obj({"foo": S}), True),
    ("empty-schema property added to open model", obj({"foo": S}), obj({"foo": S, "b": {}}), True),
    # objects: closed content model (additionalProperties: false)
    (
        "optional property added to closed model",
        obj({"foo": S}, additionalProperties=False),
        obj({"foo": S, "bar": N}, additionalProperties=False),
        True,
    ),
    (
        "required property added to closed model",
        obj({"foo": S}, additionalProperties=False),
        obj({"foo": S, "bar": N}, additionalProperties=False, required=["bar"]),
        False,
    ),
    (
        "required property with default added to closed model",
        obj({"foo": S}, additionalProperties=False),
        obj({"foo": S, "bar": {**N, "default": 1}}, additionalProperties=False, required=["bar"]),
        True,
    ),
    (
        "property removed from closed model",
        obj({"foo": S, "bar": N}, additionalProperties=False),
        obj({"foo": S}, additionalProperties=False),
        False,
    ),
    (
        "additionalProperties false removed",
        obj({"foo": S}, additionalProperties=False),
        obj({"foo": S}),
        True,
    ),
    (
        "additionalProperties false added",
        obj({"foo": S}),
        obj({"foo": S}, additionalProperties=False),
        False,
    ),
    # objects: partially open content model
    (
        "property added, covered by patternProperties",
        obj({"foo": S}, additionalProperties=False, patternProperties={"^I_": INT}),
        obj({"foo": S, "I_1": N}, additionalProperties=False, patternProperties={"^I_": INT}),
        True,
    ),
    (
        "property added, covered by additionalProperties",
        obj({"foo": S}, additionalProperties=S),
        obj({"foo": S, "bar": S}, additionalProperties=S),
        True,
    ),
    (
        "property added, not covered by additionalProperties",
        obj({"foo": S}, additionalProperties=S),
        obj({"foo": S, "bar": N}, additionalProperties=S),
        False,
    ),
    (
        "required property added to partially open model",
        obj({"foo": S}, additionalProperties=S),
        obj({"foo": S, "bar": S}, additionalProperties=S, required=["bar"]),
        False,
    ),
    (
        "property removed, covered by additionalProperties",
        obj({"foo": S, "bar": S}, additionalProperties=False),
        obj({"foo": S}, additionalProperties=S),
        True,
    ),
    (
        "property removed, not covered by additionalProperties",
        obj({"foo": S, "bar": N}, additionalProperties=False),
        obj({"foo": S}, additionalProperties=S),
        False,
    ),
    # required, dependencies, property counts
    ("required removed", obj({"foo": S}, required=["foo"]), obj({"foo": S}), True),
    ("required added", obj({"foo": S}), obj({"foo": S}, required=["foo"]), False),
    (
        "dependency arrays swapped",
        obj({"foo": N, "bar": S}, dependencies={"foo": ["bar"]}),
        obj({"foo": N, "bar": S}, dependencies={"bar": ["foo"]}),
        False,
    ),
    (
        "dependency schema removed",
        {"dependencies": {"foo": S, "bar": S}},
        {"dependencies": {"foo": S}},
        True,
    ),
    (
        "dependency schema changed",
        {"dependencies": {"foo": S}},
        {"dependencies": {"foo": N}},
        False,
    ),
    ("maxProperties increased", {"maxProperties": 1}, {"maxProperties": 2}, True),
    ("maxProperties decreased", {"maxProperties": 2}, {"maxProperties": 1}, False),
    ("minProperties increased", {"minProperties": 1}, {"minProperties": 2}, False),
    ("minProperties decreased", {"minProperties": 2}, {"minProperties": 1}, True),
    # arrays
    ("items schema added", arr(), arr(items=S), False),
    ("items schema removed", arr(items=S), arr(), True),
    ("tuple items removed from open model", arr(items=[S, N]), arr(), True),
    (
        "tuple item added, covered by additionalItems",
        arr(items=[S, N], additionalItems=S),
        arr(items=[S, N, S], additionalItems=S),
        True,
    ),
    (
        "tuple item added, not covered by additionalItems",
        arr(items=[S, N], additionalItems=S),
        arr(items=[S, N, N], additionalItems=S),
        False,
    ),
    (
        "tuple item removed, not covered by additionalItems",
        arr(items=[S, N, N], additionalItems=S),
        arr(items=[S, N], additionalItems=S),
        False,
    ),
    ("tuple item type changed", arr(items=[S]), arr(items=[N]), False),
    ("maxItems decreased", arr(maxItems=2), arr(maxItems=1), False),
    ("minItems removed", arr(minItems=1), arr(), True),
    ("minItems increased", arr(minItems=1), arr(minItems=2), False),
    ("uniqueItems removed", arr(uniqueItems=True), arr(), True),
    ("uniqueItems added", arr(), arr(uniqueItems=True), False),
    # references inside the document
    (
        "referenced definition changed type",
        arr(items={"$ref": "#/definitions/r"}, definitions={"r": S}),
        arr(items={"$ref": "#/definitions/r"}, definitions={"r": N}),
        False,
    ),
    ("moved into a definition", S, {"$ref": "#/definitions/r", "definitions": {"r": S}}, True),
    ("moved out of a definition", {"$ref": "#/definitions/r", "definitions": {"r": S}}, S, True),
    (
        "recursive schema gains an optional property in a closed model",
        obj({"next": {"$ref": "#"}}, additionalProperties=False),
        obj({"next": {"$ref": "#"}, "v": S}, additionalProperties=False),
        True,
    ),
]


@pytest.mark.parametrize(
    ("original", "update", "compatible"),
    [pytest.param(o, u, c, id=d) for d, o, u, c in JSON_CASES],
)
def test_json_schema_backward_verdicts(original: Any, update: Any, compatible: bool) -> None:
    old = json_schema.parse(json.dumps(original))
    new = json_schema.parse(json.dumps(update))
    found = json_compat.incompatibilities(old, new)
    assert (not found) is compatible, found


def test_json_case_count() -> None:
    assert len(JSON_CASES) >= 40


# -- Protobuf ------------------------------------------------------------------------------------


def proto(body: str, syntax: str = "proto3", package: str = "p", head: str = "") -> str:
    return f'syntax = "{syntax}";\npackage {package};\n{head}\n{body}\n'


BASE = "message M { int32 a = 1; string b = 2; }"
P2 = 'syntax = "proto2";'

PROTO_CASES: list[tuple[str, str, str, bool]] = [
    # confluentinc/schema-registry protobuf-provider/.../protobuf/diff/SchemaDiff.java
    # (COMPATIBLE_CHANGES), MessageSchemaDiff.java, FieldSchemaDiff.java (scalar groups, labels),
    # OneOfDiff.java, and the verdicts of protobuf/diff/SchemaDiffTest.java:
    # fields
    (
        "field added",
        proto(BASE),
        proto("message M { int32 a = 1; string b = 2; bool c = 3; }"),
        True,
    ),
    ("field removed", proto(BASE), proto("message M { int32 a = 1; }"), True),
    ("field renamed", proto(BASE), proto("message M { int32 x = 1; string b = 2; }"), True),
    ("field number changed", proto(BASE), proto("message M { int32 a = 3; string b = 2; }"), True),
    (
        "number reused with another kind",
        proto(BASE),
        proto("message M { string a = 1; string b = 2; }"),
        False,
    ),
    # scalar groups: GENERAL_NUMBER, SIGNED_NUMBER, FIXED32, FIXED64, FLOAT, DOUBLE, STRING_OR_BYTES
    (
        "int32 to int64",
        proto("message M { int32 a = 1; }"),
        proto("message M { int64 a = 1; }"),
        True,
    ),
    (
        "int32 to uint32",
        proto("message M { int32 a = 1; }"),
        proto("message M { uint32 a = 1; }"),
        True,
    ),
    (
        "int64 to uint64",
        proto("message M { int64 a = 1; }"),
        proto("message M { uint64 a = 1; }"),
        True,
    ),
    (
        "int32 to bool",
        proto("message M { int32 a = 1; }"),
        proto("message M { bool a = 1; }"),
        True,
    ),
    (
        "int32 to sint32",
        proto("message M { int32 a = 1; }"),
        proto("message M { sint32 a = 1; }"),
        False,
    ),
    (
        "sint32 to sint64",
        proto("message M { sint32 a = 1; }"),
        proto("message M { sint64 a = 1; }"),
        True,
    ),
    (
        "int32 to string",
        proto("message M { int32 a = 1; }"),
        proto("message M { string a = 1; }"),
        False,
    ),
    (
        "int32 to double",
        proto("message M { int32 a = 1; }"),
        proto("message M { double a = 1; }"),
        False,
    ),
    (
        "int32 to fixed32",
        proto("message M { int32 a = 1; }"),
        proto("message M { fixed32 a = 1; }"),
        False,
    ),
    (
        "string to bytes",
        proto("message M { string a = 1; }"),
        proto("message M { bytes a = 1; }"),
        True,
    ),
    (
        "fixed32 to sfixed32",
        proto("message M { fixed32 a = 1; }"),
        proto("message M { sfixed32 a = 1; }"),
        True,
    ),
    (
        "fixed64 to sfixed64",
        proto("message M { fixed64 a = 1; }"),
        proto("message M { sfixed64 a = 1; }"),
        True,
    ),
    (
        "fixed32 to fixed64",
        proto("message M { fixed32 a = 1; }"),
        proto("message M { fixed64 a = 1; }"),
        False,
    ),
    (
        "float to double",
        proto("message M { float a = 1; }"),
        proto("message M { double a = 1; }"),
        False,
    ),
    (
        "enum to int32",
        proto("enum E { X = 0; } message M { E a = 1; }"),
        proto("enum E { X = 0; } message M { int32 a = 1; }"),
        True,
    ),
    (
        "enum to string",
        proto("enum E { X = 0; } message M { E a = 1; }"),
        proto("enum E { X = 0; } message M { string a = 1; }"),
        False,
    ),
    # labels
    (
        "optional int32 to repeated",
        proto("message M { optional int32 a = 1; }"),
        proto("message M { repeated int32 a = 1; }"),
        False,
    ),
    (
        "optional string to repeated",
        proto("message M { optional string a = 1; }"),
        proto("message M { repeated string a = 1; }"),
        True,
    ),
    (
        "proto2 required field added",
        f"{P2} message M {{ optional int32 a = 1; }}",
        f"{P2} message M {{ optional int32 a = 1; required int32 b = 2; }}",
        False,
    ),
    (
        "proto2 required field removed",
        f"{P2} message M {{ optional int32 a = 1; required int32 b = 2; }}",
        f"{P2} message M {{ optional int32 a = 1; }}",
        False,
    ),
    (
        "proto2 optional field added",
        f"{P2} message M {{ optional int32 a = 1; }}",
        f"{P2} message M {{ optional int32 a = 1; optional string b = 2; }}",
        True,
    ),
    # kinds: scalar, message, map
    (
        "scalar to message",
        proto("message N { int32 x = 1; } message M { int32 a = 1; }"),
        proto("message N { int32 x = 1; } message M { N a = 1; }"),
        False,
    ),
    (
        "message to map",
        proto("message N { int32 x = 1; } message M { N a = 1; }"),
        proto("message N { int32 x = 1; } message M { map<string, int32> a = 1; }"),
        False,
    ),
    (
        "map value int32 to int64",
        proto("message M { map<string, int32> a = 1; }"),
        proto("message M { map<string, int64> a = 1; }"),
        True,
    ),
    (
        "map value int32 to string",
        proto("message M { map<string, int32> a = 1; }"),
        proto("message M { map<string, string> a = 1; }"),
        False,
    ),
    (
        "field names another message",
        proto("message N { int32 x = 1; } message O { int32 x = 1; } message M { N a = 1; }"),
        proto("message N { int32 x = 1; } message O { int32 x = 1; } message M { O a = 1; }"),
        False,
    ),
    (
        "named message gains a field",
        proto("message N { int32 x = 1; } message M { N a = 1; }"),
        proto("message N { int32 x = 1; string y = 2; } message M { N a = 1; }"),
        True,
    ),
    (
        "named message changes a field's kind",
        proto("message N { int32 x = 1; } message M { N a = 1; }"),
        proto("message N { string x = 1; } message M { N a = 1; }"),
        False,
    ),
    (
        "Timestamp to Duration",
        proto(
            "message M { google.protobuf.Timestamp t = 1; }",
            head='import "google/protobuf/timestamp.proto";',
        ),
        proto(
            "message M { google.protobuf.Duration t = 1; }",
            head='import "google/protobuf/duration.proto";',
        ),
        False,
    ),
    # messages and the message index
    ("message added", proto(BASE), proto(BASE + " message N { int32 x = 1; }"), True),
    ("message removed", proto(BASE + " message N { int32 x = 1; }"), proto(BASE), False),
    (
        "message renamed",
        proto(BASE),
        proto("message Renamed { int32 a = 1; string b = 2; }"),
        False,
    ),
    (
        "messages reordered (message index moves)",
        proto("message A { int32 x = 1; } message B { int32 y = 1; }"),
        proto("message B { int32 y = 1; } message A { int32 x = 1; }"),
        True,
    ),
    (
        "nested message added",
        proto(BASE),
        proto("message M { int32 a = 1; string b = 2; message In { int32 z = 1; } }"),
        True,
    ),
    (
        "nested message removed",
        proto("message M { int32 a = 1; message In { int32 z = 1; } }"),
        proto("message M { int32 a = 1; }"),
        False,
    ),
    ("package changed", proto(BASE), proto(BASE, package="q"), False),
    (
        "recursive message gains a field",
        proto("message M { int32 a = 1; M next = 2; }"),
        proto("message M { int32 a = 1; M next = 2; string c = 3; }"),
        True,
    ),
    (
        "reserved range added",
        proto(BASE),
        proto("message M { int32 a = 1; string b = 2; reserved 5 to 9; }"),
        True,
    ),
    # enums
    ("enum added", proto(BASE), proto(BASE + " enum E { X = 0; }"), True),
    ("enum removed", proto(BASE + " enum E { X = 0; }"), proto(BASE), True),
    (
        "enum constant added",
        proto("enum E { X = 0; }" + BASE),
        proto("enum E { X = 0; Y = 1; }" + BASE),
        True,
    ),
    (
        "enum constant removed",
        proto("enum E { X = 0; Y = 1; }" + BASE),
        proto("enum E { X = 0; }" + BASE),
        True,
    ),
    # oneofs
    (
        "oneof added with new fields",
        proto(BASE),
        proto("message M { int32 a = 1; string b = 2; oneof o { int32 c = 3; string d = 4; } }"),
        True,
    ),
    (
        "oneof removed",
        proto("message M { int32 a = 1; oneof o { int32 c = 3; string d = 4; } }"),
        proto("message M { int32 a = 1; }"),
        True,
    ),
    (
        "field added to a oneof",
        proto("message M { oneof o { int32 c = 3; } }"),
        proto("message M { oneof o { int32 c = 3; string d = 4; } }"),
        True,
    ),
    (
        "field removed from a oneof",
        proto("message M { oneof o { int32 c = 3; string d = 4; } }"),
        proto("message M { oneof o { int32 c = 3; } }"),
        False,
    ),
    (
        "one field moved into a new oneof",
        proto(BASE),
        proto("message M { string b = 2; oneof o { int32 a = 1; } }"),
        True,
    ),
    (
        "two fields moved into a new oneof",
        proto(BASE),
        proto("message M { oneof o { int32 a = 1; string b = 2; } }"),
        False,
    ),
    (
        "field moved into an existing oneof",
        proto("message M { int32 a = 1; oneof o { string b = 2; } }"),
        proto("message M { oneof o { int32 a = 1; string b = 2; } }"),
        False,
    ),
    (
        "field moved out of a oneof",
        proto("message M { oneof o { int32 a = 1; string b = 2; } }"),
        proto("message M { int32 a = 1; oneof o { string b = 2; } }"),
        True,
    ),
    (
        "oneof field changes kind",
        proto("message M { oneof o { int32 a = 1; } }"),
        proto("message M { oneof o { string a = 1; } }"),
        False,
    ),
]


@pytest.mark.parametrize(
    ("original", "update", "compatible"),
    [pytest.param(o, u, c, id=d) for d, o, u, c in PROTO_CASES],
)
def test_protobuf_backward_verdicts(original: str, update: str, compatible: bool) -> None:
    old = protobuf.parse(original)
    new = protobuf.parse(update)
    found = proto_compat.incompatibilities(old, new)
    assert (not found) is compatible, found


def test_proto_case_count() -> None:
    assert len(PROTO_CASES) >= 40


# -- levels through the REST API -----------------------------------------------------------------


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(Registry()))


def _register(client: TestClient, subject: str, schema: str, kind: str) -> Any:
    return client.post(f"/subjects/{subject}/versions", json={"schema": schema, "schemaType": kind})


@pytest.mark.parametrize(
    ("level", "first", "second", "ok"),
    [
        # adding a typed property to an open model: old data may hold it with another type
        ("BACKWARD", obj({"a": S}), obj({"a": S, "b": N}), False),
        ("FORWARD", obj({"a": S}), obj({"a": S, "b": N}), True),
        ("FULL", obj({"a": S}), obj({"a": S, "b": N}), False),
        ("NONE", obj({"a": S}), obj({"a": N}), True),
        # closed model: adding an optional property is fine backward, not forward
        (
            "FORWARD",
            obj({"a": S}, additionalProperties=False),
            obj({"a": S, "b": N}, additionalProperties=False),
            False,
        ),
    ],
)
def test_json_levels(client: TestClient, level: str, first: Any, second: Any, ok: bool) -> None:
    client.put("/config/s", json={"compatibility": level})
    assert _register(client, "s", json.dumps(first), "JSON").status_code == 200
    answer = _register(client, "s", json.dumps(second), "JSON")
    assert answer.status_code == (200 if ok else 409), answer.json()


@pytest.mark.parametrize(
    ("level", "versions", "ok"),
    [
        # removing a message is MESSAGE_REMOVED one way, MESSAGE_ADDED the other
        ("BACKWARD", [proto(BASE + " message N { int32 x = 1; }"), proto(BASE)], False),
        ("FORWARD", [proto(BASE + " message N { int32 x = 1; }"), proto(BASE)], True),
        ("FULL", [proto(BASE + " message N { int32 x = 1; }"), proto(BASE)], False),
        # v1 int32, v2 int64 (compatible), v3 sint64: incompatible with v2 and v1
        (
            "BACKWARD_TRANSITIVE",
            [
                proto("message M { int32 a = 1; }"),
                proto("message M { int64 a = 1; }"),
                proto("message M { sint64 a = 1; }"),
            ],
            False,
        ),
        # v1 removed field 2, v3 re-adds 2 as string: only the transitive level sees v1's int32
        (
            "BACKWARD",
            [
                proto("message M { int32 a = 1; int32 b = 2; }"),
                proto("message M { int32 a = 1; }"),
                proto("message M { int32 a = 1; string b = 2; }"),
            ],
            True,
        ),
        (
            "BACKWARD_TRANSITIVE",
            [
                proto("message M { int32 a = 1; int32 b = 2; }"),
                proto("message M { int32 a = 1; }"),
                proto("message M { int32 a = 1; string b = 2; }"),
            ],
            False,
        ),
    ],
)
def test_protobuf_levels(client: TestClient, level: str, versions: list[str], ok: bool) -> None:
    client.put("/config/s", json={"compatibility": level})
    for text in versions[:-1]:
        assert _register(client, "s", text, "PROTOBUF").status_code == 200
    answer = _register(client, "s", versions[-1], "PROTOBUF")
    assert answer.status_code == (200 if ok else 409), answer.json()


def test_verbose_messages_name_confluent_difference_types(client: TestClient) -> None:
    assert (
        _register(client, "s", proto("message M { int32 a = 1; }"), "PROTOBUF").status_code == 200
    )
    body = {"schema": proto("message M { string a = 1; }"), "schemaType": "PROTOBUF"}
    answer = client.post("/compatibility/subjects/s/versions/latest?verbose=true", json=body)
    assert answer.status_code == 200
    result = answer.json()
    assert result["is_compatible"] is False
    assert any("FIELD_SCALAR_KIND_CHANGED" in m for m in result["messages"])
    quiet = client.post("/compatibility/subjects/s/versions/latest", json=body).json()
    assert quiet == {"is_compatible": False}


def test_another_schema_type_is_incompatible(client: TestClient) -> None:
    assert _register(client, "s", json.dumps(obj({"a": S})), "JSON").status_code == 200
    answer = _register(client, "s", proto(BASE), "PROTOBUF")
    assert answer.status_code == 409 and "schema type" in answer.json()["message"]
