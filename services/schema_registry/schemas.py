"""Parsing, validating and normalising schemas the way the registry compares them.

Avro is handled here; JSON Schema and Protobuf go through the shared parsers in
`services.common.schemas` (the KSQL formats use the same ones), with their references' texts.

Two schema texts that differ only in whitespace or key order are the same schema and must get the
same id, while two that differ in a default or a doc are different schemas (Confluent compares
Avro Java's re-printed JSON, which keeps defaults). So the registry stores and compares a
*canonical* text: the parsed schema printed back as compact JSON with a fixed key order. With
`normalize=true` it goes one step further: every name is fully qualified (namespaces folded in)
and primitive types written as plain strings, so differently namespaced spellings of one schema
compare equal too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import avro.errors
import avro.io
import avro.schema

from services.common.schemas import SchemaError, json_schema, protobuf
from services.schema_registry import errors
from services.schema_registry.limits import SchemaLimits

DEFAULT_LIMITS = SchemaLimits()

SUPPORTED_TYPES = ("JSON", "PROTOBUF", "AVRO")
"""Schema types this registry accepts, in the order Confluent's `GET /schemas/types` lists them."""

References = Sequence[tuple[str, str]]
"""Every schema a schema references, transitively, as (reference name, stored text), each
after the ones it references itself (so Avro can define named types in order)."""

_NAMED = {"record", "error", "enum", "fixed"}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_KEY_ORDER = (
    "type",
    "name",
    "namespace",
    "doc",
    "fields",
    "symbols",
    "items",
    "values",
    "size",
    "default",
    "order",
    "aliases",
    "logicalType",
    "precision",
    "scale",
)
_RANK = {key: rank for rank, key in enumerate(_KEY_ORDER)}
_FIELD_RANK = {
    key: rank for rank, key in enumerate(("name", "type", "doc", "default", "order", "aliases"))
}


@dataclass(frozen=True)
class ParsedSchema:
    """A validated schema: the parsed object (for compatibility checks) and its texts.

    `parsed` is an `avro.schema.Schema`, a `json_schema.JsonSchema` or a
    `protobuf.ProtoSchema`, by `schema_type`."""

    parsed: Any
    canonical: str
    normalized: str
    schema_type: str = "AVRO"

    def text(self, normalize: bool) -> str:
        """The text the registry stores for this schema."""
        return self.normalized if normalize else self.canonical


def parse(
    text: object,
    schema_type: object = "AVRO",
    limits: SchemaLimits = DEFAULT_LIMITS,
    references: References = (),
) -> ParsedSchema:
    """Validate a schema as sent by a client, or raise 42201 (invalid schema).

    The size, depth and counts are checked first, so the recursive parsers below only ever see
    a tree at most `limits.max_depth` deep."""
    if schema_type not in SUPPORTED_TYPES:
        raise errors.invalid_schema(
            f"schema type {schema_type!r} is not supported; this registry serves "
            + ", ".join(SUPPORTED_TYPES)
        )
    if schema_type != "AVRO":
        return _parse_other(text, str(schema_type), limits, references)
    if not isinstance(text, str) or not text.strip():
        raise errors.invalid_schema("'schema' must be a non-empty string holding Avro JSON")
    limits.check_text(text)
    obj = load_json(text, limits.max_depth)
    limits.check_tree(obj)
    try:
        names = avro.schema.Names(validate_names=True)
        for name, ref_text in references:
            _parse_avro_reference(name, ref_text, names, limits)
        known = dict(names.names)
        parsed = avro.schema.make_avsc_object(obj, names)
        _check_defaults(parsed, set())
        printing = avro.schema.Names(validate_names=False)
        printing.names = dict(known)  # referenced types print as their names, as written
        printed = parsed.to_json(printing)
        return ParsedSchema(parsed, _dump(_ordered(printed)), _dump(_normalize(printed, None)))
    except errors.RegistryError:
        raise
    except RecursionError:  # not reached within the limits; kept so it can never be a 500
        raise errors.invalid_schema("schema nests too deeply") from None
    except (avro.errors.AvroException, TypeError, AttributeError, KeyError, ValueError) as exc:
        raise errors.invalid_schema(str(exc) or type(exc).__name__) from None


def _parse_avro_reference(
    name: str, text: str, names: avro.schema.Names, limits: SchemaLimits
) -> None:
    """Define a referenced schema's named types in `names` (the main schema uses them)."""
    obj = load_json(text, limits.max_depth)
    limits.check_tree(obj)
    try:
        avro.schema.make_avsc_object(obj, names)
    except (avro.errors.AvroException, TypeError, AttributeError, KeyError, ValueError) as exc:
        raise errors.invalid_schema(f"reference {name!r}: {exc}") from None


def _parse_other(
    text: object, schema_type: str, limits: SchemaLimits, references: References
) -> ParsedSchema:
    """A JSON Schema or Protobuf schema, through the shared parsers; their errors are 42201."""
    if not isinstance(text, str) or not text.strip():
        raise errors.invalid_schema(f"'schema' must be a non-empty string holding {schema_type}")
    limits.check_text(text)
    try:
        if schema_type == "JSON":
            found = json_schema.parse(text, dict(references))
            return ParsedSchema(found, found.canonical(), found.normalized(), "JSON")
        proto = protobuf.parse(text, dict(references))
        return ParsedSchema(proto, proto.canonical(), proto.normalized(), "PROTOBUF")
    except SchemaError as exc:
        raise errors.invalid_schema(str(exc)) from None
    except RecursionError:  # bounded by the limits; kept so it can never be a 500
        raise errors.invalid_schema("schema nests too deeply") from None
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # a malformed descriptor
        raise errors.invalid_schema(f"{type(exc).__name__}: {exc}") from None


def load_json(text: str, max_depth: int) -> Any:
    """JSON text to Python, or 42201; C `json` recurses per level, so depth is caught here too."""
    try:
        return json.loads(text)
    except RecursionError:
        raise errors.invalid_schema(
            f"schema nests deeper than {max_depth} levels; this registry accepts at most "
            f"{max_depth}"
        ) from None
    except ValueError as exc:
        raise errors.invalid_schema(f"not JSON: {exc}") from None


def _check_defaults(schema: avro.schema.Schema, seen: set[str]) -> None:
    """Reject field defaults that do not match their type (Java Avro's validateDefaults)."""
    if isinstance(schema, avro.schema.NamedSchema):
        if schema.fullname in seen:
            return
        seen.add(schema.fullname)
    if isinstance(schema, avro.schema.RecordSchema):
        for field in schema.fields:
            if field.has_default:
                target = field.type
                if isinstance(target, avro.schema.UnionSchema):
                    target = target.schemas[0]
                if not avro.io.validate(target, _default_datum(target, field.default)):
                    raise errors.invalid_schema(
                        f"invalid default for field '{field.name}': {field.default!r} is not a "
                        f"{target.type}"
                    )
            _check_defaults(field.type, seen)
    elif isinstance(schema, avro.schema.ArraySchema):
        _check_defaults(schema.items, seen)
    elif isinstance(schema, avro.schema.MapSchema):
        _check_defaults(schema.values, seen)
    elif isinstance(schema, avro.schema.UnionSchema):
        for branch in schema.schemas:
            _check_defaults(branch, seen)


def _default_datum(schema: avro.schema.Schema, value: Any) -> Any:
    """JSON defaults spell bytes and fixed as strings; the validator wants Python bytes."""
    if schema.type in ("bytes", "fixed") and isinstance(value, str):
        return value.encode("latin-1", errors="replace")
    if isinstance(schema, avro.schema.RecordSchema) and isinstance(value, dict):
        out = dict(value)
        for field in schema.fields:
            if field.name not in out and field.has_default:
                out[field.name] = field.default
            if field.name in out:
                out[field.name] = _default_datum(field.type, out[field.name])
        return out
    if isinstance(schema, avro.schema.ArraySchema) and isinstance(value, list):
        return [_default_datum(schema.items, v) for v in value]
    if isinstance(schema, avro.schema.MapSchema) and isinstance(value, dict):
        return {k: _default_datum(schema.values, v) for k, v in value.items()}
    return value


def _ordered(node: Any, is_field: bool = False) -> Any:
    """The same JSON with object keys in a fixed order (known keys first, then alphabetical)."""
    if isinstance(node, list):
        return [_ordered(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key in _sorted_keys(node, is_field):
        value = node[key]
        if key == "fields" and isinstance(value, list):
            out[key] = [_ordered(f, is_field=True) for f in value]
        elif key == "default":
            out[key] = value  # data, not schema: kept exactly as written
        else:
            out[key] = _ordered(value)
    return out


def _sorted_keys(node: dict[str, Any], is_field: bool) -> list[str]:
    rank = _FIELD_RANK if is_field else _RANK
    return sorted(node, key=lambda k: (rank.get(k, len(rank)), k))


def _fullname(name: str, namespace: str | None) -> str:
    if "." in name or not namespace or name in _PRIMITIVES:
        return name
    return f"{namespace}.{name}"


def _normalize(node: Any, namespace: str | None) -> Any:
    """Fully qualified names, no namespace attributes, primitives as plain strings."""
    if isinstance(node, str):
        return _fullname(node, namespace)
    if isinstance(node, list):
        return [_normalize(item, namespace) for item in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    out: dict[str, Any] = {}
    if kind in _NAMED:
        full = _fullname(node["name"], node.get("namespace") or namespace)
        namespace = full.rpartition(".")[0] or None
        out["name"] = full
    elif kind in _PRIMITIVES and set(node) == {"type"}:
        return kind
    for key, value in node.items():
        if key in ("name", "namespace"):
            continue
        if key == "fields":
            out[key] = [_normalize_field(f, namespace) for f in value]
        elif key in ("items", "values") or (key == "type" and not isinstance(value, str)):
            out[key] = _normalize(value, namespace)
        else:
            out[key] = value
    return _ordered_shallow(out)


def _normalize_field(field: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    out = {k: v for k, v in field.items() if k != "type"}
    out["type"] = _normalize(field["type"], namespace)
    return _ordered_shallow(out, is_field=True)


def _ordered_shallow(node: dict[str, Any], is_field: bool = False) -> dict[str, Any]:
    return {k: node[k] for k in _sorted_keys(node, is_field)}


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
