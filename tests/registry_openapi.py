"""The registry's OpenAPI description (docs/openapi/schema-registry.yaml) as test data: its
operations, and a small validator for the subset of JSON Schema it uses, so tests can check every
answer against what the description promises without another dependency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi" / "schema-registry.yaml"
METHODS = ("get", "put", "post", "delete")


def load_spec() -> dict[str, Any]:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    assert isinstance(spec, dict)
    return spec


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    parameters: tuple[dict[str, Any], ...]
    body: dict[str, Any] | None
    """The request body's JSON schema, if the operation takes one."""
    responses: dict[str, Any]


def operations(spec: dict[str, Any]) -> list[Operation]:
    """Every (method, path) in the description, with its references resolved one level."""
    out = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            params = tuple(resolve(spec, p) for p in op.get("parameters", []))
            body = None
            if "requestBody" in op:
                content = resolve(spec, op["requestBody"])["content"]
                body = resolve(spec, content["application/vnd.schemaregistry.v1+json"]["schema"])
            responses = {code: resolve(spec, r) for code, r in op["responses"].items()}
            out.append(Operation(method.upper(), path, params, body, responses))
    return out


def resolve(spec: dict[str, Any], node: Any) -> Any:
    """Follow `$ref` (local references only)."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


def validate(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> None:
    """Raise AssertionError where `value` breaks `schema` (type, required, properties, items,
    enum, oneOf, nullable, maxItems, additionalProperties: false)."""
    schema = resolve(spec, schema)
    if value is None and schema.get("nullable"):
        return
    if "oneOf" in schema:
        fits = 0
        for option in schema["oneOf"]:
            try:
                validate(spec, option, value, where)
                fits += 1
            except AssertionError:
                pass
        assert fits == 1, f"{where}: {value!r} fits {fits} of oneOf"
        return
    kind = schema.get("type")
    if kind is not None:
        ok = isinstance(value, _TYPES[kind]) and not (
            kind in ("integer", "number") and isinstance(value, bool)
        )
        assert ok, f"{where}: {value!r} is not {kind}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, f"{where}: missing {name}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), f"{where}: unexpected {set(value) - set(props)}"
        for name, sub in props.items():
            if name in value:
                validate(spec, sub, value[name], f"{where}.{name}")
    if isinstance(value, list):
        if "maxItems" in schema:
            assert len(value) <= schema["maxItems"], f"{where}: too many items"
        for i, item in enumerate(value):
            validate(spec, schema.get("items", {}), item, f"{where}[{i}]")
