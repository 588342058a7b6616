"""Key and value serialization: KAFKA, DELIMITED, JSON, AVRO (ksqlDB's semantics)."""

from services.ksql_server.formats.base import SerdeError, validate_format
from services.ksql_server.formats.factory import make_deserializer, make_serializer

__all__ = ["SerdeError", "make_deserializer", "make_serializer", "validate_format"]
