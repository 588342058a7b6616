"""How big a schema the registry accepts, checked before any parser or checker sees it.

A schema comes from the network, and every tool that reads it recurses or does work that grows
faster than its size: Python's `json` and the `avro` parser recurse once per nesting level (a
2,000-deep schema used to end in a `RecursionError`, a 500), `avro.compatibility` compares union
branches pairwise (500 branches took 43 s), and a schema too big for the broker's
`max.message.bytes` failed only once the `_schemas` write was refused. So the registry measures
the text and its JSON tree first, with loops rather than recursion, and answers 422 (Confluent's
42201, invalid schema) before parsing, checking or writing anything.

`avro` also does some work in time that grows with the square of a record's field count, so
fields per record are bounded separately, and the compatibility budget charges for it.

The defaults are generous for real schemas (the pipeline's own are about 3 KB, 3 levels deep)
and keep every later step bounded: at depth 64 the recursive parsers stay far below Python's
recursion limit, and 256 KiB of text stays well under Kafka's default 1 MiB record even after
JSON escaping in the `_schemas` value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from services.schema_registry import errors

ENV_PREFIX = "SCHEMA_REGISTRY_"
_TYPE_KEYS = frozenset({"type", "items", "values"})
"""Keys whose value is a type: a JSON array there is a union."""


@dataclass(frozen=True)
class SchemaLimits:
    """The bounds on one schema, and on the `_schemas` record that stores it."""

    max_schema_bytes: int = 256 * 1024
    """UTF-8 size of the schema text as sent."""
    max_depth: int = 64
    """Nesting of JSON objects and arrays in the schema text (a record field is two levels)."""
    max_nodes: int = 20_000
    """JSON values in the schema text: types, fields, names, default values, all counted."""
    max_items: int = 10_000
    """Members of any one JSON array or object: enum symbols, aliases, default values."""
    max_fields: int = 1_000
    """Fields of one record: `avro` parses and compares them in time that grows with the
    square of their number (6,000 fields took 2 s to parse and 30 s to check)."""
    max_union_branches: int = 100
    """Branches of one union (compatibility checks compare branches pairwise)."""
    max_compat_steps: int = 100_000
    """Reader/writer pairs one compatibility decision may compare, over all versions (about
    40 µs each: a few seconds at most)."""
    max_record_bytes: int = 1_000_000
    """The `_schemas` record (key + value); lowered at start to the topic's max.message.bytes."""

    @classmethod
    def from_env(cls) -> SchemaLimits:
        """Defaults, overridden by `SCHEMA_REGISTRY_MAX_SCHEMA_BYTES` and friends."""
        overrides: dict[str, int] = {}
        for name in cls.__dataclass_fields__:
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw:
                overrides[name] = _positive(name, raw)
        return cls(**overrides)

    def check_text(self, text: str) -> None:
        """42201 when the text alone is too large (measured before it is parsed)."""
        size = len(text.encode("utf-8", errors="surrogatepass"))
        if size > self.max_schema_bytes:
            raise errors.invalid_schema(
                f"schema is {size} bytes; this registry accepts at most {self.max_schema_bytes}"
            )

    def check_tree(self, tree: Any) -> None:
        """42201 when the parsed JSON is too deep, has too many values, too long an array, or
        too wide a union.

        A loop over an explicit stack: the point is to never recurse on client data. An array in
        a type position (the top, or the value of `type`, `items` or `values`) is a union."""
        stack: list[tuple[Any, int, bool]] = [(tree, 1, True)]
        nodes = 0
        while stack:
            node, depth, is_type = stack.pop()
            nodes += 1
            if nodes > self.max_nodes:
                raise errors.invalid_schema(
                    f"schema has more than {self.max_nodes} JSON values; this registry accepts at "
                    f"most {self.max_nodes}"
                )
            if isinstance(node, dict):
                self._check_container(len(node), depth)
                self._check_fields(node.get("fields"))
                stack.extend((v, depth + 1, k in _TYPE_KEYS) for k, v in node.items())
            elif isinstance(node, list):
                self._check_container(len(node), depth)
                if is_type and len(node) > self.max_union_branches:
                    raise errors.invalid_schema(
                        f"a union has {len(node)} branches; this registry accepts at most "
                        f"{self.max_union_branches}"
                    )
                stack.extend((item, depth + 1, False) for item in node)

    def _check_container(self, members: int, depth: int) -> None:
        if depth > self.max_depth:
            raise errors.invalid_schema(
                f"schema nests deeper than {self.max_depth} levels; this registry accepts at "
                f"most {self.max_depth}"
            )
        if members > self.max_items:
            raise errors.invalid_schema(
                f"a JSON array or object in the schema has {members} members; this registry "
                f"accepts at most {self.max_items}"
            )

    def _check_fields(self, fields: Any) -> None:
        if isinstance(fields, list) and len(fields) > self.max_fields:
            raise errors.invalid_schema(
                f"a record has {len(fields)} fields; this registry accepts at most "
                f"{self.max_fields}"
            )

    def check_record(self, size: int) -> None:
        """42201 when the `_schemas` record storing a schema would be refused by the broker."""
        if size > self.max_record_bytes:
            raise errors.invalid_schema(
                f"the schema needs a {size}-byte _schemas record; the storage topic takes at most "
                f"{self.max_record_bytes} bytes"
            )


def _positive(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} must be a positive integer")
    return value
