"""Protobuf compatibility with the rules of Confluent's registry.

Confluent compares two `.proto` files (`protobuf/diff/SchemaDiff.java`, `MessageSchemaDiff`,
`FieldSchemaDiff`, `OneOfDiff` in confluentinc/schema-registry) by listing their differences,
matching messages by name and fields by number; a change is compatible when every difference
is in COMPATIBLE_CHANGES. So adding or removing an optional field, renaming a field, moving a
message (its message index changes, but a record carries the index of its own schema id), and
enum changes are compatible; removing or renaming a message, changing a field's kind (scalar,
message, map), its scalar group (int32/int64/uint32/uint64/bool/enum share one; sint*, fixed32,
fixed64, float, double, string/bytes are groups of their own), the message type it names, a
numeric field's label (singular to repeated), adding or removing a required field, removing a
field from a oneof, or moving several existing fields into one oneof are not. BACKWARD compares
(old, new), FORWARD (new, old).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from google.protobuf.descriptor_pb2 import DescriptorProto as DP
from google.protobuf.descriptor_pb2 import FieldDescriptorProto as FP
from google.protobuf.descriptor_pb2 import FileDescriptorProto as FDP

from services.common.schemas import SchemaError
from services.common.schemas.protobuf import ProtoSchema

COMPATIBLE_CHANGES = frozenset(
    {
        "MESSAGE_ADDED",
        "MESSAGE_MOVED",
        "ENUM_ADDED",
        "ENUM_REMOVED",
        "ENUM_CONST_ADDED",
        "ENUM_CONST_CHANGED",
        "ENUM_CONST_REMOVED",
        "FIELD_ADDED",
        "FIELD_REMOVED",
        "FIELD_NAME_CHANGED",
        "FIELD_STRING_OR_BYTES_LABEL_CHANGED",
        "ONEOF_ADDED",
        "ONEOF_REMOVED",
        "ONEOF_FIELD_ADDED",
    }
)
"""Confluent's `SchemaDiff.COMPATIBLE_CHANGES` for Protobuf."""

MAX_STEPS = 50_000
_GROUPS = {
    FP.TYPE_INT32: "GENERAL_NUMBER",
    FP.TYPE_INT64: "GENERAL_NUMBER",
    FP.TYPE_UINT32: "GENERAL_NUMBER",
    FP.TYPE_UINT64: "GENERAL_NUMBER",
    FP.TYPE_BOOL: "GENERAL_NUMBER",
    FP.TYPE_ENUM: "GENERAL_NUMBER",
    FP.TYPE_SINT32: "SIGNED_NUMBER",
    FP.TYPE_SINT64: "SIGNED_NUMBER",
    FP.TYPE_STRING: "STRING_OR_BYTES",
    FP.TYPE_BYTES: "STRING_OR_BYTES",
    FP.TYPE_FIXED32: "FIXED32",
    FP.TYPE_SFIXED32: "FIXED32",
    FP.TYPE_FIXED64: "FIXED64",
    FP.TYPE_SFIXED64: "FIXED64",
    FP.TYPE_FLOAT: "FLOAT",
    FP.TYPE_DOUBLE: "DOUBLE",
}


@dataclass(frozen=True)
class _Type:
    """A message or enum of one side, with the package of the file that declares it."""

    message: DP | None
    package: str
    file: str


@dataclass
class _Side:
    types: dict[str, _Type]

    @classmethod
    def of(cls, schema: ProtoSchema) -> _Side:
        types: dict[str, _Type] = {}
        for proto in (schema.file, *schema.dependencies.values()):
            _collect(types, proto)
        return cls(types)


def _collect(types: dict[str, _Type], proto: FDP) -> None:
    prefix = f".{proto.package}" if proto.package else ""
    stack: list[tuple[str, DP]] = [(f"{prefix}.{m.name}", m) for m in proto.message_type]
    for enum in proto.enum_type:
        types[f"{prefix}.{enum.name}"] = _Type(None, proto.package, proto.name)
    while stack:
        name, message = stack.pop()
        types[name] = _Type(message, proto.package, proto.name)
        for enum in message.enum_type:
            types[f"{name}.{enum.name}"] = _Type(None, proto.package, proto.name)
        stack.extend((f"{name}.{m.name}", m) for m in message.nested_type)


@dataclass
class Context:
    original: _Side
    update: _Side
    differences: list[tuple[str, str]] = field(default_factory=list)
    path: list[str] = field(default_factory=lambda: ["#"])
    seen: set[str] = field(default_factory=set)
    steps: list[int] = field(default_factory=lambda: [0])

    def add(self, kind: str) -> None:
        self.differences.append((kind, "/".join(self.path)))

    def sub(self) -> Context:
        return Context(self.original, self.update, [], list(self.path), self.seen, self.steps)

    def compatible(self) -> bool:
        return all(kind in COMPATIBLE_CHANGES for kind, _ in self.differences)

    @contextmanager
    def at(self, part: str) -> Iterator[None]:
        self.path.append(part)
        try:
            yield
        finally:
            self.path.pop()

    def tick(self) -> None:
        self.steps[0] += 1
        if self.steps[0] > MAX_STEPS:
            raise SchemaError(f"comparing these schemas takes more than {MAX_STEPS} steps")


def differences(original: ProtoSchema, update: ProtoSchema) -> list[tuple[str, str]]:
    """Confluent's differences between an old and a new schema: (type, path) pairs."""
    ctx = Context(_Side.of(original), _Side.of(update))
    if original.file.package != update.file.package:
        ctx.add("PACKAGE_CHANGED")
    _types(ctx, original.file, update.file, original.file.package, update.file.package)
    return ctx.differences


def incompatibilities(original: ProtoSchema, update: ProtoSchema) -> list[str]:
    """Messages for the differences Confluent counts as incompatible."""
    return [
        f"Found incompatible change: Difference{{fullPath='{where}', type={kind}}}"
        for kind, where in differences(original, update)
        if kind not in COMPATIBLE_CHANGES
    ]


def _types(ctx: Context, original: FDP | DP, update: FDP | DP, o_scope: str, u_scope: str) -> None:
    """Messages and enums of one scope, matched by name."""
    if isinstance(original, FDP) and isinstance(update, FDP):
        o_messages, u_messages = original.message_type, update.message_type
    elif isinstance(original, DP) and isinstance(update, DP):
        o_messages, u_messages = original.nested_type, update.nested_type
    else:
        return
    o_by = {m.name: m for m in o_messages if not m.options.map_entry}
    u_by = {m.name: m for m in u_messages if not m.options.map_entry}
    for name in sorted(set(o_by) | set(u_by)):
        with ctx.at(name):
            if name not in u_by:
                ctx.add("MESSAGE_REMOVED")
            elif name not in o_by:
                ctx.add("MESSAGE_ADDED")
            else:
                _message(ctx, o_by[name], u_by[name], f"{o_scope}.{name}", f"{u_scope}.{name}")
    o_enums = {e.name for e in original.enum_type}
    u_enums = {e.name for e in update.enum_type}
    for name in sorted(o_enums ^ u_enums):
        with ctx.at(name):
            ctx.add("ENUM_REMOVED" if name in o_enums else "ENUM_ADDED")


def _message(ctx: Context, original: DP, update: DP, o_name: str, u_name: str) -> None:
    ctx.tick()
    if o_name in ctx.seen:
        return
    ctx.seen.add(o_name)
    try:
        _fields(ctx, original, update, o_name, u_name)
        _types(ctx, original, update, o_name, u_name)
    finally:
        ctx.seen.discard(o_name)


def _real_oneof(f: FP) -> bool:
    return f.HasField("oneof_index") and not f.proto3_optional


def _fields(ctx: Context, original: DP, update: DP, o_name: str, u_name: str) -> None:
    o_top = {f.number: f for f in original.field if not _real_oneof(f)}
    u_top = {f.number: f for f in update.field if not _real_oneof(f)}
    o_all = {f.number: f for f in original.field}
    u_all = {f.number: f for f in update.field}
    o_oneofs = _oneofs(original)
    u_oneofs = _oneofs(update)
    o_oneof_tags = {f.number for fields in o_oneofs.values() for f in fields}
    o_member = {f.number: name for name, fields in o_oneofs.items() for f in fields}
    u_member = {f.number: name for name, fields in u_oneofs.items() for f in fields}
    for name, fields in u_oneofs.items():
        with ctx.at(name):
            moved = sum(1 for f in fields if o_top.pop(f.number, None) is not None)
            existing = sum(1 for f in fields if f.number in o_oneof_tags)
            if moved > 1:
                ctx.add("MULTIPLE_FIELDS_MOVED_TO_ONEOF")
            elif moved == 1 and existing > 0:
                ctx.add("FIELD_MOVED_TO_EXISTING_ONEOF")
    for name in sorted(set(o_oneofs) | set(u_oneofs)):
        with ctx.at(name):
            if name not in u_oneofs:
                ctx.add("ONEOF_REMOVED")
            elif name not in o_oneofs:
                ctx.add("ONEOF_ADDED")
            else:
                _oneof(ctx, o_oneofs[name], u_oneofs[name], set(u_all))
    for number in sorted(set(o_top) | set(u_top)):
        with ctx.at(str(number)):
            old, new = o_top.get(number), u_top.get(number)
            if new is None and old is not None:
                required = old.label == FP.LABEL_REQUIRED
                ctx.add("REQUIRED_FIELD_REMOVED" if required else "FIELD_REMOVED")
            elif old is None and new is not None:
                required = new.label == FP.LABEL_REQUIRED
                ctx.add("REQUIRED_FIELD_ADDED" if required else "FIELD_ADDED")
            elif old is not None and new is not None:
                _field(ctx, old, new)
    for number in sorted(set(o_all) & set(u_all)):
        o_one, u_one = o_member.get(number), u_member.get(number)
        if (o_one is None and u_one is None) or (o_one is not None and o_one == u_one):
            continue
        with ctx.at(str(number)):
            _field(ctx, o_all[number], u_all[number])


def _oneofs(message: DP) -> dict[str, list[FP]]:
    out: dict[str, list[FP]] = {}
    for f in message.field:
        if _real_oneof(f):
            out.setdefault(message.oneof_decl[f.oneof_index].name, []).append(f)
    return out


def _oneof(ctx: Context, original: list[FP], update: list[FP], update_tags: set[int]) -> None:
    o_by = {f.number: f for f in original}
    u_by = {f.number: f for f in update}
    for number in sorted(set(o_by) | set(u_by)):
        with ctx.at(str(number)):
            if number not in u_by:
                if number not in update_tags:
                    ctx.add("ONEOF_FIELD_REMOVED")
            elif number not in o_by:
                ctx.add("ONEOF_FIELD_ADDED")
            else:
                _field(ctx, o_by[number], u_by[number])


def _field(ctx: Context, original: FP, update: FP) -> None:
    if original.name != update.name:
        ctx.add("FIELD_NAME_CHANGED")
    _labels_and_types(
        ctx,
        _label(original),
        _label(update),
        (original.type, original.type_name),
        (update.type, update.type_name),
    )


def _label(f: FP) -> str | None:
    """The label Confluent's parser sees: None for a plain proto3 singular field."""
    if f.label == FP.LABEL_REPEATED:
        return "REPEATED"
    if f.label == FP.LABEL_REQUIRED:
        return "REQUIRED"
    # a descriptor does not say whether `optional` was written in a proto2 file; only
    # proto3's explicit `optional` is told apart from a plain singular field
    return "OPTIONAL" if f.proto3_optional else None


def _kind(side: _Side, ftype: int, type_name: str) -> tuple[str, _Type | None]:
    if ftype == FP.TYPE_MESSAGE:
        found = side.types.get(type_name)
        if found is not None and found.message is not None and found.message.options.map_entry:
            return "MAP", found
        return "MESSAGE", found
    return "SCALAR", None


def _labels_and_types(
    ctx: Context,
    o_label: str | None,
    u_label: str | None,
    original: tuple[int, str],
    update: tuple[int, str],
) -> None:
    ctx.tick()
    o_kind, o_type = _kind(ctx.original, *original)
    u_kind, u_type = _kind(ctx.update, *update)
    if o_kind != u_kind:
        ctx.add("FIELD_KIND_CHANGED")
    elif o_kind == "SCALAR":
        o_group, u_group = _GROUPS.get(original[0]), _GROUPS.get(update[0])
        if o_group != u_group:
            ctx.add("FIELD_SCALAR_KIND_CHANGED")
        elif o_label is not None and u_label is not None and o_label != u_label:
            if o_group == "STRING_OR_BYTES":
                ctx.add("FIELD_STRING_OR_BYTES_LABEL_CHANGED")
            else:
                ctx.add("FIELD_NUMERIC_LABEL_CHANGED")
    elif o_kind == "MAP" and o_type is not None and u_type is not None:
        assert o_type.message is not None and u_type.message is not None
        o_fields = sorted(o_type.message.field, key=lambda f: f.number)
        u_fields = sorted(u_type.message.field, key=lambda f: f.number)
        for old, new in zip(o_fields, u_fields, strict=False):
            _labels_and_types(ctx, None, None, (old.type, old.type_name), (new.type, new.type_name))
    elif o_kind == "MESSAGE":
        _message_types(ctx, original[1], update[1], o_type, u_type)


def _message_types(
    ctx: Context, o_name: str, u_name: str, o_type: _Type | None, u_type: _Type | None
) -> None:
    if o_type is None or u_type is None or o_type.message is None or u_type.message is None:
        if o_name != u_name:
            ctx.add("FIELD_NAMED_TYPE_CHANGED")
        return
    o_local = _local(o_name, o_type.package)
    u_local = _local(u_name, u_type.package)
    if o_local != u_local:
        ctx.add("FIELD_NAMED_TYPE_CHANGED")
        return
    if o_type.message == u_type.message and o_type.file == u_type.file:
        return  # the same definition on both sides (a shared reference): nothing to compare
    sub = ctx.sub()
    _message(sub, o_type.message, u_type.message, o_name, u_name)
    ctx.differences += sub.differences
    if not sub.compatible():
        ctx.add("FIELD_NAMED_TYPE_CHANGED")


def _local(full: str, package: str) -> str:
    bare = full.lstrip(".")
    return bare[len(package) + 1 :] if package and bare.startswith(package + ".") else bare
