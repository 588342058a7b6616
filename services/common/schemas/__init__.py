"""Schema languages beside Avro, shared by the Schema Registry and the KSQL server.

- `protobuf`: `.proto` text (or Confluent's base64 `FileDescriptorProto`) and its references
  to descriptors, the canonical text Confluent stores, and the message indexes of Confluent's
  Protobuf wire format;
- `json_schema`: JSON Schema documents and their references, validated and resolved.

Both raise `SchemaError` for a schema that cannot be used; the registry answers it as 42201.
Nothing is re-exported here: import from the module that holds it.
"""

from __future__ import annotations

from services.common.errors import FraudstreamError


class SchemaError(FraudstreamError, ValueError):
    """A schema (or one of its references) that is not valid, or exceeds the limits."""

    def __init__(self, message: str, *, code: str = "invalid_schema") -> None:
        super().__init__(message, code=code)
