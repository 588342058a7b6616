"""The KSQL server's one Avro encoder (`formats/avro_encoder.py`) against fastavro's
schemaless writer, the exact reference: random schemas of every Avro type (nested records,
arrays, maps, enums, fixed, unions, decimals, dates, times, timestamps) with random values, and
random ksqlDB sink schemas with random rows (the row form the sinks use).
"""

from __future__ import annotations

import io
import itertools
import string
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ksql_server import types as T
from services.ksql_server.formats.avro import encode_with_schema, sink_encoder, sink_schema
from services.ksql_server.formats.avro_encoder import (
    UnsupportedSchema,
    compile_encoder,
    decimal_bytes,
)
from services.ksql_server.types import SqlType

_names = itertools.count()
_PRIMITIVE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False) | st.integers(-(2**53), 2**53),
    "string": st.text(max_size=20),
    "bytes": st.binary(max_size=20),
}
_LOGICAL = [
    ({"type": "int", "logicalType": "date"}, st.integers(-(10**6), 10**6)),
    ({"type": "int", "logicalType": "time-millis"}, st.integers(0, 86_399_999)),
    ({"type": "long", "logicalType": "timestamp-millis"}, st.integers(-(2**50), 2**50)),
    ({"type": "long", "logicalType": "timestamp-micros"}, st.integers(-(2**60), 2**60)),
]
_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fastavro(schema: Any, value: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), value)
    return buf.getvalue()


def _decimals(precision: int, scale: int) -> st.SearchStrategy[Decimal]:
    bound = 10**precision - 1
    return st.integers(-bound, bound).map(lambda u: Decimal(u).scaleb(-scale))


@st.composite
def _schema_and_value(draw: st.DrawFn, depth: int = 3) -> tuple[Any, Any]:
    """A random schema and a value it accepts."""
    simple = ["primitive", "logical", "decimal", "enum", "fixed"]
    choice = draw(st.sampled_from(simple + (["record", "array", "map", "union"] if depth else [])))
    if choice == "primitive":
        t = draw(st.sampled_from(list(_PRIMITIVE_VALUES)))
        return t, draw(_PRIMITIVE_VALUES[t])
    if choice == "logical":
        schema, values = draw(st.sampled_from(_LOGICAL))
        return schema, draw(values)
    if choice == "decimal":
        precision = draw(st.integers(1, 30))
        scale = draw(st.integers(0, precision))
        decimal: dict[str, Any] = {"type": "bytes", "logicalType": "decimal"}
        decimal["precision"] = precision
        if draw(st.booleans()):
            decimal["scale"] = scale
        else:
            scale = 0
        if draw(st.booleans()):  # a fixed decimal wide enough for the precision
            decimal = {**decimal, "type": "fixed", "name": f"F{next(_names)}", "size": 16}
        return decimal, draw(_decimals(precision, scale))
    if choice == "enum":
        symbols = draw(st.lists(st.sampled_from(string.ascii_uppercase), min_size=1, unique=True))
        return {"type": "enum", "name": f"E{next(_names)}", "symbols": symbols}, draw(
            st.sampled_from(symbols)
        )
    if choice == "fixed":
        size = draw(st.integers(0, 8))
        return {"type": "fixed", "name": f"X{next(_names)}", "size": size}, draw(
            st.binary(min_size=size, max_size=size)
        )
    if choice == "array":
        items = draw(st.lists(_schema_and_value(depth - 1), max_size=1))
        item_schema = items[0][0] if items else "long"
        first: list[Any] = [items[0][1]] if items else []
        more = draw(st.lists(st.just(first[0]), max_size=3)) if first else []
        return {"type": "array", "items": item_schema}, first + more
    if choice == "map":
        item_schema, item = draw(_schema_and_value(depth - 1))
        keys = draw(st.lists(st.text(max_size=5), max_size=3, unique=True))
        return {"type": "map", "values": item_schema}, {k: item for k in keys}
    if choice == "union":
        return draw(_union(depth))
    fields = draw(st.lists(_schema_and_value(depth - 1), max_size=5))
    record: dict[str, Any] = {
        "type": "record",
        "name": f"R{next(_names)}",
        "fields": [{"name": f"f{i}", "type": s} for i, (s, _) in enumerate(fields)],
    }
    return record, {f"f{i}": v for i, (_, v) in enumerate(fields)}


@st.composite
def _union(draw: st.DrawFn, depth: int) -> tuple[Any, Any]:
    """A union of null with one type (either order, as ksqlDB and other writers put it), or of
    several primitives whose values tell them apart."""
    if draw(st.booleans()):
        schema, value = draw(_schema_and_value(depth - 1).filter(lambda sv: _unionable(sv[0])))
        value = draw(st.sampled_from([value, None]))
        return (["null", schema] if draw(st.booleans()) else [schema, "null"]), value
    kinds = draw(
        st.lists(
            st.sampled_from(["null", "boolean", "long", "double", "string", "bytes"]),
            min_size=2,
            unique=True,
        )
    )
    if "long" in kinds and "double" in kinds:  # an int fits both: fastavro picks the first
        kinds.remove("double")
    chosen = draw(st.sampled_from(kinds))
    value = draw(_PRIMITIVE_VALUES[chosen])
    if chosen == "double":
        value = float(value)
    return kinds, value


def _unionable(schema: Any) -> bool:
    return schema != "null" and not isinstance(schema, list)


@_SETTINGS
@given(_schema_and_value())
def test_encoder_equals_fastavro_on_random_schemas(case: tuple[Any, Any]) -> None:
    schema, value = case
    assert compile_encoder(schema, b"\x00head")(value) == b"\x00head" + _fastavro(schema, value)


_SQL_PRIMITIVES = [T.BOOLEAN, T.INTEGER, T.BIGINT, T.DOUBLE, T.STRING, T.BYTES, T.DATE, T.TIME]
_SQL_PRIMITIVES += [T.TIMESTAMP]


def _sql_types(depth: int = 2) -> st.SearchStrategy[SqlType]:
    leaf = st.sampled_from(_SQL_PRIMITIVES) | st.integers(1, 20).flatmap(
        lambda p: st.integers(0, p).map(lambda s: T.decimal(p, s))
    )
    if not depth:
        return leaf
    inner = _sql_types(depth - 1)
    return st.one_of(
        leaf,
        leaf,
        inner.map(T.array),
        inner.map(lambda t: T.map_of(T.STRING, t)),
        st.lists(inner, min_size=1, max_size=3).map(
            lambda ts: T.struct([(f"F{i}", t) for i, t in enumerate(ts)])
        ),
    )


def _sql_value(typ: SqlType) -> st.SearchStrategy[Any]:
    base = typ.base
    if base == "DECIMAL":
        value: st.SearchStrategy[Any] = _decimals(typ.precision, typ.scale)
    elif base == "ARRAY":
        value = st.lists(_sql_value(typ.item or T.STRING), max_size=3)
    elif base == "MAP":
        value = st.dictionaries(st.text(max_size=4), _sql_value(typ.item or T.STRING), max_size=3)
    elif base == "STRUCT":
        value = st.fixed_dictionaries({n: _sql_value(t) for n, t in typ.fields})
    else:
        value = {
            "BOOLEAN": st.booleans(),
            "INTEGER": st.integers(-(2**31), 2**31 - 1),
            "BIGINT": st.integers(-(2**63), 2**63 - 1),
            "DOUBLE": st.floats(allow_nan=False),
            "STRING": st.text(max_size=10),
            "BYTES": st.binary(max_size=10),
            "DATE": st.integers(-(10**5), 10**5),
            "TIME": st.integers(0, 86_399_999),
            "TIMESTAMP": st.integers(-(2**45), 2**45),
        }[base]
    return st.none() | value


@st.composite
def _sink_case(draw: st.DrawFn) -> tuple[list[tuple[str, SqlType]], list[Any]]:
    types = draw(st.lists(_sql_types() | st.just(T.DOUBLE), min_size=1, max_size=8))
    columns = [(f"C{i}", t) for i, t in enumerate(types)]
    return columns, [draw(_sql_value(t)) for t in types]


@_SETTINGS
@given(_sink_case())
def test_sink_encoder_equals_fastavro_on_random_rows(
    case: tuple[list[tuple[str, SqlType]], list[Any]],
) -> None:
    """The sinks' row form, wrapped and unwrapped, on ksqlDB's schemas of random columns."""
    columns, row = case
    schema = sink_schema(columns, True)
    record = dict(zip([n for n, _ in columns], row, strict=True))
    assert sink_encoder(columns, True, schema, b"H")(row) == b"H" + _fastavro(schema, record)
    single = columns[:1]
    schema = sink_schema(single, False)
    assert sink_encoder(single, False, schema, b"H")(row[:1]) == b"H" + _fastavro(schema, row[0])


def test_double_runs_with_and_without_nulls() -> None:
    columns = [("ID", T.BIGINT)] + [(f"V{i}", T.DOUBLE) for i in range(5)] + [("S", T.STRING)]
    schema = sink_schema(columns, True)
    encode = sink_encoder(columns, True, schema, b"")
    for row in ([1, 1.0, 2.0, 3.0, 4.0, 5.0, "x"], [None, 1.0, None, 3.0, None, 5.0, None]):
        record = dict(zip([n for n, _ in columns], row, strict=True))
        assert encode(row) == _fastavro(schema, record)


def test_column_form_only_for_primitive_columns() -> None:
    flat = [("A", T.DOUBLE), ("B", T.STRING)]
    assert sink_encoder(flat, True, sink_schema(flat, True), b"").encode_columns is not None  # type: ignore[attr-defined]
    nested = [("A", T.array(T.DOUBLE))]
    assert sink_encoder(nested, True, sink_schema(nested, True), b"").encode_columns is None  # type: ignore[attr-defined]


def test_decimal_out_of_precision_is_rejected_like_fastavro() -> None:
    with pytest.raises(ValueError, match="precision"):
        decimal_bytes(Decimal("123.4"), 1, 3)
    with pytest.raises(ValueError, match="Scale"):
        decimal_bytes(Decimal("1.234"), 2, 10)


def test_named_references_and_recursion() -> None:
    schema = {
        "type": "record",
        "name": "Outer",
        "namespace": "n",
        "fields": [
            {"name": "a", "type": {"type": "fixed", "name": "Two", "size": 2}},
            {"name": "b", "type": "Two"},
            {"name": "c", "type": ["null", "n.Two"], "default": None},
        ],
    }
    value = {"a": b"ab", "b": b"cd"}
    assert compile_encoder(schema)(value) == _fastavro(schema, value)
    recursive = {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "next", "type": ["null", "Node"]}],
    }
    with pytest.raises(UnsupportedSchema, match="recursive"):
        compile_encoder(recursive)


def test_declared_schema_values_are_prepared_then_encoded() -> None:
    """A test case's JSON value under its declared schema: names case-insensitively, decimals
    from numbers, ints into doubles."""
    schema = {
        "type": "record",
        "name": "r",
        "fields": [
            {
                "name": "Price",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2},
            },
            {"name": "qty", "type": "double"},
        ],
    }
    got = encode_with_schema({"PRICE": "1.50", "QTY": 2}, schema, 7)
    assert got == b"\x00\x00\x00\x00\x07" + _fastavro(
        schema, {"Price": Decimal("1.50"), "qty": 2.0}
    )
