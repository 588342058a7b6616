"""The shared schema layer (services/common/schemas): Protobuf text and descriptors, message
indexes of Confluent's wire format, JSON Schema with references."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.schemas import SchemaError, json_schema, protobuf

OTHER = 'syntax = "proto3";\npackage other;\nmessage Thing { string n = 1; }\n'
MAIN = """syntax = "proto3";
package acme;
import "google/protobuf/timestamp.proto";
import "other.proto";
message Outer {
  string id = 1;
  map<string, int64> counts = 2;
  message Inner { int32 a = 1; }
  Inner inner = 3;
  oneof pick { string s = 4; int32 i = 5; }
  optional double d = 6;
  google.protobuf.Timestamp ts = 7;
  other.Thing thing = 8;
  reserved 20 to 25;
}
message Second { repeated Outer.Inner items = 1; }
"""


def test_proto_text_round_trips_through_canonical_and_base64() -> None:
    schema = protobuf.parse(MAIN, {"other.proto": OTHER})
    again = protobuf.parse(schema.canonical(), {"other.proto": OTHER})
    assert again.canonical() == schema.canonical()
    binary = protobuf.parse(schema.serialized(), {"other.proto": OTHER})
    assert binary.canonical() == schema.canonical()
    assert ".acme.Outer.Inner" in schema.normalized()


def test_message_indexes_count_map_entries_like_clients() -> None:
    schema = protobuf.parse(MAIN, {"other.proto": OTHER})
    assert schema.message_names() == ["acme.Outer", "acme.Outer.Inner", "acme.Second"]
    # nested_type of Outer is [CountsEntry, Inner]: Inner is index 1, as clients count it
    assert schema.message_index("acme.Outer.Inner") == [0, 1]
    assert schema.message_at([1]).full_name == "acme.Second"
    reparsed = protobuf.parse(schema.canonical(), {"other.proto": OTHER})
    assert reparsed.message_index("acme.Outer.Inner") == [0, 1]


@pytest.mark.parametrize("indexes", [[0], [1], [0, 1], [3, 0, 7], [300]])
def test_message_index_encoding_round_trips(indexes: list[int]) -> None:
    data = protobuf.encode_message_indexes(indexes) + b"rest"
    decoded, offset = protobuf.decode_message_indexes(data)
    assert decoded == indexes and data[offset:] == b"rest"
    assert protobuf.encode_message_indexes([0]) == b"\x00"


def test_message_class_serializes() -> None:
    cls = protobuf.parse(MAIN, {"other.proto": OTHER}).message_class("acme.Outer")
    message = cls(id="x")
    message.counts["a"] = 2
    assert cls.FromString(message.SerializeToString()).counts["a"] == 2


@pytest.mark.parametrize(
    ("text", "refs", "fragment"),
    [
        ('syntax = "proto3"; message X { strin y = 1; }', {}, "strin"),
        ('syntax = "proto3"; import "nope.proto"; message X { int32 y = 1; }', {}, "nope.proto"),
        ("x" * (protobuf.MAX_TEXT_BYTES + 1), {}, "larger"),
        ('syntax = "proto3"; message X { int32 y = 1; }', {"../etc/passwd": OTHER}, "name"),
    ],
)
def test_bad_proto_is_schema_error(text: str, refs: dict[str, str], fragment: str) -> None:
    with pytest.raises(SchemaError, match=fragment):
        protobuf.parse(text, refs)


def test_json_schema_references_and_validation() -> None:
    schema = json_schema.parse(
        '{"type":"object","properties":{"a":{"$ref":"addr.json"}}}',
        {"addr.json": '{"type":"string"}'},
    )
    schema.validate({"a": "x"})
    with pytest.raises(SchemaError, match="not of type"):
        schema.validate({"a": 1})
    with pytest.raises(SchemaError):
        json_schema.parse('{"type":"foo"}')
    with pytest.raises(SchemaError, match="deeper"):
        json_schema.parse("[" * 100 + "]" * 100)


proto_words = st.sampled_from(
    [
        "syntax",
        "=",
        '"proto3";',
        "message",
        "M",
        "{",
        "}",
        "int32",
        "a",
        "=",
        "1;",
        "map<",
        ">",
        "oneof",
        "import",
        '"x.proto";',
        "package",
        "p;",
        "enum",
        "E",
        "repeated",
        "optional",
    ]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(proto_words, max_size=25).map(" ".join) | st.text(max_size=60))
def test_any_proto_text_parses_or_is_a_schema_error(text: str) -> None:
    try:
        schema = protobuf.parse(text)
    except SchemaError:
        return
    protobuf.parse(schema.canonical())


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=80))
def test_any_base64_descriptor_parses_or_is_a_schema_error(raw: bytes) -> None:
    try:
        schema = protobuf.parse(base64.b64encode(raw).decode() or "x")
        schema.canonical()
    except SchemaError:
        pass
