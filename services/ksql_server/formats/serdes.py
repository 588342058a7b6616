"""The plain formats' codecs under their old module name, for importers not yet moved.

The code lives one module per format over `formats.base` (`kafka`, `delimited`, `json_plain`);
this module only re-exports their names (new code imports from those modules directly).
"""

from __future__ import annotations

from services.ksql_server.formats.base import (
    KNOWN,
    SUPPORTED,
    Deserializer,
    SerdeError,
    Serializer,
    coercer,
    decode_timestamp_value,
    deserialize_batch,
    validate_format,
)
from services.ksql_server.formats.delimited import delimited_deserializer, delimited_serializer
from services.ksql_server.formats.json_plain import dumps, json_deserializer, json_serializer
from services.ksql_server.formats.kafka import kafka_deserializer, kafka_serializer

__all__ = [
    "KNOWN",
    "SUPPORTED",
    "Deserializer",
    "SerdeError",
    "Serializer",
    "coercer",
    "decode_timestamp_value",
    "delimited_deserializer",
    "delimited_serializer",
    "deserialize_batch",
    "dumps",
    "json_deserializer",
    "json_serializer",
    "kafka_deserializer",
    "kafka_serializer",
    "validate_format",
]
