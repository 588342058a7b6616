"""Compatibility levels and the check behind them, decided by Avro's own resolution rules.

BACKWARD means the new schema can read data written with the old one (new = reader), FORWARD the
reverse, FULL both. The plain levels compare with the latest version only; the `_TRANSITIVE` ones
with every live version. The reader/writer check itself is `avro.compatibility`'s, which
implements the specification's schema-resolution rules (promotions, defaults, enum symbols,
union branches, names and aliases), so this module only decides *which* pairs to check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import avro.schema
from avro.compatibility import (
    ReaderWriter,
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
)

from services.common.schemas import SchemaError
from services.schema_registry import errors, json_compat, proto_compat
from services.schema_registry.schemas import ParsedSchema

LEVELS = (
    "NONE",
    "BACKWARD",
    "FORWARD",
    "FULL",
    "BACKWARD_TRANSITIVE",
    "FORWARD_TRANSITIVE",
    "FULL_TRANSITIVE",
)
DEFAULT_LEVEL = "BACKWARD"
DEFAULT_MAX_STEPS = 100_000
FIELD_LOOKUPS_PER_STEP = 40
"""`avro` rebuilds the writer's field table for every reader field it looks up: a record pair
costs reader fields x writer fields table inserts, each about 1/40 of a pair comparison."""


class BoundedChecker(ReaderWriterCompatibilityChecker):  # type: ignore[misc]
    """Avro's checker, refusing (42201) once it has compared `max_steps` reader/writer pairs.

    Its union rule compares branches pairwise, so work grows with the product of union widths
    (and with every version a transitive level checks against); a budget bounds all of it."""

    def __init__(self, max_steps: int) -> None:
        super().__init__()
        self.steps_left = max_steps
        self.max_steps = max_steps

    def get_compatibility(self, *args: Any, **kwargs: Any) -> Any:
        self.steps_left -= 1 + self._record_cost(*args[:2])
        if self.steps_left < 0:
            raise errors.invalid_schema(
                f"checking compatibility needs more than {self.max_steps} reader/writer "
                "comparisons; simplify the schema (fewer union branches or versions)"
            )
        return super().get_compatibility(*args, **kwargs)

    def _record_cost(self, reader: Any = None, writer: Any = None) -> int:
        if not isinstance(reader, avro.schema.RecordSchema) or not isinstance(
            writer, avro.schema.RecordSchema
        ):
            return 0
        if ReaderWriter(reader, writer) in self.memoize_map:
            return 0
        return len(reader.fields) * len(writer.fields) // FIELD_LOOKUPS_PER_STEP


def parse_level(value: object) -> str:
    """A level as sent by a client (any case), or 42203."""
    if isinstance(value, str) and value.upper() in LEVELS:
        return value.upper()
    raise errors.invalid_compatibility_level(value)


def reader_writer_messages(
    reader: avro.schema.Schema, writer: avro.schema.Schema, checker: BoundedChecker | None = None
) -> list[str]:
    """Why `reader` cannot read data written with `writer` (empty when it can)."""
    checker = checker or BoundedChecker(DEFAULT_MAX_STEPS)
    try:
        result = checker.get_compatibility(reader, writer)
    except RecursionError:  # not reached within the schema limits; never a 500
        raise errors.invalid_schema("schema nests too deeply to check compatibility") from None
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted({i.name.upper() for i in result.incompatibilities})) or "INCOMPATIBLE"
    where = ", ".join(sorted(result.locations))
    detail = "; ".join(sorted(result.messages))
    return [f"{{errorType:'{kinds}', description:'{detail}', location:'{where}'}}"]


def check(
    candidate: avro.schema.Schema,
    previous: Sequence[avro.schema.Schema],
    level: str,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> list[str]:
    """Messages saying why `candidate` breaks `level` against `previous` (oldest first), or
    42201 when that takes more than `max_steps` comparisons in all."""
    if level == "NONE" or not previous:
        return []
    against = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    base = level.removesuffix("_TRANSITIVE")
    messages: list[str] = []
    checker = BoundedChecker(max_steps)
    for old in reversed(against):
        if base in ("BACKWARD", "FULL"):
            messages += [
                f"{m} (new schema cannot read old data)"
                for m in reader_writer_messages(candidate, old, checker)
            ]
        if base in ("FORWARD", "FULL"):
            messages += [
                f"{m} (old schema cannot read new data)"
                for m in reader_writer_messages(old, candidate, checker)
            ]
    return messages


def check_schemas(
    candidate: ParsedSchema,
    previous: Sequence[ParsedSchema],
    level: str,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> list[str]:
    """`check` for any schema type: Avro by its resolution rules, JSON Schema and Protobuf by
    Confluent's difference rules (old → new for BACKWARD, new → old for FORWARD). A version of
    another schema type is never compatible."""
    if level == "NONE" or not previous:
        return []
    if candidate.schema_type == "AVRO" and all(p.schema_type == "AVRO" for p in previous):
        return check(candidate.parsed, [p.parsed for p in previous], level, max_steps)
    against = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    base = level.removesuffix("_TRANSITIVE")
    messages: list[str] = []
    for old in reversed(against):
        if old.schema_type != candidate.schema_type:
            messages.append(
                f"Incompatible schema type: the new schema is {candidate.schema_type}, "
                f"an earlier one is {old.schema_type}"
            )
            continue
        if base in ("BACKWARD", "FULL"):
            messages += [
                f"{m} (new schema cannot read old data)" for m in _diff(old, candidate, max_steps)
            ]
        if base in ("FORWARD", "FULL"):
            messages += [
                f"{m} (old schema cannot read new data)" for m in _diff(candidate, old, max_steps)
            ]
    return messages


def _diff(original: ParsedSchema, update: ParsedSchema, max_steps: int) -> list[str]:
    """Why data written with `original` cannot be read with `update`."""
    try:
        if update.schema_type == "AVRO":
            return reader_writer_messages(update.parsed, original.parsed, BoundedChecker(max_steps))
        if update.schema_type == "JSON":
            return json_compat.incompatibilities(original.parsed, update.parsed)
        return proto_compat.incompatibilities(original.parsed, update.parsed)
    except SchemaError as exc:
        raise errors.invalid_schema(str(exc)) from None
    except RecursionError:
        raise errors.invalid_schema("schema nests too deeply to check compatibility") from None
