"""Compatibility decisions, written from the Avro specification's schema-resolution rules.

Each case names an old and a new schema and says, from the spec, whether the new schema can read
data written with the old one (what BACKWARD needs) and whether the old one can read the new
one's data (FORWARD); FULL needs both. Every case is checked in all three modes, so a wrong
direction in the checker fails here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.schema_registry import compatibility, errors, schemas


def rec(fields: list[dict[str, Any]], name: str = "R", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": fields, **extra}


def f(name: str, typ: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": typ, **extra}


def enum(symbols: list[str], name: str = "E", **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": name, "symbols": symbols, **extra}


def fixed(size: int, name: str = "F") -> dict[str, Any]:
    return {"type": "fixed", "name": name, "size": size}


R_A = rec([f("a", "int")])
R_AB_DEFAULT = rec([f("a", "int"), f("b", "string", default="x")])
R_AB = rec([f("a", "int"), f("b", "string")])
INNER = rec([f("x", "int")], name="Inner")
INNER_Y_DEFAULT = rec([f("x", "int"), f("y", "long", default=0)], name="Inner")
INNER_X_STRING = rec([f("x", "string")], name="Inner")

# (id, old schema, new schema, new can read old data, old can read new data)
CASES: list[tuple[str, Any, Any, bool, bool]] = [
    # Primitive promotions: int -> long, float, double; long -> float, double; float -> double;
    # string <-> bytes. Nothing else converts.
    ("int-to-long", "int", "long", True, False),
    ("int-to-float", "int", "float", True, False),
    ("int-to-double", "int", "double", True, False),
    ("long-to-float", "long", "float", True, False),
    ("long-to-double", "long", "double", True, False),
    ("float-to-double", "float", "double", True, False),
    ("string-to-bytes", "string", "bytes", True, True),
    ("long-to-int", "long", "int", False, True),
    ("double-to-float", "double", "float", False, True),
    ("int-to-string", "int", "string", False, False),
    ("boolean-to-int", "boolean", "int", False, False),
    ("null-same", "null", "null", True, True),
    ("string-same", "string", "string", True, True),
    ("logical-type-ignored", {"type": "int", "logicalType": "date"}, "int", True, True),
    # Records: fields match by name; a reader field missing in the writer needs a default;
    # writer fields the reader lacks are ignored; field order does not matter.
    ("add-field-with-default", R_A, R_AB_DEFAULT, True, True),
    ("add-field-without-default", R_A, R_AB, False, True),
    ("remove-field-with-default", R_AB_DEFAULT, R_A, True, True),
    ("remove-field-without-default", R_AB, R_A, True, False),
    ("rename-field-with-alias", R_A, rec([f("b", "int", aliases=["a"])]), True, False),
    ("rename-field-without-alias", R_A, rec([f("b", "int")]), False, False),
    ("promote-field-type", R_A, rec([f("a", "long")]), True, False),
    ("narrow-field-type", rec([f("a", "double")]), rec([f("a", "float")]), False, True),
    ("record-renamed", R_A, rec([f("a", "int")], name="S"), False, False),
    ("record-renamed-with-alias", R_A, rec([f("a", "int")], name="S", aliases=["R"]), True, False),
    (
        "record-namespace-changed",
        rec([f("a", "int")], namespace="one"),
        rec([f("a", "int")], namespace="two"),
        True,
        True,
    ),
    ("nested-add-with-default", rec([f("i", INNER)]), rec([f("i", INNER_Y_DEFAULT)]), True, True),
    ("nested-type-changed", rec([f("i", INNER)]), rec([f("i", INNER_X_STRING)]), False, False),
    ("field-order-changed", R_AB, rec([f("b", "string"), f("a", "int")]), True, True),
    ("doc-changed", R_A, rec([f("a", "int", doc="the a")], doc="a record"), True, True),
    (
        "add-record-field-with-default",
        R_A,
        rec([f("a", "int"), f("i", INNER, default={"x": 1})]),
        True,
        True,
    ),
    (
        "add-nullable-field",
        R_A,
        rec([f("a", "int"), f("n", ["null", "string"], default=None)]),
        True,
        True,
    ),
    # Enums: every symbol the writer may write must be known to the reader, unless the
    # reader's enum has a default symbol; names must match.
    ("enum-add-symbol", enum(["A", "B"]), enum(["A", "B", "C"]), True, False),
    ("enum-remove-symbol", enum(["A", "B", "C"]), enum(["A", "B"]), False, True),
    (
        "enum-add-symbol-reader-default",
        enum(["A", "B"], default="A"),
        enum(["A", "B", "C"], default="A"),
        True,
        True,
    ),
    ("enum-reordered", enum(["A", "B"]), enum(["B", "A"]), True, True),
    ("enum-renamed", enum(["A"]), enum(["A"], name="G"), False, False),
    # Unions: a reader union must hold a branch matching each writer branch; a non-union reader
    # must match every writer branch; a non-union writer needs one matching reader branch.
    ("type-to-nullable-union", "int", ["null", "int"], True, False),
    ("union-add-branch", ["null", "int"], ["null", "int", "string"], True, False),
    ("union-remove-branch", ["null", "int", "string"], ["null", "int"], False, True),
    ("union-branch-promoted", ["null", "int"], ["null", "long"], True, False),
    ("union-reordered", ["null", "string"], ["string", "null"], True, True),
    ("union-to-single-type", ["null", "string"], "string", False, True),
    ("union-record-branch-evolves", ["null", R_A], ["null", R_AB_DEFAULT], True, True),
    # Arrays and maps resolve their items and values; they never convert into each other.
    (
        "array-items-promoted",
        {"type": "array", "items": "int"},
        {"type": "array", "items": "long"},
        True,
        False,
    ),
    (
        "array-items-record-evolves",
        {"type": "array", "items": R_A},
        {"type": "array", "items": R_AB_DEFAULT},
        True,
        True,
    ),
    (
        "map-values-promoted",
        {"type": "map", "values": "int"},
        {"type": "map", "values": "double"},
        True,
        False,
    ),
    (
        "map-to-array",
        {"type": "map", "values": "int"},
        {"type": "array", "items": "int"},
        False,
        False,
    ),
    (
        "array-string-to-bytes",
        {"type": "array", "items": "string"},
        {"type": "array", "items": "bytes"},
        True,
        True,
    ),
    # Fixed: same name and size.
    ("fixed-same", fixed(16), fixed(16), True, True),
    ("fixed-size-changed", fixed(16), fixed(8), False, False),
    ("fixed-renamed", fixed(16), fixed(16, name="G"), False, False),
    ("fixed-to-bytes", fixed(16), "bytes", False, False),
    ("string-to-enum", "string", enum(["A"]), False, False),
]


def parsed(schema: Any) -> Any:
    return schemas.parse(json.dumps(schema)).parsed


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("mode", ["BACKWARD", "FORWARD", "FULL"])
@pytest.mark.parametrize(
    ("old", "new", "new_reads_old", "old_reads_new"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_resolution_rule(
    mode: str, old: Any, new: Any, new_reads_old: bool, old_reads_new: bool
) -> None:
    expected = {
        "BACKWARD": new_reads_old,
        "FORWARD": old_reads_new,
        "FULL": new_reads_old and old_reads_new,
    }[mode]
    messages = compatibility.check(parsed(new), [parsed(old)], mode)
    assert (not messages) is expected, messages


def test_none_accepts_anything() -> None:
    assert compatibility.check(parsed("string"), [parsed("int")], "NONE") == []


def test_no_previous_version_is_always_compatible() -> None:
    assert compatibility.check(parsed("string"), [], "FULL_TRANSITIVE") == []


def test_backward_checks_latest_only_but_transitive_checks_all() -> None:
    v1, v2 = parsed(R_A), parsed(R_AB_DEFAULT)
    v3 = parsed(R_AB)  # reads v2's data (b present) but not v1's (b missing, no default)
    assert compatibility.check(v3, [v1, v2], "BACKWARD") == []
    assert compatibility.check(v3, [v1, v2], "BACKWARD_TRANSITIVE") != []


def test_forward_transitive_checks_all() -> None:
    v1, v2 = parsed(R_AB), parsed(R_AB_DEFAULT)
    v3 = parsed(R_A)  # v2 reads it (default for b), v1 does not (b has no default)
    assert compatibility.check(v3, [v1, v2], "FORWARD") == []
    assert compatibility.check(v3, [v1, v2], "FORWARD_TRANSITIVE") != []


def test_full_transitive_checks_both_directions_against_all() -> None:
    v1 = parsed(rec([f("a", "int")]))
    v2 = parsed(rec([f("a", "int"), f("b", "int", default=0)]))
    v3 = parsed(rec([f("a", "long"), f("b", "int", default=0)]))
    assert compatibility.check(v3, [v1, v2], "BACKWARD_TRANSITIVE") == []
    assert compatibility.check(v3, [v1, v2], "FULL_TRANSITIVE") != []


def test_messages_say_what_is_wrong() -> None:
    (message,) = compatibility.check(parsed(R_AB), [parsed(R_A)], "BACKWARD")
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in message and "b" in message


@pytest.mark.parametrize("level", compatibility.LEVELS)
def test_levels_parse_in_any_case(level: str) -> None:
    assert compatibility.parse_level(level.lower()) == level


@pytest.mark.parametrize("bad", ["SIDEWAYS", "", None, 3])
def test_unknown_level_is_42203(bad: Any) -> None:
    with pytest.raises(errors.RegistryError) as info:
        compatibility.parse_level(bad)
    assert info.value.error_code == 42203
