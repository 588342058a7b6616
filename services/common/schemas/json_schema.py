"""JSON Schema documents as Confluent's registry and `JSONSchemaSerializer` use them.

A schema is JSON text; its `$ref`s may name another registered schema by its reference name
(Confluent's `references[].name`, e.g. `"$ref": "address.json"`), optionally with a fragment
(`"address.json#/definitions/street"`), or point inside the document itself. The document is
checked against its draft's meta-schema with `jsonschema` (draft 7 when `$schema` is absent, as
Confluent's default), and a validator built here resolves the references from the given texts
only, never from the network.

Input is untrusted: the text size and the JSON nesting are bounded before anything parses it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _without_iri_format() -> None:
    """Import `jsonschema` without its optional `iri` format checker: that one imports
    `rfc3987_syntax`, which builds a parser at import time (4 s of CPU, 15 s on a loaded
    machine: every registry start paid it). Formats are annotations here (no format checker
    is passed to a validator), so nothing is lost; `rfc3987_syntax` stays importable."""
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        return
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # makes its import fail
    try:
        import jsonschema  # noqa: F401
    finally:
        del sys.modules["rfc3987_syntax"]


_without_iri_format()

import jsonschema  # noqa: E402
import jsonschema.exceptions  # noqa: E402
import jsonschema.validators  # noqa: E402
import referencing  # noqa: E402
import referencing.exceptions  # noqa: E402
import referencing.jsonschema  # noqa: E402

from services.common.json_limits import JsonTooDeep, loads_bounded  # noqa: E402
from services.common.schemas import SchemaError  # noqa: E402

MAX_TEXT_BYTES = 256 * 1024
MAX_DEPTH = 64
MAX_FILES = 200
DEFAULT_DIALECT = "http://json-schema.org/draft-07/schema#"


def load(text: object, what: str = "schema") -> Any:
    """JSON text to Python, bounded in size and depth, or SchemaError."""
    if not isinstance(text, str) or not text.strip():
        raise SchemaError(f"{what}: a JSON schema must be non-empty JSON text")
    raw = text.encode("utf-8", "replace")
    if len(raw) > MAX_TEXT_BYTES:
        raise SchemaError(f"{what}: schema text is larger than {MAX_TEXT_BYTES} bytes")
    try:
        return loads_bounded(raw, MAX_DEPTH)
    except JsonTooDeep:
        raise SchemaError(f"{what}: schema nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise SchemaError(f"{what}: not JSON: {exc}") from None


@dataclass(frozen=True, eq=False)
class JsonSchema:
    """One JSON schema: the document and the documents its references name."""

    schema: Any
    references: Mapping[str, Any]
    """Reference name → parsed document, every one reachable from the schema."""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def canonical(self) -> str:
        """Compact JSON with the keys in the order written (what Confluent stores)."""
        return dump(self.schema)

    def normalized(self) -> str:
        """Compact JSON with sorted keys: spellings that differ only in key order are equal."""
        return json.dumps(self.schema, separators=(",", ":"), sort_keys=True, ensure_ascii=False)

    def registry(self) -> referencing.Registry[Any]:
        """`referencing` registry holding the references by name (and by their `$id`)."""
        found = self._cache.get("registry")
        if found is None:
            found = _registry(self.references)
            self._cache["registry"] = found
        return found

    def validator(self) -> Any:
        """A `jsonschema` validator for instances, resolving `$ref`s locally."""
        found = self._cache.get("validator")
        if found is None:
            cls = jsonschema.validators.validator_for(self.schema, default=_default_validator())
            found = cls(self.schema, registry=self.registry())
            self._cache["validator"] = found
        return found

    def validate(self, instance: Any) -> None:
        """Raise SchemaError (code `not_valid`) when `instance` does not match the schema."""
        try:
            error = jsonschema.exceptions.best_match(self.validator().iter_errors(instance))
        except (referencing.exceptions.Unresolvable, RecursionError) as exc:
            raise SchemaError(f"cannot validate: {exc}") from None
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            raise SchemaError(f"{where}: {error.message}", code="not_valid")

    def resolve(self, ref: str, base: Any = None) -> Any:
        """The document a `$ref` points at (a reference name, optionally with a `#` pointer,
        or a pointer into `base`, the schema itself by default), or SchemaError."""
        name, _, pointer = ref.partition("#")
        if name:
            document = self.references.get(name)
            if document is None:
                document = _by_id(self.references, name)
            if document is None:
                raise SchemaError(f"$ref {ref!r} names no reference")
        else:
            document = self.schema if base is None else base
        return _pointer(document, pointer, ref)


def parse(text: object, references: Mapping[str, str] | None = None) -> JsonSchema:
    """A checked schema from its text and its references' texts (name → text), or
    SchemaError."""
    refs = dict(references or {})
    if len(refs) > MAX_FILES:
        raise SchemaError(f"more than {MAX_FILES} referenced schemas")
    schema = load(text)
    if not isinstance(schema, (dict, bool)):
        raise SchemaError("a JSON schema must be a JSON object or a boolean")
    docs = {name: load(ref, name) for name, ref in refs.items()}
    for name, doc in (("schema", schema), *docs.items()):
        cls = jsonschema.validators.validator_for(doc, default=_default_validator())
        try:
            cls.check_schema(doc)
        except jsonschema.exceptions.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise SchemaError(f"{name}: {where}: {exc.message}") from None
        except RecursionError:
            raise SchemaError(f"{name}: schema nests too deeply") from None
    try:
        _registry(docs)
    except (referencing.exceptions.CannotDetermineSpecification, ValueError) as exc:
        raise SchemaError(f"a reference cannot be used: {exc}") from None
    return JsonSchema(schema, docs)


def dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _default_validator() -> Any:
    return jsonschema.Draft7Validator


def _registry(docs: Mapping[str, Any]) -> referencing.Registry[Any]:
    registry: referencing.Registry[Any] = referencing.Registry()
    default = referencing.jsonschema.DRAFT7
    for name, doc in docs.items():
        resource = referencing.Resource.from_contents(doc, default_specification=default)
        registry = registry.with_resource(name, resource)
        if isinstance(doc, dict) and isinstance(doc.get("$id"), str):
            registry = registry.with_resource(doc["$id"], resource)
    return registry


def _by_id(docs: Mapping[str, Any], uri: str) -> Any:
    for doc in docs.values():
        if isinstance(doc, dict) and doc.get("$id") == uri:
            return doc
    return None


def _pointer(document: Any, pointer: str, ref: str) -> Any:
    node = document
    for raw in pointer.lstrip("/").split("/") if pointer.strip("/") else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise SchemaError(f"$ref {ref!r} points at nothing")
    return node
