"""How a key or a value is written: the format and its properties.

A value type of the formats layer (the codecs take it, the catalogue stores it), so it lives
here and not in the engine's `metastore`, which sits above the formats.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FormatInfo:
    """A key or value format and its properties (delimiter, schema name, wrapping…)."""

    name: str  # KAFKA JSON DELIMITED AVRO JSON_SR PROTOBUF PROTOBUF_NOSR NONE
    delimiter: str = ","
    wrap_single: bool | None = None
    schema_name: str | None = None
    schema_id: int | None = None
    nullable: str | None = None
    """PROTOBUF: `*_PROTOBUF_NULLABLE_REPRESENTATION` (OPTIONAL, WRAPPER or None: defaults)."""
