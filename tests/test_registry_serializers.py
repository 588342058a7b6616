"""confluent-kafka's own JSON Schema (`JSONSerializer`) and Protobuf serializers and deserializers
against the registry over HTTP: they register (with references), look up, fetch by id (Protobuf
asks for `format=serialized`) and read back what they wrote, as producers and consumers do.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from services.common.schemas import protobuf

pytestmark = pytest.mark.slow


def _ctx(unique: str) -> SerializationContext:
    return SerializationContext(f"payments-{unique}", MessageField.VALUE)


def test_json_schema_serializer_round_trip_with_a_reference(
    schema_registry_url: str, unique: str
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    money = json.dumps({"type": "object", "properties": {"amount": {"type": "number"}}})
    client.register_schema(f"money-{unique}", Schema(money, "JSON"))
    schema_str = json.dumps(
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "Payment",
            "type": "object",
            "properties": {"id": {"type": "string"}, "value": {"$ref": "money.json"}},
            "required": ["id"],
        }
    )
    refs = [SchemaReference("money.json", f"money-{unique}", 1)]
    schema = Schema(schema_str, "JSON", refs)
    serializer = JSONSerializer(schema, client, conf={"auto.register.schemas": True})
    deserializer = JSONDeserializer(schema, schema_registry_client=client)
    ctx = _ctx(unique)
    record = {"id": "p-1", "value": {"amount": 12.5}}
    data = serializer(record, ctx)
    assert data is not None and data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    registered = client.get_latest_version(f"payments-{unique}-value")
    assert registered.schema_id == schema_id
    assert registered.schema.schema_type == "JSON"
    assert [(r.name, r.subject, r.version) for r in registered.schema.references or []] == [
        ("money.json", f"money-{unique}", 1)
    ]
    assert deserializer(data, ctx) == record
    # the serializer validates against the schema, references included
    with pytest.raises(Exception, match=r"amount|number"):
        serializer({"id": "p-2", "value": {"amount": "lots"}}, ctx)


def _classes(unique: str) -> tuple[Any, Any]:
    """Message classes built at run time: Payment imports Money from another file."""
    money_name = f"fraud_{unique}/money.proto"
    money = f'syntax = "proto3";\npackage fraud{unique};\nmessage Money {{ int64 cents = 1; }}\n'
    payment = (
        f'syntax = "proto3";\npackage fraud{unique};\nimport "{money_name}";\n'
        'import "google/protobuf/timestamp.proto";\n'
        "message Payment {\n  string id = 1;\n  Money value = 2;\n"
        "  google.protobuf.Timestamp at = 3;\n  map<string, string> tags = 4;\n"
        "  message Note { string text = 1; }\n  repeated Note notes = 5;\n}\n"
        "message Refund { string payment_id = 1; }\n"
    )
    parsed = protobuf.parse(payment, {money_name: money}, name=f"fraud_{unique}/payment.proto")
    return parsed.message_class(f"fraud{unique}.Payment"), parsed.message_class(
        f"fraud{unique}.Refund"
    )


def test_protobuf_serializer_round_trip_with_a_reference(
    schema_registry_url: str, unique: str
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    payment_cls, refund_cls = _classes(unique)
    ctx = _ctx(unique)
    conf = {"use.deprecated.format": False}
    serializer = ProtobufSerializer(payment_cls, client, conf)
    deserializer = ProtobufDeserializer(payment_cls, conf, client)
    message = payment_cls(id="p-1")
    message.value.cents = 1250
    message.at.seconds = 1_700_000_000
    message.tags["channel"] = "web"
    message.notes.add(text="first")
    data = serializer(message, ctx)
    assert data is not None and data[0] == 0
    assert data[5] == 0  # message index [0]: the first message of the file
    back = deserializer(data, ctx)
    assert back == message
    latest = client.get_latest_version(f"payments-{unique}-value")
    assert latest.schema.schema_type == "PROTOBUF"
    assert "message Payment" in (latest.schema.schema_str or "")
    ref = (latest.schema.references or [])[0]
    assert (ref.name, ref.subject, ref.version) == (
        f"fraud_{unique}/money.proto",
        f"fraud_{unique}/money.proto",
        1,
    )
    # the second message of the file travels with message index [1]
    refunds = SerializationContext(f"refunds-{unique}", MessageField.VALUE)
    refund_data = ProtobufSerializer(refund_cls, client, conf)(
        refund_cls(payment_id="p-1"), refunds
    )
    assert refund_data is not None
    assert protobuf.decode_message_indexes(refund_data, 5)[0] == [1]
    read = ProtobufDeserializer(refund_cls, conf, client)(refund_data, refunds)
    assert read.payment_id == "p-1"
