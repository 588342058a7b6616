"""Protobuf schemas as Confluent's registry and serializers see them.

A Protobuf schema reaches us as `.proto` text or, from confluent-kafka's Python serializer, as a
base64 `FileDescriptorProto`; its imports name other schemas (references) or the built-in files
every Confluent client knows (`google/protobuf/*`, `google/type/*`, `confluent/*`). Text is
compiled by the `protoc` that `grpcio-tools` ships (its in-process compiler, which reports
errors as data for the client), never anything fetched from the network.
The result is a `ProtoSchema`: the file's descriptor and those of everything it
imports, from which the registry prints the canonical text it stores, and the KSQL formats get
message descriptors, message classes and the message indexes of Confluent's wire format
(magic byte, schema id, zig-zag varint message indexes, message).

Input is untrusted: sizes, reference counts, names and nesting are bounded before protoc or the
printer (which recurses per nested message) see them.
"""

from __future__ import annotations

import ast
import atexit
import base64
import binascii
import functools
import importlib
import importlib.util
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_encoding,
    text_format,
)
from google.protobuf.descriptor import Descriptor, FileDescriptor
from google.protobuf.descriptor_pb2 import DescriptorProto as DP
from google.protobuf.descriptor_pb2 import FieldDescriptorProto as FP
from google.protobuf.descriptor_pb2 import FileDescriptorProto as FDP
from google.protobuf.message import DecodeError, Message
from grpc_tools import _protoc_compiler

from services.common.schemas import SchemaError

MAX_TEXT_BYTES = 256 * 1024
"""One schema's text (or base64 descriptor)."""
MAX_FILES = 200
"""Files one schema may pull in through its references (transitively)."""
MAX_NESTING = 32
"""Messages nested in messages."""
MAX_INDEX_DEPTH = 64
"""Entries of one message-index array read from a record."""
DEFAULT_NAME = "default.proto"
"""The file name a schema without one gets (Confluent's deserializer uses `default`)."""

BUILTIN_PREFIXES = ("confluent/", "google/protobuf/", "google/type/")
_BUILTIN_MODULES = (
    "google.protobuf.any_pb2",
    "google.protobuf.api_pb2",
    "google.protobuf.descriptor_pb2",
    "google.protobuf.duration_pb2",
    "google.protobuf.empty_pb2",
    "google.protobuf.field_mask_pb2",
    "google.protobuf.source_context_pb2",
    "google.protobuf.struct_pb2",
    "google.protobuf.timestamp_pb2",
    "google.protobuf.type_pb2",
    "google.protobuf.wrappers_pb2",
    "google.type.calendar_period_pb2",
    "google.type.color_pb2",
    "google.type.date_pb2",
    "google.type.datetime_pb2",
    "google.type.dayofweek_pb2",
    "google.type.expr_pb2",
    "google.type.fraction_pb2",
    "google.type.latlng_pb2",
    "google.type.money_pb2",
    "google.type.month_pb2",
    "google.type.postal_address_pb2",
    "google.type.quaternion_pb2",
    "google.type.timeofday_pb2",
)
_CONFLUENT_FILES = (
    "schema_registry/confluent/meta_pb2.py",
    "schema_registry/confluent/type/decimal_pb2.py",
    "schema_registry/confluent/types/decimal_pb2.py",
)
"""Confluent's own files, read from confluent-kafka's generated modules without importing them
(importing `confluent_kafka.schema_registry` costs seconds: it pulls in its HTTP clients)."""
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")


def is_builtin(name: str) -> bool:
    """A file every Confluent client has compiled in (never a reference)."""
    return name.startswith(BUILTIN_PREFIXES)


@functools.cache
def builtin_files() -> dict[str, FDP]:
    """The built-in files by import name, from the compiled modules installed beside us."""
    out: dict[str, FDP] = {}
    for module_name in _BUILTIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an optional module missing: that import is simply unknown
            continue
        proto = FDP()
        module.DESCRIPTOR.CopyToProto(proto)
        out[proto.name] = proto
    spec = importlib.util.find_spec("confluent_kafka")
    root = os.path.dirname(spec.origin) if spec and spec.origin else None
    for relative in _CONFLUENT_FILES if root else ():
        proto = _serialized_in(os.path.join(str(root), relative))
        if proto is not None:
            out[proto.name] = proto
    return out


def _serialized_in(path: str) -> FDP | None:
    """The `FileDescriptorProto` a generated `_pb2.py` file adds to the default pool."""
    try:
        with open(path, encoding="utf-8") as source:
            return _serialized_from(source.read())
    except OSError:
        return None


def _serialized_from(source: str) -> FDP | None:
    """The `FileDescriptorProto` generated Python code adds to the default pool, read with
    `ast` (the code is not run)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, bytes)
        ):
            proto = FDP()
            proto.ParseFromString(node.args[0].value)
            return proto
    return None


@functools.cache
def _options_pool() -> descriptor_pool.DescriptorPool:
    """descriptor.proto and Confluent's meta.proto: option messages read through it keep the
    `(confluent.field_meta)` style extensions ksqlDB writes (precision and scale of decimals)."""
    pool = descriptor_pool.DescriptorPool()
    files = builtin_files()
    for name in ("google/protobuf/descriptor.proto", "confluent/meta.proto"):
        if name in files:
            pool.Add(files[name])
    return pool


def _with_extensions(options: Message) -> Message:
    """The options message re-read so that known custom options show as fields."""
    if not options.ByteSize():
        return options
    try:
        descriptor = _options_pool().FindMessageTypeByName(options.DESCRIPTOR.full_name)
        out = message_factory.GetMessageClass(descriptor)()
        out.ParseFromString(options.SerializeToString())
        return out
    except (KeyError, DecodeError):
        return options


# -- the parsed schema --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ProtoSchema:
    """One Protobuf schema: its file and every file it imports, as descriptors."""

    file: FDP
    dependencies: Mapping[str, FDP]
    """Every file the schema imports, transitively, built-ins included, by import name."""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.file.name)

    def canonical(self) -> str:
        """The text Confluent's registry stores: the file printed back as `.proto`."""
        return print_file(self.file)

    def normalized(self) -> str:
        """The canonical text with names fully qualified and declarations in a fixed order."""
        return print_file(self.file, normalize=True)

    def serialized(self) -> str:
        """Base64 `FileDescriptorProto` (what `?format=serialized` answers)."""
        return base64.standard_b64encode(self.file.SerializeToString()).decode("ascii")

    def pool(self) -> descriptor_pool.DescriptorPool:
        """A private pool holding this file and everything it imports."""
        found = self._cache.get("pool")
        if found is None:
            found = build_pool(self.file, self.dependencies)
            self._cache["pool"] = found
        return found

    def file_descriptor(self) -> FileDescriptor:
        return self.pool().FindFileByName(self.file.name)

    def message_names(self) -> list[str]:
        """Full names of the file's messages (nested ones after their parent), map entries
        left out; the first one is the schema's default message."""
        return [name for name, _ in _walk_messages(self.file)]

    def message(self, full_name: str | None = None) -> Descriptor:
        """A message of this file by full name (leading dot optional); the first by default."""
        names = self.message_names()
        if not names:
            raise SchemaError(f"{self.name} defines no message")
        wanted = (full_name or names[0]).lstrip(".")
        if wanted not in names:
            raise SchemaError(f"message {wanted!r} is not defined in {self.name}")
        return self.pool().FindMessageTypeByName(wanted)

    def message_index(self, full_name: str | None = None) -> list[int]:
        """The message's index path in Confluent's wire format ([0] for the first message)."""
        wanted = (full_name or self.message_names()[0]).lstrip(".")
        for name, path in _walk_messages(self.file):
            if name == wanted:
                return path
        raise SchemaError(f"message {wanted!r} is not defined in {self.name}")

    def message_at(self, indexes: Sequence[int]) -> Descriptor:
        """The message a record's index path points at, or SchemaError."""
        path = list(indexes) or [0]
        for name, found in _walk_messages(self.file, include_map_entries=True):
            if found == path:
                return self.pool().FindMessageTypeByName(name)
        raise SchemaError(f"message index {path} is not in {self.name}")

    def message_class(self, full_name: str | None = None) -> type[Message]:
        """A message class for `full_name` (the first message by default), from this pool."""
        return message_factory.GetMessageClass(self.message(full_name))


def _walk_messages(file: FDP, include_map_entries: bool = False) -> Iterator[tuple[str, list[int]]]:
    """(full name, index path) of every message, depth first; index paths count map entries
    (they are nested types in every descriptor, so clients count them too)."""
    prefix = f"{file.package}." if file.package else ""
    stack: list[tuple[str, list[int], DP]] = [
        (prefix + m.name, [i], m) for i, m in reversed(list(enumerate(file.message_type)))
    ]
    while stack:
        name, path, message = stack.pop()
        if include_map_entries or not message.options.map_entry:
            yield name, path
        stack.extend(
            (f"{name}.{m.name}", [*path, i], m)
            for i, m in reversed(list(enumerate(message.nested_type)))
        )


def build_pool(main: FDP, dependencies: Mapping[str, FDP]) -> descriptor_pool.DescriptorPool:
    """A fresh pool with `main` and its imports added in dependency order; SchemaError when a
    file is missing or a type does not resolve."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(proto: FDP, chain: tuple[str, ...]) -> None:
        if proto.name in added:
            return
        if proto.name in chain:
            raise SchemaError(f"import cycle: {' -> '.join((*chain, proto.name))}")
        for dep in proto.dependency:
            found = dependencies.get(dep) or builtin_files().get(dep)
            if found is None:
                raise SchemaError(f"{proto.name}: import {dep!r} is not a reference or built-in")
            add(found, (*chain, proto.name))
        try:
            pool.Add(proto)
        except (TypeError, ValueError, KeyError) as exc:
            raise SchemaError(f"{proto.name}: {exc}") from None
        added.add(proto.name)

    add(main, ())
    return pool


# -- parsing ------------------------------------------------------------------------------------


def parse(
    text: object, references: Mapping[str, str] | None = None, *, name: str = DEFAULT_NAME
) -> ProtoSchema:
    """A schema from `.proto` text or a base64 `FileDescriptorProto`, with its references
    (import name → text or base64, every file reachable from the schema), or SchemaError."""
    if not isinstance(text, str) or not text.strip():
        raise SchemaError("a Protobuf schema must be non-empty .proto text")
    refs = dict(references or {})
    if len(refs) > MAX_FILES:
        raise SchemaError(f"more than {MAX_FILES} referenced files")
    for ref_name, ref_text in refs.items():
        _check_name(ref_name)
        _check_text(ref_text, ref_name)
    _check_text(text, name)
    if name in refs:
        name = "__main__." + name.replace("/", "_")
    decoded = {n: _decode(t) for n, t in refs.items()}
    main = _decode(text)
    texts = {n: t for n, t in refs.items() if decoded[n] is None}
    binaries = {n: d for n, d in decoded.items() if d is not None}
    for n, proto in binaries.items():
        proto.name = n
    if main is None or texts:
        compiled = _compile(name, text if main is None else None, texts, binaries, main)
        main = compiled.pop(name) if main is None else main
        binaries.update(compiled)
    main.name = name
    deps = {n: p for n, p in binaries.items() if n != name}
    for proto in (main, *deps.values()):
        _check_nesting(proto)
        if proto.syntax == "editions":
            raise SchemaError(f"{proto.name}: protobuf editions are not supported")
    schema = ProtoSchema(main, _reachable(main, deps))
    schema.pool()  # resolves every type now: an unknown one is the client's mistake
    return schema


def _check_name(name: object) -> None:
    if not isinstance(name, str) or len(name) > 512 or not _NAME.fullmatch(name):
        raise SchemaError(f"reference name {name!r} is not a relative file name")
    if ".." in name.split("/"):
        raise SchemaError(f"reference name {name!r} leaves the schema tree")


def _check_text(text: object, name: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise SchemaError(f"{name}: schema text is empty")
    if len(text.encode("utf-8", "replace")) > MAX_TEXT_BYTES:
        raise SchemaError(f"{name}: schema text is larger than {MAX_TEXT_BYTES} bytes")
    if "\x00" in text:
        raise SchemaError(f"{name}: schema text holds a NUL character")


def _decode(text: str) -> FDP | None:
    """The descriptor a base64 text holds, or None when the text is `.proto` source."""
    if not _BASE64.fullmatch(text) or "=" in text.rstrip("=") or ";" in text:
        return None
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    proto = FDP()
    try:
        proto.ParseFromString(raw)
    except (DecodeError, RuntimeError):
        return None
    return proto if proto.message_type or proto.enum_type or proto.package else None


def _reachable(main: FDP, files: Mapping[str, FDP]) -> dict[str, FDP]:
    """The files `main` imports, transitively (built-ins from this process when not given)."""
    out: dict[str, FDP] = {}
    todo = list(main.dependency)
    while todo:
        dep = todo.pop()
        if dep in out:
            continue
        found = files.get(dep) or builtin_files().get(dep)
        if found is None:
            raise SchemaError(f"import {dep!r} is neither a reference nor a built-in file")
        out[dep] = found
        todo.extend(found.dependency)
    return out


def _check_nesting(proto: FDP) -> None:
    stack = [(m, 1) for m in proto.message_type]
    while stack:
        message, depth = stack.pop()
        if depth > MAX_NESTING:
            raise SchemaError(f"{proto.name}: messages nest deeper than {MAX_NESTING} levels")
        stack.extend((m, depth + 1) for m in message.nested_type)


_PROTOC_LOCK = threading.Lock()
"""protoc's compiler runs in this process (6 ms, against 400 ms for a child process); one
compilation at a time, as its importer is not documented as thread-safe."""


def _compile(
    name: str,
    text: str | None,
    texts: Mapping[str, str],
    binaries: Mapping[str, FDP],
    main: FDP | None,
) -> dict[str, FDP]:
    """Run protoc over the text files; the binary ones and the built-ins it may import are
    printed beside them. Every compiled file's descriptor, by name."""
    sources = dict(texts)
    if text is not None:
        sources[name] = text
    elif main is not None:
        sources[name] = print_file(main)
    for file_name, proto in binaries.items():
        sources.setdefault(file_name, print_file(proto))
    out: dict[str, FDP] = {}
    with tempfile.TemporaryDirectory(prefix="fraudstream-proto-") as tmp:
        src = os.path.join(tmp, "src")
        for file_name, source in sources.items():
            path = os.path.join(src, file_name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(source)
        targets = [name] if text is not None else sorted(texts)
        for target in targets:
            for proto in _run_protoc(target, src, tmp):
                out.setdefault(proto.name, proto)
    return out


def _run_protoc(target: str, src: str, tmp: str) -> list[FDP]:
    try:
        with _PROTOC_LOCK:
            generated = _protoc_compiler.get_protos(
                target.encode(), [src.encode(), _builtin_dir().encode()]
            )
    except _protoc_compiler.ProtocErrors as exc:
        lines = [
            f"{_text(e.filename)}:{e.line + 1}:{e.column + 1}: {_text(e.message)}"
            if e.line >= 0
            else f"{_text(e.filename)}: {_text(e.message)}"
            for e in exc.errors()
        ]
        detail = " ".join(lines).replace(tmp + os.sep, "").replace("src" + os.sep, "")
        raise SchemaError(detail[:2000] or "protoc failed") from None
    protos = [_serialized_from(source.decode("utf-8", "replace")) for _, source in generated]
    return [p for p in protos if p is not None]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    text = str(value)
    return text[2:-1] if text.startswith(("b'", 'b"')) else text


@functools.cache
def _builtin_dir() -> str:
    """A folder with the built-in files as `.proto` text for protoc to import, written once
    per process (and removed at exit)."""
    folder = tempfile.mkdtemp(prefix="fraudstream-proto-builtin-")
    atexit.register(shutil.rmtree, folder, True)
    for name, proto in builtin_files().items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(print_file(proto))
    return folder


# -- message indexes (Confluent's wire format) --------------------------------------------------


def zigzag_varint(value: int) -> bytes:
    """A signed 64-bit int as a zig-zag base-128 varint (Protobuf sint, Kafka record fields)."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_message_indexes(indexes: Sequence[int]) -> bytes:
    """Confluent's message-index prefix: [0] is the single byte 0, else a zig-zag varint
    count followed by the zig-zag varint indexes."""
    if list(indexes) in ([], [0]):
        return b"\x00"
    return zigzag_varint(len(indexes)) + b"".join(zigzag_varint(i) for i in indexes)


def _read_zigzag(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data):
            raise SchemaError("message indexes run past the end of the record")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise SchemaError("a message index varint is longer than 10 bytes")
    return (result >> 1) ^ -(result & 1), pos


def decode_message_indexes(data: bytes | memoryview, offset: int = 0) -> tuple[list[int], int]:
    """The index path starting at `offset` and the offset of the message after it."""
    count, pos = _read_zigzag(data, offset)
    if count == 0:
        return [0], pos
    if count < 0 or count > MAX_INDEX_DEPTH:
        raise SchemaError(f"message index count {count} is outside 0..{MAX_INDEX_DEPTH}")
    out = []
    for _ in range(count):
        value, pos = _read_zigzag(data, pos)
        if value < 0:
            raise SchemaError(f"negative message index {value}")
        out.append(value)
    return out, pos


# -- printing -----------------------------------------------------------------------------------

_SCALAR = {
    FP.TYPE_DOUBLE: "double",
    FP.TYPE_FLOAT: "float",
    FP.TYPE_INT64: "int64",
    FP.TYPE_UINT64: "uint64",
    FP.TYPE_INT32: "int32",
    FP.TYPE_FIXED64: "fixed64",
    FP.TYPE_FIXED32: "fixed32",
    FP.TYPE_BOOL: "bool",
    FP.TYPE_STRING: "string",
    FP.TYPE_BYTES: "bytes",
    FP.TYPE_UINT32: "uint32",
    FP.TYPE_SFIXED32: "sfixed32",
    FP.TYPE_SFIXED64: "sfixed64",
    FP.TYPE_SINT32: "sint32",
    FP.TYPE_SINT64: "sint64",
}
SCALAR_TYPE_NAMES = dict(_SCALAR)
"""Field type number → the scalar's `.proto` keyword."""
_MAX_FIELD = 536870911


def print_file(file: FDP, normalize: bool = False) -> str:
    """`file` as `.proto` text protoc compiles back to the same descriptor (map entries and
    nested messages keep their order, so message indexes stay the same). `normalize` writes
    every type name fully qualified and sorts imports and options, as Confluent's
    `normalize=true` does; declarations keep their order (message indexes depend on it)."""
    return _Printer(file, normalize).render()


class _Printer:
    def __init__(self, file: FDP, normalize: bool) -> None:
        self.file = file
        self.normalize = normalize
        self.lines: list[str] = []

    def render(self) -> str:
        f = self.file
        if f.syntax == "proto3":
            self.lines.append('syntax = "proto3";')
        else:
            self.lines.append('syntax = "proto2";')
        if f.package:
            self.lines.append(f"package {f.package};")
        public, weak = set(f.public_dependency), set(f.weak_dependency)
        imports = [
            ("public " if i in public else "weak " if i in weak else "") + f'"{dep}"'
            for i, dep in enumerate(f.dependency)
        ]
        if imports:
            self.lines.append("")
        for item in sorted(imports) if self.normalize else imports:
            self.lines.append(f"import {item};")
        options = self._options(f.options)
        if options:
            self.lines.append("")
        self.lines += [f"option {o};" for o in options]
        messages = list(f.message_type)
        enums = list(f.enum_type)
        for message in messages:
            self.lines.append("")
            self._message(message, f.package, 0)
        for enum in sorted(enums, key=lambda e: e.name) if self.normalize else enums:
            self.lines.append("")
            self._enum(enum, 0)
        self._extensions(list(f.extension), f.package, 0)
        for service in f.service:
            self.lines.append("")
            self._service(service)
        return "\n".join(self.lines) + "\n"

    # -- pieces

    def _type(self, type_name: str, scope: str) -> str:
        if self.normalize:
            return type_name if type_name.startswith(".") else "." + type_name
        bare = type_name.lstrip(".")
        package = self.file.package
        if package and bare.startswith(package + "."):
            return bare[len(package) + 1 :]
        return bare

    def _options(self, options: Message) -> list[str]:
        out = []
        for fd, value in _with_extensions(options).ListFields():
            if fd.name == "map_entry" or fd.name == "uninterpreted_option":
                continue
            key = f"({fd.full_name})" if fd.is_extension else fd.name
            if fd.is_repeated:
                out += [f"{key} = {_literal(fd, v)}" for v in value]
            else:
                out.append(f"{key} = {_literal(fd, value)}")
        return sorted(out) if self.normalize else out

    def _message(self, message: DP, scope: str, depth: int) -> None:
        pad = "  " * depth
        inner = "  " * (depth + 1)
        full = f"{scope}.{message.name}" if scope else message.name
        self.lines.append(f"{pad}message {message.name} {{")
        self.lines += [f"{inner}option {o};" for o in self._options(message.options)]
        self._reserved(message.reserved_range, message.reserved_name, inner, exclusive=True)
        for rng in message.extension_range:
            end = "max" if rng.end - 1 >= _MAX_FIELD else str(rng.end - 1)
            self.lines.append(f"{inner}extensions {rng.start} to {end};")
        entries = {f".{full}.{m.name}": m for m in message.nested_type if m.options.map_entry}
        nested = list(message.nested_type)
        self._interleave(message, list(message.field), nested, entries, full, depth + 1)
        enums = list(message.enum_type)
        for enum in sorted(enums, key=lambda e: e.name) if self.normalize else enums:
            self._enum(enum, depth + 1)
        self._extensions(list(message.extension), full, depth + 1)
        self.lines.append(f"{pad}}}")

    def _interleave(
        self,
        message: DP,
        fields: list[FP],
        nested: list[DP],
        entries: dict[str, DP],
        full: str,
        depth: int,
    ) -> None:
        """Fields and nested messages in an order that keeps both the field order and the
        nested-type order (a map field creates its entry type where it is declared)."""
        groups = list(self._field_groups(message, fields, entries))
        owner: dict[str, int] = {}
        for index, group in enumerate(groups):
            for f in group:
                if f.type_name in entries:
                    owner[f.type_name] = index
        next_group = 0
        for m in nested:
            if m.options.map_entry:
                last = owner.get(f".{full}.{m.name}")
                if last is None:
                    continue
                while next_group <= last:
                    self._emit_fields(groups[next_group], message, entries, full, depth)
                    next_group += 1
            else:
                self._message(m, full, depth)
        for group in groups[next_group:]:
            self._emit_fields(group, message, entries, full, depth)

    @staticmethod
    def _field_groups(message: DP, fields: list[FP], entries: dict[str, DP]) -> Iterator[list[FP]]:
        """Each field alone, or a real oneof's fields together (where its first one is)."""
        done: set[int] = set()
        for f in fields:
            if f.HasField("oneof_index") and not f.proto3_optional:
                if f.oneof_index in done:
                    continue
                done.add(f.oneof_index)
                yield [
                    x
                    for x in fields
                    if x.HasField("oneof_index") and x.oneof_index == f.oneof_index
                ]
            else:
                yield [f]

    def _emit_fields(
        self, group: list[FP], message: DP, entries: dict[str, DP], full: str, depth: int
    ) -> None:
        pad = "  " * depth
        first = group[0]
        if first.HasField("oneof_index") and not first.proto3_optional:
            oneof = message.oneof_decl[first.oneof_index]
            self.lines.append(f"{pad}oneof {oneof.name} {{")
            self.lines += [f"{pad}  option {o};" for o in self._options(oneof.options)]
            for f in group:
                self.lines.append(pad + "  " + self._field(f, entries, full, in_oneof=True))
            self.lines.append(f"{pad}}}")
        else:
            self.lines.append(pad + self._field(first, entries, full, in_oneof=False))

    def _field(self, f: FP, entries: dict[str, DP], scope: str, in_oneof: bool) -> str:
        if f.type == FP.TYPE_GROUP:
            raise SchemaError(f"field {f.name}: proto2 groups are not supported")
        entry = entries.get(f.type_name)
        if entry is not None:
            key, value = sorted(entry.field, key=lambda x: x.number)
            kind = f"map<{self._field_type(key, scope)}, {self._field_type(value, scope)}>"
            label = ""
        else:
            kind = self._field_type(f, scope)
            label = self._label(f, in_oneof)
        options = self._options(f.options)
        if f.HasField("default_value"):
            options.insert(0, f"default = {self._default(f)}")
        if f.HasField("json_name") and f.json_name != _json_name(f.name):
            options.append(f'json_name = "{_escape(f.json_name)}"')
        suffix = f" [{', '.join(options)}]" if options else ""
        return f"{label}{kind} {f.name} = {f.number}{suffix};"

    def _field_type(self, f: FP, scope: str) -> str:
        return _SCALAR.get(f.type) or self._type(f.type_name, scope)

    def _label(self, f: FP, in_oneof: bool) -> str:
        if in_oneof:
            return ""
        if f.label == FP.LABEL_REPEATED:
            return "repeated "
        if self.file.syntax == "proto3":
            return "optional " if f.proto3_optional else ""
        return "required " if f.label == FP.LABEL_REQUIRED else "optional "

    @staticmethod
    def _default(f: FP) -> str:
        if f.type in (FP.TYPE_STRING, FP.TYPE_BYTES):
            return f'"{_escape(f.default_value)}"'
        return f.default_value

    def _reserved(
        self, ranges: Sequence[Any], names: Sequence[str], pad: str, exclusive: bool
    ) -> None:
        parts = []
        for rng in ranges:
            end = rng.end - 1 if exclusive else rng.end
            if end >= _MAX_FIELD and exclusive:
                parts.append(f"{rng.start} to max")
            elif end == rng.start:
                parts.append(str(rng.start))
            else:
                parts.append(f"{rng.start} to {end}")
        if parts:
            self.lines.append(f"{pad}reserved {', '.join(parts)};")
        if names:
            quoted = ", ".join(f'"{n}"' for n in (sorted(names) if self.normalize else names))
            self.lines.append(f"{pad}reserved {quoted};")

    def _enum(self, enum: descriptor_pb2.EnumDescriptorProto, depth: int) -> None:
        pad = "  " * depth
        inner = "  " * (depth + 1)
        self.lines.append(f"{pad}enum {enum.name} {{")
        self.lines += [f"{inner}option {o};" for o in self._options(enum.options)]
        self._reserved(enum.reserved_range, enum.reserved_name, inner, exclusive=False)
        for value in enum.value:
            options = self._options(value.options)
            suffix = f" [{', '.join(options)}]" if options else ""
            self.lines.append(f"{inner}{value.name} = {value.number}{suffix};")
        self.lines.append(f"{pad}}}")

    def _extensions(self, extensions: list[FP], scope: str, depth: int) -> None:
        pad = "  " * depth
        by_extendee: dict[str, list[FP]] = {}
        for ext in extensions:
            by_extendee.setdefault(ext.extendee, []).append(ext)
        for extendee, fields in by_extendee.items():
            self.lines.append(f"{pad}extend {self._type(extendee, scope)} {{")
            for f in fields:
                self.lines.append(pad + "  " + self._field(f, {}, scope, in_oneof=False))
            self.lines.append(f"{pad}}}")

    def _service(self, service: descriptor_pb2.ServiceDescriptorProto) -> None:
        self.lines.append(f"service {service.name} {{")
        self.lines += [f"  option {o};" for o in self._options(service.options)]
        for method in service.method:
            into = ("stream " if method.client_streaming else "") + self._type(
                method.input_type, ""
            )
            back = ("stream " if method.server_streaming else "") + self._type(
                method.output_type, ""
            )
            options = self._options(method.options)
            if options:
                body = " ".join(f"option {o};" for o in options)
                self.lines.append(f"  rpc {method.name}({into}) returns ({back}) {{ {body} }}")
            else:
                self.lines.append(f"  rpc {method.name}({into}) returns ({back});")
        self.lines.append("}")


def _json_name(name: str) -> str:
    """protoc's default json_name: snake_case to lowerCamelCase."""
    out, upper = [], False
    for ch in name:
        if ch == "_":
            upper = True
        elif upper:
            out.append(ch.upper())
            upper = False
        else:
            out.append(ch)
    return "".join(out)


def _escape(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return text_encoding.CEscape(value, as_utf8=False)
    return text_encoding.CEscape(value, as_utf8=True)


def _literal(fd: Any, value: Any) -> str:
    """An option value in `.proto` syntax."""
    if fd.type == fd.TYPE_MESSAGE:
        return "{ " + text_format.MessageToString(value, as_one_line=True) + " }"
    if fd.type == fd.TYPE_ENUM:
        found = fd.enum_type.values_by_number.get(value)
        return found.name if found is not None else str(value)
    if fd.type == fd.TYPE_BOOL:
        return "true" if value else "false"
    if isinstance(value, (str, bytes)):
        return f'"{_escape(value)}"'
    return repr(value) if isinstance(value, float) else str(value)
