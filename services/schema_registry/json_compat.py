"""JSON Schema compatibility with the rules of Confluent's registry.

Confluent decides JSON Schema compatibility by walking the old schema (`original`) and the new
one (`update`) side by side and listing their differences (`json/diff/SchemaDiff.java` and its
siblings in confluentinc/schema-registry); a change is compatible when every difference is in
its COMPATIBLE_CHANGES set. BACKWARD compares (old, new), FORWARD (new, old). The content model
of an object decides what adding or removing a property means: an *open* model (no
`additionalProperties`, no `patternProperties`) may already carry any property, so adding a
typed property is incompatible while removing one is not; a *closed* model
(`additionalProperties: false`) is the reverse; a *partially open* one compares the property
with the schema that covered it. This module follows those rules over plain JSON documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from services.common.schemas import SchemaError
from services.common.schemas.json_schema import JsonSchema

COMPATIBLE_CHANGES = frozenset(
    {
        "ID_CHANGED",
        "DESCRIPTION_CHANGED",
        "TITLE_CHANGED",
        "DEFAULT_CHANGED",
        "SCHEMA_REMOVED",
        "TYPE_EXTENDED",
        "MAX_LENGTH_INCREASED",
        "MAX_LENGTH_REMOVED",
        "MIN_LENGTH_DECREASED",
        "MIN_LENGTH_REMOVED",
        "PATTERN_REMOVED",
        "MAXIMUM_INCREASED",
        "MAXIMUM_REMOVED",
        "MINIMUM_DECREASED",
        "MINIMUM_REMOVED",
        "EXCLUSIVE_MAXIMUM_INCREASED",
        "EXCLUSIVE_MAXIMUM_REMOVED",
        "EXCLUSIVE_MINIMUM_DECREASED",
        "EXCLUSIVE_MINIMUM_REMOVED",
        "MULTIPLE_OF_REDUCED",
        "MULTIPLE_OF_REMOVED",
        "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED",
        "REQUIRED_ATTRIBUTE_REMOVED",
        "DEPENDENCY_ARRAY_NARROWED",
        "DEPENDENCY_ARRAY_REMOVED",
        "DEPENDENCY_SCHEMA_REMOVED",
        "MAX_PROPERTIES_INCREASED",
        "MAX_PROPERTIES_REMOVED",
        "MIN_PROPERTIES_DECREASED",
        "MIN_PROPERTIES_REMOVED",
        "ADDITIONAL_PROPERTIES_ADDED",
        "ADDITIONAL_PROPERTIES_EXTENDED",
        "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
        "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL",
        "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
        "PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
        "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
        "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "MAX_ITEMS_INCREASED",
        "MAX_ITEMS_REMOVED",
        "MIN_ITEMS_DECREASED",
        "MIN_ITEMS_REMOVED",
        "UNIQUE_ITEMS_REMOVED",
        "ADDITIONAL_ITEMS_ADDED",
        "ADDITIONAL_ITEMS_EXTENDED",
        "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
        "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL",
        "ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
        "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL",
        "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
        "ENUM_ARRAY_EXTENDED",
        "COMBINED_TYPE_EXTENDED",
        "PRODUCT_TYPE_NARROWED",
        "SUM_TYPE_EXTENDED",
        "NOT_TYPE_NARROWED",
    }
)
"""Confluent's `SchemaDiff.COMPATIBLE_CHANGES` for JSON Schema."""

MAX_STEPS = 50_000
_COMBINERS = ("allOf", "anyOf", "oneOf")
_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
_OBJECT_KEYS = (
    "properties",
    "additionalProperties",
    "patternProperties",
    "required",
    "dependencies",
    "maxProperties",
    "minProperties",
)
_ARRAY_KEYS = ("items", "additionalItems", "maxItems", "minItems", "uniqueItems")
_STRING_KEYS = ("maxLength", "minLength", "pattern")
_NUMBER_KEYS = ("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum", "multipleOf")


@dataclass
class _Side:
    schema: JsonSchema
    base: Any
    """The document `#` pointers are read against (the schema, or a referenced document)."""


@dataclass
class Context:
    """Differences found so far, the path being compared, and the pairs already entered."""

    differences: list[tuple[str, str]] = field(default_factory=list)
    path: list[str] = field(default_factory=lambda: ["#"])
    seen: set[tuple[int, int]] = field(default_factory=set)
    steps: list[int] = field(default_factory=lambda: [0])

    def add(self, kind: str, extra: str | None = None) -> None:
        where = "/".join(self.path + ([extra] if extra else []))
        self.differences.append((kind, where))

    def sub(self) -> Context:
        return Context([], list(self.path), self.seen, self.steps)

    def compatible(self) -> bool:
        return all(kind in COMPATIBLE_CHANGES for kind, _ in self.differences)

    @contextmanager
    def at(self, *parts: str) -> Iterator[None]:
        self.path.extend(parts)
        try:
            yield
        finally:
            del self.path[-len(parts) :]


def differences(original: JsonSchema, update: JsonSchema) -> list[tuple[str, str]]:
    """Confluent's differences between an old and a new schema: (type, JSON path) pairs."""
    ctx = Context()
    _compare(ctx, original.schema, update.schema, _Side(original, None), _Side(update, None))
    return ctx.differences


def incompatibilities(original: JsonSchema, update: JsonSchema) -> list[str]:
    """Messages for the differences Confluent counts as incompatible."""
    return [
        f"Found incompatible change: Difference{{jsonPath='{where}', type={kind}}}"
        for kind, where in differences(original, update)
        if kind not in COMPATIBLE_CHANGES
    ]


# -- classification -----------------------------------------------------------------------------


def _deref(node: Any, side: _Side, depth: int = 0) -> tuple[Any, _Side]:
    """Follow `$ref`s (a reference's name, or a pointer) to the schema they name."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        if depth > 32:
            raise SchemaError("$ref chain longer than 32")
        ref = node["$ref"]
        name = ref.partition("#")[0]
        base = side.base if not name else None
        target = side.schema.resolve(ref, base)
        if name:
            side = _Side(side.schema, side.schema.resolve(name))
        node = target
        depth += 1
    return node, side


def _kind(node: Any) -> str:
    """The everit schema class Confluent's checker would see for this node."""
    if node is True or node == {}:
        return "empty"
    if node is False:
        return "false"
    if not isinstance(node, dict):
        return "empty"
    types = node.get("type")
    if isinstance(types, list) and len(types) > 1:
        return "combined"
    if any(k in node for k in _COMBINERS):
        return "combined"
    if _constraint_parts(node):
        return "combined"
    if "enum" in node:
        return "enum"
    if "const" in node:
        return "const"
    if "not" in node:
        return "not"
    kind = types[0] if isinstance(types, list) and types else types
    if kind in ("number", "integer"):
        return "number"
    if isinstance(kind, str) and kind in _TYPES:
        return kind
    for name, keys in (
        ("object", _OBJECT_KEYS),
        ("array", _ARRAY_KEYS),
        ("string", _STRING_KEYS),
        ("number", _NUMBER_KEYS),
    ):
        if any(k in node for k in keys):
            return name
    return "empty"


_CONSTRAINTS = ("enum", "const", "not")


def _constraint_parts(node: dict[str, Any]) -> list[dict[str, Any]]:
    """A typed node that also holds `enum`, `const` or `not` is, to everit, an allOf of the
    typed part and each of those (so dropping the `enum` narrows the product)."""
    found = [k for k in _CONSTRAINTS if k in node]
    rest = {k: v for k, v in node.items() if k not in _CONSTRAINTS}
    typed = "type" in rest or any(
        k in rest for k in (*_OBJECT_KEYS, *_ARRAY_KEYS, *_STRING_KEYS, *_NUMBER_KEYS)
    )
    if not found or (len(found) == 1 and not typed):
        return []
    return [rest, *({k: node[k]} for k in found)] if typed else [{k: node[k]} for k in found]


def _combined(node: dict[str, Any]) -> tuple[str, list[Any]]:
    """(criterion, subschemas) of a combined node; a type list is an anyOf of single types."""
    types = node.get("type")
    if isinstance(types, list) and len(types) > 1:
        rest = {k: v for k, v in node.items() if k != "type"}
        return "anyOf", [{**rest, "type": t} for t in types]
    for key in _COMBINERS:
        if key in node:
            rest = {k: v for k, v in node.items() if k != key}
            subs = list(node[key]) if isinstance(node[key], list) else []
            if _kind(rest) != "empty":
                return "allOf", [rest, {key: subs}] if key != "allOf" else [rest, *subs]
            return key, subs
    return "allOf", _constraint_parts(node)


# -- comparison ---------------------------------------------------------------------------------


def _compare(ctx: Context, original: Any, update: Any, o_side: _Side, u_side: _Side) -> None:
    ctx.steps[0] += 1
    if ctx.steps[0] > MAX_STEPS:
        raise SchemaError(f"comparing these schemas takes more than {MAX_STEPS} steps")
    if original is None and update is None:
        return
    if original is None:
        ctx.add("SCHEMA_ADDED")
        return
    if update is None:
        ctx.add("SCHEMA_REMOVED")
        return
    original, o_side = _deref(original, o_side)
    update, u_side = _deref(update, u_side)
    o_kind, u_kind = _kind(original), _kind(update)
    if o_kind != "combined" and u_kind == "combined":
        criterion, subs = _combined(update)
        if len(subs) == 1:
            sub = ctx.sub()
            _compare(sub, original, subs[0], o_side, u_side)
            if sub.compatible():
                ctx.differences += sub.differences
                return
        elif criterion in ("anyOf", "oneOf"):
            for candidate in subs:
                sub = ctx.sub()
                _compare(sub, original, candidate, o_side, u_side)
                if sub.compatible():
                    ctx.differences += sub.differences
                    ctx.add("SUM_TYPE_EXTENDED")
                    return
    elif o_kind == "combined" and u_kind != "combined":
        criterion, subs = _combined(original)
        if len(subs) == 1:
            sub = ctx.sub()
            _compare(sub, subs[0], update, o_side, u_side)
            if sub.compatible():
                ctx.differences += sub.differences
                return
        elif criterion == "allOf":
            for candidate in subs:
                sub = ctx.sub()
                _compare(sub, candidate, update, o_side, u_side)
                if sub.compatible():
                    ctx.differences += sub.differences
                    ctx.add("PRODUCT_TYPE_NARROWED")
                    return
    if o_kind != u_kind:
        if o_kind == "false" or u_kind == "empty":
            return
        ctx.add("TYPE_CHANGED")
        return
    key = (id(original), id(update))
    if key in ctx.seen:
        return
    ctx.seen.add(key)
    try:
        if isinstance(original, dict) and isinstance(update, dict):
            _annotations(ctx, original, update)
            compare = _BY_KIND.get(o_kind)
            if compare is not None:
                compare(ctx, original, update, o_side, u_side)
    finally:
        ctx.seen.discard(key)


def _annotations(ctx: Context, original: dict[str, Any], update: dict[str, Any]) -> None:
    for name, kind in (
        ("$id", "ID_CHANGED"),
        ("title", "TITLE_CHANGED"),
        ("description", "DESCRIPTION_CHANGED"),
        ("default", "DEFAULT_CHANGED"),
    ):
        if original.get(name) != update.get(name):
            ctx.add(kind)


def _bound(
    ctx: Context, original: dict[str, Any], update: dict[str, Any], key: str, name: str, up: bool
) -> None:
    """An upper (`up`) or lower bound: added, removed, loosened or tightened."""
    old, new = original.get(key), update.get(key)
    if old == new or isinstance(old, bool) or isinstance(new, bool):
        return
    if old is None:
        ctx.add(f"{name}_ADDED", key)
    elif new is None:
        ctx.add(f"{name}_REMOVED", key)
    elif not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
        return
    elif (new > old) == up:
        ctx.add(f"{name}_{'INCREASED' if up else 'DECREASED'}", key)
    else:
        ctx.add(f"{name}_{'DECREASED' if up else 'INCREASED'}", key)


def _string(ctx: Context, o: dict[str, Any], u: dict[str, Any], *_: _Side) -> None:
    _bound(ctx, o, u, "maxLength", "MAX_LENGTH", True)
    _bound(ctx, o, u, "minLength", "MIN_LENGTH", False)
    if o.get("pattern") != u.get("pattern"):
        if o.get("pattern") is None:
            ctx.add("PATTERN_ADDED", "pattern")
        elif u.get("pattern") is None:
            ctx.add("PATTERN_REMOVED", "pattern")
        else:
            ctx.add("PATTERN_CHANGED", "pattern")


def _number(ctx: Context, o: dict[str, Any], u: dict[str, Any], *_: _Side) -> None:
    _bound(ctx, o, u, "maximum", "MAXIMUM", True)
    _bound(ctx, o, u, "minimum", "MINIMUM", False)
    _bound(ctx, o, u, "exclusiveMaximum", "EXCLUSIVE_MAXIMUM", True)
    _bound(ctx, o, u, "exclusiveMinimum", "EXCLUSIVE_MINIMUM", False)
    old, new = o.get("multipleOf"), u.get("multipleOf")
    if old != new:
        if old is None:
            ctx.add("MULTIPLE_OF_ADDED", "multipleOf")
        elif new is None:
            ctx.add("MULTIPLE_OF_REMOVED", "multipleOf")
        elif isinstance(old, (int, float)) and isinstance(new, (int, float)) and new:
            if old % new == 0:
                ctx.add("MULTIPLE_OF_REDUCED", "multipleOf")
            elif new % old == 0:
                ctx.add("MULTIPLE_OF_EXPANDED", "multipleOf")
            else:
                ctx.add("MULTIPLE_OF_CHANGED", "multipleOf")
    o_int, u_int = _is_integer(o), _is_integer(u)
    if o_int and not u_int:
        ctx.add("TYPE_EXTENDED")
    elif u_int and not o_int:
        ctx.add("TYPE_NARROWED")


def _is_integer(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "integer" or kind == ["integer"]


def _enum(ctx: Context, o: dict[str, Any], u: dict[str, Any], *_: _Side) -> None:
    old = _list(o, "enum")
    new = _list(u, "enum")
    old_set = {_hashable(v) for v in old}
    new_set = {_hashable(v) for v in new}
    if old_set == new_set:
        return
    if new_set >= old_set:
        ctx.add("ENUM_ARRAY_EXTENDED", "enum")
    elif new_set <= old_set:
        ctx.add("ENUM_ARRAY_NARROWED", "enum")
    else:
        ctx.add("ENUM_ARRAY_CHANGED", "enum")


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return (type(value).__name__, value)


def _const(ctx: Context, o: dict[str, Any], u: dict[str, Any], *_: _Side) -> None:
    if _hashable(o.get("const")) != _hashable(u.get("const")):
        ctx.add("CONST_CHANGED", "const")


def _not(ctx: Context, o: dict[str, Any], u: dict[str, Any], os_: _Side, us: _Side) -> None:
    sub = ctx.sub()
    _compare(sub, u.get("not"), o.get("not"), us, os_)  # reversed: `not` flips the direction
    ctx.add("NOT_TYPE_NARROWED" if sub.compatible() else "NOT_TYPE_EXTENDED", "not")


def _combined_diff(
    ctx: Context, o: dict[str, Any], u: dict[str, Any], os_: _Side, us: _Side
) -> None:
    o_crit, o_subs = _combined(o)
    u_crit, u_subs = _combined(u)
    if o_crit != u_crit:
        if u_crit == "anyOf" or (
            (u_crit == "oneOf" and len(o_subs) == 1)
            or (u_crit == "allOf" and len(o_subs) == 1 and len(u_subs) == 1)
        ):
            ctx.add("COMBINED_TYPE_EXTENDED")
        else:
            ctx.add("COMBINED_TYPE_CHANGED")
            return
    o_subs, u_subs = _unique(o_subs), _unique(u_subs)
    if len(o_subs) < len(u_subs):
        ctx.add("PRODUCT_TYPE_EXTENDED" if u_crit == "allOf" else "SUM_TYPE_EXTENDED")
    elif len(o_subs) > len(u_subs):
        ctx.add("PRODUCT_TYPE_NARROWED" if u_crit == "allOf" else "SUM_TYPE_NARROWED")
    edges: dict[int, dict[int, list[tuple[str, str]]]] = {}
    for i, old in enumerate(o_subs):
        with ctx.at(f"{o_crit}/{i}"):
            for j, new in enumerate(u_subs):
                sub = ctx.sub()
                _compare(sub, old, new, os_, us)
                if sub.compatible():
                    edges.setdefault(i, {})[j] = sub.differences
    matching = _max_matching(edges)
    for i, j in matching.items():
        ctx.differences += edges[i][j]
    if len(matching) < min(len(o_subs), len(u_subs)):
        ctx.add("COMBINED_TYPE_SUBSCHEMAS_CHANGED")


def _unique(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    seen: set[Any] = set()
    for item in items:
        key = _hashable(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _max_matching(edges: dict[int, dict[int, Any]]) -> dict[int, int]:
    """Maximum bipartite matching (augmenting paths): left index → right index."""
    match_right: dict[int, int] = {}

    def augment(left: int, visited: set[int]) -> bool:
        for right in edges.get(left, {}):
            if right in visited:
                continue
            visited.add(right)
            if right not in match_right or augment(match_right[right], visited):
                match_right[right] = left
                return True
        return False

    for left in edges:
        augment(left, set())
    return {left: right for right, left in match_right.items()}


def _open(node: dict[str, Any]) -> bool:
    extra = node.get("additionalProperties", True)
    return not node.get("patternProperties") and (extra is True or extra == {})


def _partial(node: dict[str, Any], name: str) -> Any:
    """The schema a partially open object gives an undeclared property, or None."""
    patterns = node.get("patternProperties")
    if isinstance(patterns, dict):
        for pattern, schema in patterns.items():
            try:
                if re.search(pattern, name):
                    return schema
            except re.error:
                continue
    extra = node.get("additionalProperties")
    return extra if isinstance(extra, dict) and extra != {} else None


def _object(ctx: Context, o: dict[str, Any], u: dict[str, Any], os_: _Side, us: _Side) -> None:
    o_props = _dict(o, "properties")
    u_props = _dict(u, "properties")
    o_req = set(o.get("required") or []) if isinstance(o.get("required"), list) else set()
    u_req = set(u.get("required") or []) if isinstance(u.get("required"), list) else set()
    for name in o_props:
        if name in u_props:
            if name in o_req and name not in u_req:
                ctx.add("REQUIRED_ATTRIBUTE_REMOVED", f"required/{name}")
            elif name in u_req and name not in o_req:
                has_default = isinstance(u_props[name], dict) and "default" in u_props[name]
                kind = "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED" if has_default else None
                ctx.add(kind or "REQUIRED_ATTRIBUTE_ADDED", f"required/{name}")
    for name in sorted(set(o_props) | set(u_props)):
        with ctx.at("properties", name):
            _property(ctx, o, u, name, o_props.get(name), u_props.get(name), u_req, os_, us)
    _dependencies(ctx, o, u, os_, us)
    _additional(ctx, o, u, os_, us, "additionalProperties", "ADDITIONAL_PROPERTIES")
    _bound(ctx, o, u, "maxProperties", "MAX_PROPERTIES", True)
    _bound(ctx, o, u, "minProperties", "MIN_PROPERTIES", False)


def _property(
    ctx: Context,
    o: dict[str, Any],
    u: dict[str, Any],
    name: str,
    old: Any,
    new: Any,
    u_req: set[str],
    os_: _Side,
    us: _Side,
) -> None:
    if new is None:
        if _open(u):
            ctx.add("PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL")
            return
        partial = _partial(u, name)
        if partial is not None:
            sub = ctx.sub()
            _compare(sub, old, partial, os_, us)
            ctx.differences += sub.differences
            ok = sub.compatible()
            ctx.add(
                f"PROPERTY_REMOVED_{'IS' if ok else 'NOT'}_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            )
        elif old is False:
            ctx.add("PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL")
        else:
            ctx.add("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL")
    elif old is None:
        if _open(o):
            empty = new is True or new == {}
            ctx.add(
                "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
                if empty
                else "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
            )
            return
        partial = _partial(o, name)
        if partial is not None:
            sub = ctx.sub()
            _compare(sub, partial, new, os_, us)
            ctx.differences += sub.differences
            ok = sub.compatible()
            ctx.add(
                f"PROPERTY_ADDED_{'IS' if ok else 'NOT'}_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
            )
        if name in u_req:
            with_default = isinstance(new, dict) and "default" in new
            ctx.add(
                "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL"
                if with_default
                else "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"
            )
        else:
            ctx.add("OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL")
    else:
        _compare(ctx, old, new, os_, us)


def _dependencies(
    ctx: Context, o: dict[str, Any], u: dict[str, Any], os_: _Side, us: _Side
) -> None:
    o_deps = _dict(o, "dependencies")
    u_deps = _dict(u, "dependencies")
    for name in sorted(set(o_deps) | set(u_deps)):
        with ctx.at("dependencies", name):
            old, new = o_deps.get(name), u_deps.get(name)
            is_array = isinstance(old if old is not None else new, list)
            kind = "ARRAY" if is_array else "SCHEMA"
            if new is None:
                ctx.add(f"DEPENDENCY_{kind}_REMOVED")
            elif old is None:
                ctx.add(f"DEPENDENCY_{kind}_ADDED")
            elif isinstance(old, list) and isinstance(new, list):
                if set(old) != set(new):
                    if set(new) >= set(old):
                        ctx.add("DEPENDENCY_ARRAY_EXTENDED")
                    elif set(new) <= set(old):
                        ctx.add("DEPENDENCY_ARRAY_NARROWED")
                    else:
                        ctx.add("DEPENDENCY_ARRAY_CHANGED")
            else:
                _compare(ctx, old, new, os_, us)


def _additional(
    ctx: Context,
    o: dict[str, Any],
    u: dict[str, Any],
    os_: _Side,
    us: _Side,
    key: str,
    name: str,
) -> None:
    """`additionalProperties` / `additionalItems`: permitted or not, then their schemas."""
    old, new = o.get(key, True), u.get(key, True)
    o_permits, u_permits = old is not False, new is not False
    o_schema = old if isinstance(old, dict) and old != {} else None
    u_schema = new if isinstance(new, dict) and new != {} else None
    with ctx.at(key):
        if o_permits != u_permits:
            ctx.add(f"{name}_ADDED" if u_permits else f"{name}_REMOVED")
        elif o_schema is None and u_schema is not None:
            ctx.add(f"{name}_NARROWED")
        elif u_schema is None and o_schema is not None:
            ctx.add(f"{name}_EXTENDED")
        elif o_schema is not None:
            _compare(ctx, o_schema, u_schema, os_, us)


def _array(ctx: Context, o: dict[str, Any], u: dict[str, Any], os_: _Side, us: _Side) -> None:
    o_items, u_items = o.get("items"), u.get("items")
    o_tuple = o_items if isinstance(o_items, list) else []
    u_tuple = u_items if isinstance(u_items, list) else []
    with ctx.at("items"):
        _compare(
            ctx,
            None if isinstance(o_items, list) else o_items,
            None if isinstance(u_items, list) else u_items,
            os_,
            us,
        )
    for index in range(max(len(o_tuple), len(u_tuple))):
        with ctx.at(f"items/{index}"):
            _tuple_item(ctx, o, u, index, o_tuple, u_tuple, os_, us)
    _additional(ctx, o, u, os_, us, "additionalItems", "ADDITIONAL_ITEMS")
    _bound(ctx, o, u, "maxItems", "MAX_ITEMS", True)
    _bound(ctx, o, u, "minItems", "MIN_ITEMS", False)
    if bool(o.get("uniqueItems")) != bool(u.get("uniqueItems")):
        ctx.add("UNIQUE_ITEMS_REMOVED" if o.get("uniqueItems") else "UNIQUE_ITEMS_ADDED")


def _tuple_item(
    ctx: Context,
    o: dict[str, Any],
    u: dict[str, Any],
    index: int,
    o_tuple: list[Any],
    u_tuple: list[Any],
    os_: _Side,
    us: _Side,
) -> None:
    if index < len(o_tuple) and index < len(u_tuple):
        _compare(ctx, o_tuple[index], u_tuple[index], os_, us)
        return
    if index < len(o_tuple):
        old = o_tuple[index]
        if _items_open(u):
            ctx.add("ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL")
        elif _items_partial(u) is not None:
            sub = ctx.sub()
            _compare(sub, old, _items_partial(u), os_, us)
            ctx.differences += sub.differences
            ok = sub.compatible()
            ctx.add(f"ITEM_REMOVED_{'IS' if ok else 'NOT'}_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL")
        else:
            ctx.add(
                "ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL"
                if old is False
                else "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"
            )
        return
    new = u_tuple[index]
    if _items_open(o):
        empty = new is True or new == {}
        ctx.add(
            "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
            if empty
            else "ITEM_ADDED_TO_OPEN_CONTENT_MODEL"
        )
    elif _items_partial(o) is not None:
        sub = ctx.sub()
        _compare(sub, _items_partial(o), new, os_, us)
        ctx.differences += sub.differences
        ok = sub.compatible()
        ctx.add(f"ITEM_ADDED_{'IS' if ok else 'NOT'}_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL")
    else:
        ctx.add("ITEM_ADDED_TO_CLOSED_CONTENT_MODEL")


def _items_open(node: dict[str, Any]) -> bool:
    extra = node.get("additionalItems", True)
    return extra is True or extra == {}


def _items_partial(node: dict[str, Any]) -> Any:
    extra = node.get("additionalItems")
    return extra if isinstance(extra, dict) and extra != {} else None


def _dict(node: dict[str, Any], key: str) -> dict[str, Any]:
    value = node.get(key)
    return value if isinstance(value, dict) else {}


def _list(node: dict[str, Any], key: str) -> list[Any]:
    value = node.get(key)
    return value if isinstance(value, list) else []


_BY_KIND: dict[str, Callable[..., None]] = {
    "string": _string,
    "number": _number,
    "enum": _enum,
    "const": _const,
    "not": _not,
    "combined": _combined_diff,
    "object": _object,
    "array": _array,
}
