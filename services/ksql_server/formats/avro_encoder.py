"""The one Avro encoder of the KSQL server: Python source generated from the writer schema.

Every Avro value the server writes goes through `compile_encoder`: the sinks' records and
unwrapped values (`avro.avro_serializer`) and the records a test declares with its own
registered schema (`avro.encode_with_schema`). The schema is walked once, at compile time, into
a straight-line function: each field's union branch, zig-zag varint, `struct.pack` or UTF-8
bytes appended to one list, joined once. No dict is built for a row and no schema is walked
per record (fastavro's schemaless writer does both: ~3x slower on the pipeline's 34 fields).

Every type of the Avro 1.11 spec is covered: the primitives, records (nested), arrays, maps,
enums, fixed, unions (null-first, null-last and general ones, whose branch is picked at run
time as fastavro picks it for distinguishable branches), and the logical types `decimal` (bytes
and fixed), `date`, `time-millis`/`-micros`, `timestamp-millis`/`-micros` and `uuid`. Records
are taken as rows (the engine's sequences, top level) or as dicts (nested STRUCT values; a
missing field takes its default). The bytes are fastavro's, byte for byte: the hypothesis test
in tests/test_ksql_avro_encoder.py checks it on random schemas and values; fastavro is that
test's reference and nothing else's.

A batch of primitive columns (the column-wise path of the pipeline's query) is encoded by the
same schema's compiled kernel (`columnar.avro_columns_encoder`), attached to the row encoder as
`encode_columns`.
"""

from __future__ import annotations

import datetime as _dt
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from services.common.schemas.protobuf import zigzag_varint
from services.ksql_server.errors import UnsupportedError

Encoder = Callable[[Any], bytes]

_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
_EPOCH_DAY = _dt.date(1970, 1, 1)
_DEFAULT_PRECISION = 64
"""A decimal schema without `precision` (invalid Avro, but Connect writes it): Connect's
default, as ksqlDB reads such a schema."""
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class UnsupportedSchema(UnsupportedError):
    """A schema the generator cannot compile (a recursive named type, an unknown type)."""


# the encodings of the zig-zagged values 0…32767, i.e. of the ints -16384…16383
_TABLE = [zigzag_varint((z >> 1) ^ -(z & 1)) for z in range(1 << 15)]


def zigzag(n: int) -> bytes:
    """Avro's int/long: zig-zag then base-128 varint (a table lookup for small values)."""
    z = (n << 1) ^ (n >> 63)
    return _TABLE[z] if 0 <= z < 32768 else zigzag_varint(n)


def _decimal_unscaled(value: Any, scale: int, precision: int) -> int:
    """The unscaled integer of a decimal, with fastavro's precision and scale checks."""
    d = value if isinstance(value, Decimal) else Decimal(value)
    sign, digits, exp = d.as_tuple()
    if len(digits) > precision:
        raise ValueError("The decimal precision is bigger than allowed by schema")
    delta = int(exp) + scale
    if delta < 0:
        raise ValueError("Scale provided in schema does not match the decimal")
    unscaled = int("".join(map(str, digits)) or "0") * 10**delta
    return -unscaled if sign else unscaled


def decimal_bytes(value: Any, scale: int, precision: int) -> bytes:
    """A `bytes` decimal, length-prefixed: big-endian two's complement of the unscaled value,
    sized as fastavro sizes it (from the magnitude's bit length)."""
    unscaled = _decimal_unscaled(value, scale, precision)
    size = (abs(unscaled).bit_length() + 8) // 8
    return zigzag(size) + unscaled.to_bytes(size, "big", signed=True)


def decimal_fixed(value: Any, scale: int, precision: int, size: int) -> bytes:
    """A `fixed` decimal: the unscaled value sign-extended to the fixed size."""
    return _decimal_unscaled(value, scale, precision).to_bytes(size, "big", signed=True)


def _days(v: Any) -> int:
    return (v - _EPOCH_DAY).days if isinstance(v, _dt.date) else v  # type: ignore[no-any-return]


def _time_of_day(v: Any, per_second: int) -> int:
    if isinstance(v, _dt.time):
        seconds = (v.hour * 60 + v.minute) * 60 + v.second
        return seconds * per_second + v.microsecond * per_second // 1_000_000
    return v  # type: ignore[no-any-return]


def _instant(v: Any, per_second: int) -> int:
    if isinstance(v, _dt.datetime) and v.tzinfo is not None:
        delta = v - _EPOCH
        return (delta.days * 86400 + delta.seconds) * per_second + (
            delta.microseconds * per_second // 1_000_000
        )
    return v  # type: ignore[no-any-return]


class _Generator:
    """Emits the body of one encoder; `ns` holds the constants the generated code names."""

    def __init__(self, named: dict[str, Any] | None = None) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, Any] = {
            "_z": zigzag,
            "_D": _DOUBLE,
            "_F": _FLOAT,
            "_db": decimal_bytes,
            "_df": decimal_fixed,
            "_days": _days,
            "_tod": _time_of_day,
            "_inst": _instant,
            "_UUID": uuid.UUID,
        }
        self.named: dict[str, Any] = dict(named or {})
        self._counter = 0
        self._expanding: set[str] = set()

    def var(self, prefix: str = "x") -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def const(self, value: Any) -> str:
        name = self.var("_c")
        self.ns[name] = value
        return name

    def emit(self, line: str, depth: int) -> None:
        self.lines.append("    " * depth + line)

    # ------------------------------------------------------------------ schema resolution

    def resolve(self, schema: Any, namespace: str = "") -> Any:
        """A named reference replaced by its definition; a definition recorded by name."""
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return schema
            for name in (schema, f"{namespace}.{schema}" if namespace else schema):
                if name in self.named:
                    return self.named[name]
            raise UnsupportedSchema(f"unknown Avro type {schema!r}")
        if isinstance(schema, dict) and schema.get("type") in ("record", "error", "enum", "fixed"):
            full = _full_name(schema, namespace)
            self.named.setdefault(full, schema)
            self.named.setdefault(schema["name"], schema)
        return schema

    # ------------------------------------------------------------------ values

    def value(self, schema: Any, x: str, depth: int, namespace: str = "") -> None:
        """Append the encoding of the value named `x` (never None unless the type is null)."""
        schema = self.resolve(schema, namespace)
        if isinstance(schema, list):
            self.union(schema, x, depth, namespace)
            return
        if isinstance(schema, str):
            self.primitive(schema, None, x, depth)
            return
        t = schema.get("type")
        if isinstance(t, (list, dict)) or (isinstance(t, str) and t not in _COMPLEX):
            if isinstance(t, str) and t in _PRIMITIVES:
                self.primitive(t, schema, x, depth)
            else:
                self.value(t, x, depth, namespace)
            return
        if t in ("record", "error"):
            self.record(schema, x, depth, namespace, row=False)
        elif t == "array":
            self.array(schema, x, depth, namespace)
        elif t == "map":
            self.map(schema, x, depth, namespace)
        elif t == "enum":
            index = {s: zigzag(i) for i, s in enumerate(schema["symbols"])}
            self.emit(f"a({self.const(index)}[{x}])", depth)
        elif t == "fixed":
            self.fixed(schema, x, depth)
        else:
            raise UnsupportedSchema(f"unknown Avro type {t!r}")

    def primitive(self, t: str, schema: dict[str, Any] | None, x: str, depth: int) -> None:
        logical = schema.get("logicalType") if schema else None
        if t == "null":
            return
        if t == "boolean":
            self.emit(f"a(b'\\x01' if {x} else b'\\x00')", depth)
        elif t in ("int", "long"):
            self.emit(f"a(_z({_logical_int(logical, x)}))", depth)
        elif t == "double":
            self.emit(f"a(_D.pack({x}))", depth)
        elif t == "float":
            self.emit(f"a(_F.pack({x}))", depth)
        elif t == "string":
            text = f"str({x})" if logical == "uuid" else x
            b = self.var("b")
            self.emit(f"{b} = {text}.encode()", depth)
            self.emit(f"a(_z(len({b})) + {b})", depth)
        elif t == "bytes" and logical == "decimal":
            assert schema is not None
            scale, precision = (
                int(schema.get("scale", 0)),
                int(schema.get("precision", _DEFAULT_PRECISION)),
            )
            self.emit(f"a(_db({x}, {scale}, {precision}))", depth)
        elif t == "bytes":
            self.emit(f"a(_z(len({x})) + bytes({x}))", depth)
        else:
            raise UnsupportedSchema(f"unknown Avro type {t!r}")

    def fixed(self, schema: dict[str, Any], x: str, depth: int) -> None:
        size = int(schema["size"])
        if schema.get("logicalType") == "decimal":
            scale, precision = (
                int(schema.get("scale", 0)),
                int(schema.get("precision", _DEFAULT_PRECISION)),
            )
            self.emit(f"a(_df({x}, {scale}, {precision}, {size}))", depth)
            return
        self.emit(f"if len({x}) != {size}:", depth)
        self.emit(f"    raise ValueError('fixed of size {size} given ' + str(len({x})))", depth)
        self.emit(f"a(bytes({x}))", depth)

    def record(self, schema: dict[str, Any], x: str, depth: int, namespace: str, row: bool) -> None:
        """A record from a dict (`x.get(name, default)`) or, for the top level, a row
        (`x[i]`, one item per field)."""
        full = _full_name(schema, namespace)
        if full in self._expanding:
            raise UnsupportedSchema(f"recursive Avro type {full!r}")
        self._expanding.add(full)
        inner = full.rpartition(".")[0]
        fields = schema["fields"]
        i = 0
        while i < len(fields):
            run = _double_run(fields, i)
            if row and run > 1:
                self.double_run(x, i, run, depth)
                i += run
                continue
            field = fields[i]
            if row:
                got = f"{x}[{i}]"
            else:
                default = self.const(field.get("default"))
                got = f"{x}.get({field['name']!r}, {default})"
            if row and _optional_inline(field["type"]):  # `v[i]` twice beats a temporary
                self.value(field["type"], got, depth, inner)
            else:
                v = self.var()
                self.emit(f"{v} = {got}", depth)
                self.value(field["type"], v, depth, inner)
            i += 1
        self._expanding.discard(full)

    def double_run(self, x: str, start: int, length: int, depth: int) -> None:
        """Consecutive `["null", "double"]` fields of a row: one struct.pack when none is null
        (the pipeline's records are runs of 28 such fields)."""
        packer = self.const(struct.Struct("<" + "Bd" * length))
        items = [f"{x}[{k}]" for k in range(start, start + length)]
        self.emit(f"if None not in ({', '.join(items)},):", depth)
        self.emit(f"    a({packer}.pack({', '.join(f'2, {i}' for i in items)}))", depth)
        self.emit("else:", depth)
        for item in items:
            self.emit(f"    a(b'\\x00' if {item} is None else b'\\x02' + _D.pack({item}))", depth)

    def array(self, schema: dict[str, Any], x: str, depth: int, namespace: str) -> None:
        item = self.var("i")
        self.emit(f"if {x}:", depth)
        self.emit(f"    a(_z(len({x})))", depth)
        self.emit(f"    for {item} in {x}:", depth)
        before = len(self.lines)
        self.value(schema["items"], item, depth + 2, namespace)
        if len(self.lines) == before:
            self.emit("pass", depth + 2)
        self.emit("a(b'\\x00')", depth)

    def map(self, schema: dict[str, Any], x: str, depth: int, namespace: str) -> None:
        key, item, b = self.var("k"), self.var("i"), self.var("b")
        self.emit(f"if {x}:", depth)
        self.emit(f"    a(_z(len({x})))", depth)
        self.emit(f"    for {key}, {item} in {x}.items():", depth)
        self.emit(f"        {b} = {key}.encode()", depth)
        self.emit(f"        a(_z(len({b})) + {b})", depth)
        self.value(schema["values"], item, depth + 2, namespace)
        self.emit("a(b'\\x00')", depth)

    def union(self, branches: list[Any], x: str, depth: int, namespace: str) -> None:
        resolved = [self.resolve(b, namespace) for b in branches]
        kinds = [_kind(b) for b in resolved]
        if len(kinds) == 2 and "null" in kinds:  # ksqlDB's optional fields: no run-time search
            null = kinds.index("null")
            other = 1 - null
            expr = _inline(resolved[other], x)
            if expr is not None:  # one line, no branch statement: the common sink field
                self.emit(
                    f"a({zigzag(null)!r} if {x} is None else {zigzag(other)!r} + {expr})", depth
                )
                return
            self.emit(f"if {x} is None:", depth)
            self.emit(f"    a({zigzag(null)!r})", depth)
            self.emit("else:", depth)
            self.emit(f"    a({zigzag(other)!r})", depth)
            before = len(self.lines)
            self.value(resolved[other], x, depth + 1, namespace)
            if len(self.lines) == before:
                self.emit("pass", depth + 1)
            return
        keyword = "if"
        for index in _branch_order(kinds):
            test = _KIND_TESTS[kinds[index]].format(x=x)
            if kinds[index] == "enum":
                test = f"{test} and {x} in {self.const(set(resolved[index]['symbols']))}"
            self.emit(f"{keyword} {test}:", depth)
            self.emit(f"    a({zigzag(index)!r})", depth)
            before = len(self.lines)
            self.value(resolved[index], x, depth + 1, namespace)
            if len(self.lines) == before:
                self.emit("pass", depth + 1)
            keyword = "elif"
        self.emit("else:", depth)
        message = self.const(f"is not in the union {kinds}")
        self.emit(f"    raise ValueError(repr({x}) + ' ' + {message})", depth)

    def compile(self, name: str) -> Callable[..., bytes]:
        source = "\n".join(self.lines)
        exec(compile(source, f"<avro-encoder {name}>", "exec"), self.ns)
        fn: Callable[..., bytes] = self.ns["_enc"]
        fn.__doc__ = source  # the generated code, for a reader in a debugger
        return fn


_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_COMPLEX = ("record", "error", "enum", "array", "map", "fixed")

_KIND_TESTS = {
    "null": "{x} is None",
    "boolean": "isinstance({x}, bool)",
    "int": "isinstance({x}, int) and not isinstance({x}, bool) and -2**31 <= {x} < 2**31",
    "long": "isinstance({x}, int) and not isinstance({x}, bool) and -2**63 <= {x} < 2**63",
    "float": "isinstance({x}, (int, float)) and not isinstance({x}, bool)",
    "double": "isinstance({x}, (int, float)) and not isinstance({x}, bool)",
    "string": "isinstance({x}, str)",
    "bytes": "isinstance({x}, (bytes, bytearray))",
    "fixed": "isinstance({x}, (bytes, bytearray))",
    "enum": "isinstance({x}, str)",
    "array": "isinstance({x}, (list, tuple))",
    "map": "isinstance({x}, dict)",
    "record": "isinstance({x}, dict)",
    "decimal": "isinstance({x}, Decimal)",
}


def _kind(schema: Any) -> str:
    """The run-time test a union branch is chosen by."""
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        raise UnsupportedSchema("a union directly inside a union")
    t = schema.get("type")
    if schema.get("logicalType") == "decimal":
        return "decimal"
    if t == "error":
        return "record"
    return t if isinstance(t, str) and (t in _PRIMITIVES or t in _COMPLEX) else _kind(t)


def _branch_order(kinds: list[str]) -> list[int]:
    """Branches in the order they are tried: as written, except that a Python float prefers
    `double` to an earlier `float` (fastavro's rule, so no precision is lost)."""
    order = list(range(len(kinds)))
    if "double" in kinds and "float" in kinds:
        order.remove(kinds.index("double"))
        order.insert(kinds.index("float"), kinds.index("double"))
    return order


def _optional_inline(schema: Any) -> bool:
    """A `["null", number or boolean]` union: encoded by one expression."""
    return (
        isinstance(schema, list)
        and len(schema) == 2
        and "null" in schema
        and _inline(schema[1 - schema.index("null")], "x") is not None
    )


def _inline(schema: Any, x: str) -> str | None:
    """The encoding of a number or boolean as one expression, or None for other types."""
    t = schema if isinstance(schema, str) else schema.get("type")
    if not isinstance(t, str) or (not isinstance(schema, str) and "logicalType" in schema):
        return None
    if t in ("int", "long"):
        return f"_z({x})"
    if t == "double":
        return f"_D.pack({x})"
    if t == "float":
        return f"_F.pack({x})"
    if t == "boolean":
        return f"(b'\\x01' if {x} else b'\\x00')"
    return None


def _logical_int(logical: str | None, x: str) -> str:
    if logical == "date":
        return f"_days({x})"
    if logical in ("time-millis", "time-micros"):
        return f"_tod({x}, {1000 if logical == 'time-millis' else 1_000_000})"
    if logical in ("timestamp-millis", "timestamp-micros"):
        return f"_inst({x}, {1000 if logical == 'timestamp-millis' else 1_000_000})"
    return x


def _full_name(schema: dict[str, Any], namespace: str) -> str:
    name = str(schema["name"])
    if "." in name:
        return name
    space = schema.get("namespace", namespace)
    return f"{space}.{name}" if space else name


def _double_run(fields: list[dict[str, Any]], start: int) -> int:
    """How many fields from `start` on are `["null", "double"]`."""
    k = start
    while k < len(fields) and fields[k]["type"] == ["null", "double"]:
        k += 1
    return k - start


def compile_encoder(schema: Any, header: bytes = b"", row: bool = False) -> Encoder:
    """The encoder of `schema` (parsed JSON): value → `header` + Avro binary body.

    With `row`, a record schema takes a sequence with one item per field (the engine's rows)
    instead of a dict. Raises UnsupportedSchema for a schema it cannot compile."""
    gen = _Generator()
    gen.ns["_H"] = header
    gen.ns["Decimal"] = Decimal
    gen.emit("def _enc(v):", 0)
    gen.emit("o = [_H]", 1)
    gen.emit("a = o.append", 1)
    resolved = gen.resolve(schema)
    if row:
        if not (isinstance(resolved, dict) and resolved.get("type") in ("record", "error")):
            raise UnsupportedSchema("a row encoder needs a record schema")
        gen.record(resolved, "v", 1, "", row=True)
    else:
        gen.value(resolved, "v", 1)
    gen.emit("return b''.join(o)", 1)
    return gen.compile(
        _full_name(resolved, "") if isinstance(resolved, dict) and "name" in resolved else "value"
    )
