"""PROTOBUF and PROTOBUF_NOSR, as Confluent's `ProtobufSerializer` and ksqlDB write them.

PROTOBUF records are magic byte 0, the 4-byte schema id, the message indexes (zig-zag varints;
the first message is the single byte 0) and the message; PROTOBUF_NOSR records are the bare
message, read and written with the schema ksqlDB derives from the columns. Parsing `.proto`
text and the message-index codec live in `services.common.schemas.protobuf` (shared with the
Schema Registry); this module maps messages to ksqlDB rows and back:

- sinks get Kafka Connect's `ProtobufData` schema: message `ConnectDefault1` (or
  `*_SCHEMA_FULL_NAME`), nested structs `ConnectDefault2`, `ConnectDefault3`…, DECIMAL as
  `confluent.type.Decimal`, TIMESTAMP/DATE/TIME as `google.protobuf.Timestamp`,
  `google.type.Date`, `google.type.TimeOfDay`;
- keys and values are always messages (ksqlDB's PROTOBUF does not unwrap single columns);
- proto3 scalars have no null: a null column is written as the type's default and read back as
  that default, unless `*_PROTOBUF_NULLABLE_REPRESENTATION` is `OPTIONAL` (proto3 `optional`)
  or `WRAPPER` (`google.protobuf.*Value`), which keep nulls.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from services.common.avro.wire import header_of
from services.common.schemas import SchemaError
from services.common.schemas.protobuf import (
    ProtoSchema,
    decode_message_indexes,
    encode_message_indexes,
    parse,
)
from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.formats.base import Deserializer, SerdeError, Serializer, coercer
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.formats.registry import (
    Registered,
    register,
    schema_by_id,
    split_confluent,
    subject_of,
)
from services.ksql_server.types import ColumnDef, SqlType

DEFAULT_NAME = "ConnectDefault"
NULLABLE = ("OPTIONAL", "WRAPPER")
_SCALARS = {
    "BOOLEAN": "bool",
    "INTEGER": "int32",
    "BIGINT": "int64",
    "DOUBLE": "double",
    "STRING": "string",
    "BYTES": "bytes",
}
_WRAPPERS = {
    "BOOLEAN": "google.protobuf.BoolValue",
    "INTEGER": "google.protobuf.Int32Value",
    "BIGINT": "google.protobuf.Int64Value",
    "DOUBLE": "google.protobuf.DoubleValue",
    "STRING": "google.protobuf.StringValue",
    "BYTES": "google.protobuf.BytesValue",
}
_IMPORTS = {
    "DECIMAL": ("confluent/type/decimal.proto", "confluent/meta.proto"),
    "TIMESTAMP": ("google/protobuf/timestamp.proto",),
    "DATE": ("google/type/date.proto",),
    "TIME": ("google/type/timeofday.proto",),
    "WRAPPER": ("google/protobuf/wrappers.proto",),
}
_WELL_KNOWN = {
    "confluent.type.Decimal",
    "google.protobuf.Timestamp",
    "google.type.Date",
    "google.type.TimeOfDay",
}
_WRAPPER_NAMES = {
    "google.protobuf." + n
    for n in (
        "BoolValue",
        "Int32Value",
        "Int64Value",
        "UInt32Value",
        "UInt64Value",
        "FloatValue",
        "DoubleValue",
        "StringValue",
        "BytesValue",
    )
}
_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()


# ----------------------------------------------------------------------------- sink schema


class _Writer:
    """Prints the `.proto` text ksqlDB (Connect's `ProtobufData`) generates for columns."""

    def __init__(self, nullable: str | None) -> None:
        self.nullable = nullable
        self.counter = 0
        self.imports: set[str] = set()

    def message(self, name: str, fields: Sequence[ColumnDef], indent: str) -> list[str]:
        nested: list[str] = []
        body: list[str] = []
        for number, (col, typ) in enumerate(fields, start=1):
            decl = self.field_type(typ, nested, indent + "  ")
            body.append(f"{indent}  {decl} {col} = {number}{self.options(typ)};")
        return [f"{indent}message {name} {{", *nested, *body, f"{indent}}}"]

    def field_type(self, typ: SqlType, nested: list[str], indent: str, top: bool = True) -> str:
        base = typ.base
        if base in _SCALARS:
            if self.nullable == "WRAPPER":
                self.imports.update(_IMPORTS["WRAPPER"])
                return _WRAPPERS[base]
            if self.nullable == "OPTIONAL" and top:
                return "optional " + _SCALARS[base]
            return _SCALARS[base]
        if base in _IMPORTS:
            self.imports.update(_IMPORTS[base])
            return {
                "DECIMAL": "confluent.type.Decimal",
                "TIMESTAMP": "google.protobuf.Timestamp",
                "DATE": "google.type.Date",
                "TIME": "google.type.TimeOfDay",
            }[base]
        if base == "ARRAY":
            item = typ.item or T.STRING
            if item.base in ("ARRAY", "MAP"):
                raise KsqlError(f"The 'PROTOBUF' format does not support type '{typ}'")
            return "repeated " + self.field_type(item, nested, indent, top=False)
        if base == "MAP":
            key = typ.key or T.STRING
            item = typ.item or T.STRING
            if key.base not in ("STRING", "INTEGER", "BIGINT", "BOOLEAN") or item.base in (
                "ARRAY",
                "MAP",
            ):
                raise KsqlError(f"The 'PROTOBUF' format does not support type '{typ}'")
            value = self.field_type(item, nested, indent, top=False)
            return f"map<{_SCALARS[key.base]}, {value}>"
        if base == "STRUCT":
            self.counter += 1
            name = f"{DEFAULT_NAME}{self.counter}"
            nested += self.message(name, list(typ.fields), indent)
            return name
        raise KsqlError(f"The 'PROTOBUF' format does not support type '{base}'")

    @staticmethod
    def options(typ: SqlType) -> str:
        if typ.base != "DECIMAL":
            return ""
        return (
            ' [(confluent.field_meta) = { params: [ { key: "precision", value: '
            f'"{typ.precision}" }}, {{ key: "scale", value: "{typ.scale}" }} ] }}]'
        )


def sink_schema_text(
    columns: Sequence[ColumnDef], full_name: str | None = None, nullable: str | None = None
) -> str:
    """The `.proto` file ksqlDB registers (and PROTOBUF_NOSR uses) for these columns."""
    writer = _Writer(nullable)
    writer.counter = 1
    package, _, name = (full_name or "").rpartition(".")
    lines = writer.message(name or f"{DEFAULT_NAME}1", columns, "")
    head = ['syntax = "proto3";', ""]
    if package:
        head += [f"package {package};", ""]
    if writer.imports:
        head += [f'import "{i}";' for i in sorted(writer.imports)] + [""]
    return "\n".join(head + lines) + "\n"


@functools.lru_cache(maxsize=256)
def _parsed(text: str, references: tuple[tuple[str, str], ...] = ()) -> ProtoSchema:
    try:
        return parse(text, dict(references))
    except SchemaError as exc:
        raise KsqlError(f"Invalid Protobuf schema: {exc}") from exc


def parse_registered(found: Registered) -> ProtoSchema:
    """A registered schema parsed (cached by text: parsing runs protoc)."""
    return _parsed(found.text, tuple(sorted(found.references.items())))


# ----------------------------------------------------------------------------- inference

_INT32 = (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32)
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def sql_type_of_field(fd: FieldDescriptor, depth: int = 0) -> SqlType:
    """A message field → ksqlDB type (Connect's `ProtobufData.toConnectSchema` rules)."""
    if depth > 32:
        raise KsqlError("Protobuf schema nested too deeply")
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        entry = fd.message_type
        key = _scalar_type(entry.fields_by_name["key"])
        return T.map_of(key, sql_type_of_field(entry.fields_by_name["value"], depth + 1))
    one = _single_type(fd, depth)
    return T.array(one) if _is_repeated(fd) else one


def _is_repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


def _scalar_type(fd: FieldDescriptor) -> SqlType:
    t = fd.type
    if t in _INT32:
        return T.INTEGER
    if t in _FLOATS:
        return T.DOUBLE
    if t == FieldDescriptor.TYPE_BOOL:
        return T.BOOLEAN
    if t == FieldDescriptor.TYPE_STRING or t == FieldDescriptor.TYPE_ENUM:
        return T.STRING
    if t == FieldDescriptor.TYPE_BYTES:
        return T.BYTES
    return T.BIGINT  # int64, uint32/64, fixed32/64, sint64, sfixed64


def _single_type(fd: FieldDescriptor, depth: int) -> SqlType:
    msg = fd.message_type
    if msg is None:
        return _scalar_type(fd)
    name = msg.full_name
    if name == "confluent.type.Decimal":
        params = _field_meta(fd)
        return T.decimal(int(params.get("precision", 64)), int(params.get("scale", 0)))
    if name == "google.protobuf.Timestamp":
        return T.TIMESTAMP
    if name == "google.type.Date":
        return T.DATE
    if name == "google.type.TimeOfDay":
        return T.TIME
    if name in _WRAPPER_NAMES:
        return _scalar_type(msg.fields_by_name["value"])
    return message_struct(msg, depth + 1)


def _field_meta(fd: FieldDescriptor) -> dict[str, str]:
    """`(confluent.field_meta).params` of a field (DECIMAL precision and scale)."""
    out: dict[str, str] = {}
    for ext, value in fd.GetOptions().ListFields():
        if ext.full_name == "confluent.field_meta":
            params = value.params
            # Confluent's meta.proto declares `map<string, string> params`; a map iterates
            # its keys, the entry form (older descriptors) its key/value messages
            for p in params:
                if isinstance(p, str):
                    out[p] = params[p]
                else:
                    out[p.key] = p.value
    return out


def message_struct(msg: Descriptor, depth: int = 0) -> SqlType:
    return T.struct([(f.name.upper(), sql_type_of_field(f, depth)) for f in msg.fields])


def columns_of(found: Registered, full_name: str | None) -> list[ColumnDef]:
    """A source's columns: the fields of the message `full_name` (the first by default)."""
    schema = parse_registered(found)
    try:
        msg = schema.message(full_name)
    except SchemaError as exc:
        raise KsqlError(
            f"Schema with ID {found.schema_id} does not contain message {full_name}"
            if full_name
            else str(exc)
        ) from exc
    return list(message_struct(msg).fields)


# ----------------------------------------------------------------------------- message → row


def _reader(fd: FieldDescriptor) -> Callable[[Message], Any]:
    """A function reading field `fd` from a message as an engine value."""
    name = fd.name
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        value_fd = fd.message_type.fields_by_name["value"]
        conv = _value_converter(value_fd)
        return lambda m: {k: conv(v) for k, v in getattr(m, name).items()}
    conv = _value_converter(fd)
    if _is_repeated(fd):
        return lambda m: [conv(v) for v in getattr(m, name)]
    if fd.message_type is not None or fd.has_presence:
        return lambda m: conv(getattr(m, name)) if m.HasField(name) else None
    return lambda m: conv(getattr(m, name))


def _value_converter(fd: FieldDescriptor) -> Callable[[Any], Any]:
    """One value of field `fd` (an element, for a repeated one) → engine value."""
    msg = fd.message_type
    if msg is None:
        if fd.type == FieldDescriptor.TYPE_ENUM:
            enum = fd.enum_type
            return lambda v: enum.values_by_number[v].name if v in enum.values_by_number else v
        return lambda v: v
    name = msg.full_name
    if name == "confluent.type.Decimal":
        return lambda v: Decimal(int.from_bytes(v.value, "big", signed=True)).scaleb(-v.scale)
    if name == "google.protobuf.Timestamp":
        return lambda v: v.seconds * 1000 + v.nanos // 1_000_000
    if name == "google.type.Date":
        import datetime

        def date(v: Any) -> int | None:
            if v.year == 0:
                return None
            return datetime.date(v.year, v.month or 1, v.day or 1).toordinal() - _EPOCH_ORDINAL

        return date
    if name == "google.type.TimeOfDay":
        return lambda v: ((v.hours * 60 + v.minutes) * 60 + v.seconds) * 1000 + v.nanos // 10**6
    if name in _WRAPPER_NAMES:
        return lambda v: v.value
    return _struct_reader(msg)


def _struct_reader(msg: Descriptor) -> Callable[[Message], dict[str, Any]]:
    """A message → a STRUCT value: every field, by its upper-cased name."""
    fields = [(f.name.upper(), _reader(f)) for f in msg.fields]
    return lambda v: {n: r(v) for n, r in fields}


def decode_record(registry: Any, data: bytes) -> dict[str, Any]:
    """A PROTOBUF record as a dict of every field of its writer's message (defaults included),
    whatever a source's columns are: what a consumer with the writer's schema sees."""
    from google.protobuf import message_factory

    schema_id, rest = split_confluent(data, "PROTOBUF")
    indexes, pos = decode_message_indexes(rest)
    msg = parse_registered(schema_by_id(registry, schema_id)).message_at(indexes)
    m = message_factory.GetMessageClass(msg)()
    m.ParseFromString(bytes(rest[pos:]))
    return _struct_reader(msg)(m)


def _row_reader(msg: Descriptor, columns: Sequence[ColumnDef]) -> Callable[[Message], list[Any]]:
    """Message → the columns' values (fields matched by name, case-insensitively)."""
    by_upper = {f.name.upper(): f for f in msg.fields}
    parts: list[tuple[Callable[[Message], Any] | None, Callable[[Any], Any]]] = []
    for name, typ in columns:
        fd = msg.fields_by_name.get(name) or by_upper.get(name.upper())
        parts.append((_reader(fd) if fd is not None else None, coercer(typ)))

    def read(m: Message) -> list[Any]:
        out = []
        for reader, conv in parts:
            v = None if reader is None else reader(m)
            out.append(None if v is None else conv(v))
        return out

    return read


# ----------------------------------------------------------------------------- row → message


def _writer(fd: FieldDescriptor) -> Callable[[Message, Any], None]:
    """A function setting field `fd` of a message from an engine value (None: left unset)."""
    name = fd.name
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        value_fd = fd.message_type.fields_by_name["value"]
        key_fd = fd.message_type.fields_by_name["key"]
        scalar_value = value_fd.message_type is None
        fill = None if scalar_value else _filler(value_fd)
        value_conv = _scalar_to_proto(value_fd)
        key_conv = _scalar_to_proto(key_fd)

        def set_map(m: Message, v: dict[Any, Any]) -> None:
            target = getattr(m, name)
            for k, x in v.items():
                if k is None:
                    continue
                if fill is None:
                    target[key_conv(k)] = value_conv(x)
                elif x is not None:
                    fill(target[key_conv(k)], x)

        return set_map
    if _is_repeated(fd):
        if fd.message_type is None:
            conv = _scalar_to_proto(fd)
            return lambda m, v: getattr(m, name).extend(conv(x) for x in v)
        fill_item = _filler(fd)

        def set_repeated(m: Message, v: list[Any]) -> None:
            target = getattr(m, name)
            for x in v:
                item = target.add()
                if x is not None:
                    fill_item(item, x)

        return set_repeated
    if fd.message_type is None:
        conv = _scalar_to_proto(fd)

        def set_scalar(m: Message, v: Any) -> None:
            setattr(m, name, conv(v))

        return set_scalar
    fill = _filler(fd)
    return lambda m, v: fill(getattr(m, name), v)


def _scalar_to_proto(fd: FieldDescriptor) -> Callable[[Any], Any]:
    t = fd.type
    if t in _FLOATS:
        return lambda v: 0.0 if v is None else float(v)
    if t == FieldDescriptor.TYPE_STRING:
        return lambda v: "" if v is None else str(v)
    if t == FieldDescriptor.TYPE_BYTES:
        return lambda v: b"" if v is None else bytes(v)
    if t == FieldDescriptor.TYPE_BOOL:
        return lambda v: bool(v)
    if t == FieldDescriptor.TYPE_ENUM:
        enum = fd.enum_type
        return lambda v: enum.values_by_name[v].number if isinstance(v, str) else int(v or 0)
    return lambda v: 0 if v is None else int(v)


def _filler(fd: FieldDescriptor) -> Callable[[Message, Any], None]:
    """Fill a sub-message (of field `fd`) from an engine value."""
    msg = fd.message_type
    name = msg.full_name
    if name == "confluent.type.Decimal":
        params = _field_meta(fd)

        def dec(m: Any, v: Any) -> None:
            d = v if isinstance(v, Decimal) else Decimal(str(v))
            sign, digits, exp = d.as_tuple()
            scale = -int(exp)
            unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
            m.value = unscaled.to_bytes(
                max(1, (unscaled.bit_length() + 8) // 8), "big", signed=True
            )
            m.precision = int(params.get("precision", 0) or len(digits))
            m.scale = scale

        return dec
    if name == "google.protobuf.Timestamp":

        def ts(m: Any, v: int) -> None:
            m.seconds, ms = divmod(int(v), 1000)
            m.nanos = ms * 1_000_000

        return ts
    if name == "google.type.Date":
        import datetime

        def date(m: Any, v: int) -> None:
            d = datetime.date.fromordinal(int(v) + _EPOCH_ORDINAL)
            m.year, m.month, m.day = d.year, d.month, d.day

        return date
    if name == "google.type.TimeOfDay":

        def tod(m: Any, v: int) -> None:
            secs, ms = divmod(int(v), 1000)
            m.hours, rest = divmod(secs, 3600)
            m.minutes, m.seconds = divmod(rest, 60)
            m.nanos = ms * 1_000_000

        return tod
    if name in _WRAPPER_NAMES:
        conv = _scalar_to_proto(msg.fields_by_name["value"])

        def wrapper(m: Any, v: Any) -> None:
            m.value = conv(v)

        return wrapper
    return _message_filler(msg)


def _message_filler(msg: Descriptor) -> Callable[[Message, Any], None]:
    """Fill a message of type `msg` from a dict (field names matched case-insensitively)."""
    fields = [(f.name, f.name.upper(), _writer(f)) for f in msg.fields]

    def struct_(m: Any, v: dict[str, Any]) -> None:
        m.SetInParent()
        upper = None
        for fname, up, set_ in fields:
            x = v.get(fname)
            if x is None:
                if upper is None:
                    upper = {str(k).upper(): y for k, y in v.items()}
                x = upper.get(up)
            if x is not None:
                set_(m, x)

    return struct_


def _row_writer(msg: Descriptor, columns: Sequence[ColumnDef]) -> Callable[[Sequence[Any]], bytes]:
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(msg)
    by_upper = {f.name.upper(): f for f in msg.fields}
    setters = []
    for i, (name, _t) in enumerate(columns):
        fd = msg.fields_by_name.get(name) or by_upper.get(name.upper())
        if fd is None:
            raise KsqlError(f"Protobuf message {msg.full_name} has no field for column {name}")
        setters.append((i, _writer(fd)))

    def write(row: Sequence[Any]) -> bytes:
        m = cls()
        for i, set_ in setters:
            v = row[i]
            if v is not None:
                set_(m, v)
        return m.SerializeToString()  # type: ignore[no-any-return]

    return write


def encode_json(
    value: Any, text: str, references: dict[str, str], full_name: str | None, schema_id: int
) -> bytes:
    """A JSON-like value (a test's input) as a PROTOBUF record of `text`'s message
    `full_name` (the first by default); a scalar fills a one-field message."""
    schema = _parsed(text, tuple(sorted(references.items())))
    msg = schema.message(full_name)
    if not isinstance(value, dict) and len(msg.fields) == 1:
        value = {msg.fields[0].name: value}
    from google.protobuf import message_factory

    m = message_factory.GetMessageClass(msg)()
    _message_filler(msg)(m, value)
    prefix = header_of(schema_id) + encode_message_indexes(schema.message_index(full_name))
    return prefix + m.SerializeToString()


# ----------------------------------------------------------------------------- serdes


def _check_wrap(wrap: bool) -> None:
    if not wrap:
        raise KsqlError("Format 'PROTOBUF' does not support 'WRAP_SINGLE_VALUE' set to 'false'.")


def protobuf_deserializer(
    columns: Sequence[ColumnDef], registry: Any, fmt: FormatInfo
) -> Deserializer:
    """PROTOBUF: the writer's schema by the record's id, its message by the indexes."""
    readers: dict[tuple[int, tuple[int, ...]], Callable[[bytes], list[Any]]] = {}

    def reader_for(schema_id: int, indexes: list[int]) -> Callable[[bytes], list[Any]]:
        key = (schema_id, tuple(indexes))
        found = readers.get(key)
        if found is None:
            schema = parse_registered(schema_by_id(registry, schema_id))
            msg = schema.message_at(indexes)
            found = _message_reader(msg, columns)
            if len(readers) < 1024:
                readers[key] = found
        return found

    def deser(data: bytes | None) -> list[Any] | None:
        if data is None:
            return None
        schema_id, rest = split_confluent(data, "PROTOBUF")
        try:
            indexes, pos = decode_message_indexes(rest)
            return reader_for(schema_id, indexes)(bytes(rest[pos:]))
        except SerdeError:
            raise
        except (SchemaError, KsqlError) as exc:
            raise SerdeError(f"Failed to deserialize PROTOBUF: {exc}") from exc
        except Exception as exc:
            raise SerdeError(
                f"Failed to deserialize PROTOBUF: schema {schema_id} unavailable: {exc}"
            ) from exc

    return deser


def _message_reader(msg: Descriptor, columns: Sequence[ColumnDef]) -> Callable[[bytes], list[Any]]:
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(msg)
    read = _row_reader(msg, columns)

    def parse_body(body: bytes) -> list[Any]:
        m = cls()
        try:
            m.ParseFromString(body)
        except DecodeError as exc:
            raise SerdeError(f"Failed to deserialize PROTOBUF: {exc}") from exc
        return read(m)

    return parse_body


def protobuf_nosr_deserializer(columns: Sequence[ColumnDef], fmt: FormatInfo) -> Deserializer:
    """PROTOBUF_NOSR: the bare message, read with the schema the columns give."""
    schema = _parsed(sink_schema_text(columns, fmt.schema_name, fmt.nullable))
    parse_body = _message_reader(schema.message(), columns)

    def deser(data: bytes | None) -> list[Any] | None:
        return None if data is None else parse_body(data)

    return deser


def protobuf_serializer(
    columns: Sequence[ColumnDef], registry: Any, topic: str, is_key: bool, fmt: FormatInfo
) -> Serializer:
    """PROTOBUF: register the sink's schema (or use SCHEMA_ID's), header + indexes + message."""
    if fmt.schema_id is not None:
        found = schema_by_id(registry, fmt.schema_id)
        schema = parse_registered(found)
        schema_id = fmt.schema_id
        full_name = fmt.schema_name
    else:
        text = sink_schema_text(columns, fmt.schema_name, fmt.nullable)
        schema = _parsed(text)
        schema_id = register(registry, subject_of(topic, is_key), text, "PROTOBUF")
        full_name = None
    msg = schema.message(full_name)
    prefix = header_of(schema_id) + encode_message_indexes(schema.message_index(full_name))
    write = _row_writer(msg, columns)
    return lambda row: prefix + write(row)


def protobuf_nosr_serializer(columns: Sequence[ColumnDef], fmt: FormatInfo) -> Serializer:
    schema = _parsed(sink_schema_text(columns, fmt.schema_name, fmt.nullable))
    return _row_writer(schema.message(), columns)


__all__ = [
    "columns_of",
    "protobuf_deserializer",
    "protobuf_nosr_deserializer",
    "protobuf_nosr_serializer",
    "protobuf_serializer",
    "sink_schema_text",
]
