"""Serializers and deserializers per format, built once per query for a fixed column list.

Each factory returns a closure specialised to the columns, so the per-record work is a split or
a json.loads plus one converter call per column. Deserializers return the column values as a
list (None for a null/tombstone record) and raise SerdeError with ksqlDB's reason otherwise.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import struct
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from services.common.errors import RecordRejected
from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError, KsqlServiceError, UnsupportedError
from services.ksql_server.formats.columnar import delimited_columns_decoder
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.types import ColumnDef, SqlType
from services.ksql_server.values import EPOCH, java_double, parse_timestamp

Deserializer = Callable[[bytes | None], list[Any] | None]
Serializer = Callable[[Sequence[Any]], bytes | None]

_DEC_CTX = __import__("decimal").Context(prec=100)
SUPPORTED = ("KAFKA", "JSON", "DELIMITED", "AVRO", "JSON_SR", "PROTOBUF", "PROTOBUF_NOSR", "NONE")
KNOWN = SUPPORTED


class SerdeError(KsqlServiceError, RecordRejected):
    """A record that cannot be (de)serialized; the message is the processing-log reason.

    A `RecordRejected` (and so still a `ValueError`): the record is skipped, nothing else fails."""

    default_code = "serde"


def validate_format(fmt: FormatInfo, columns: Sequence[ColumnDef], is_key: bool) -> None:
    """Reject schemas a format cannot carry, with ksqlDB's messages."""
    name = fmt.name
    if name not in KNOWN:
        raise KsqlError(f"Unknown format: {name}")
    if name not in SUPPORTED:
        raise UnsupportedError(f"format {name}")
    where = "key" if is_key else "value"
    for col, typ in columns:
        if is_key and typ.contains("MAP"):
            raise KsqlError(
                "Map keys, including types that contain maps, are not supported as they may "
                "lead to unexpected behavior due to inconsistent serialization. Key column name: "
                f"`{col}`. Column type: {typ}. See "
                "https://github.com/confluentinc/ksql/issues/6621 "
                "for more."
            )
        if (name in ("DELIMITED", "KAFKA") and not typ.is_primitive) or (
            name == "KAFKA" and typ.base in ("BOOLEAN", "DECIMAL", "TIMESTAMP", "DATE", "TIME")
        ):
            cols = ", ".join(f"`{n}` {t}{' KEY' if is_key else ''}" for n, t in columns)
            raise KsqlError(
                f"{'Key' if is_key else 'Value'} format does not support schema.\n"
                f"format: {name}\nschema: Persistence{{columns=[{cols}], features=[]}}\n"
                f"reason: The '{name}' format does not support type '{typ.base}', column: `{col}`"
            )
        if (
            name in ("JSON", "JSON_SR")
            and typ.base == "MAP"
            and typ.key is not None
            and typ.key.base != "STRING"
        ):
            raise KsqlError("JSON only supports MAP types with STRING keys")
        if name == "AVRO" and typ.contains("MAP"):
            _check_avro_map(typ)
        if name == "AVRO":
            _check_avro_name(col)
    if name in ("PROTOBUF", "PROTOBUF_NOSR") and fmt.wrap_single is False:
        raise KsqlError(f"Format '{name}' does not support 'WRAP_SINGLE_VALUE' set to 'false'.")
    if name == "KAFKA" and len(columns) > 1:
        cols = ", ".join(f"`{n}` {t}{' KEY' if is_key else ''}" for n, t in columns)
        got = cols
        raise KsqlError(
            f"{'Key' if is_key else 'Value'} format does not support schema.\nformat: KAFKA\n"
            f"schema: Persistence{{columns=[{cols}], features=[]}}\n"
            f"reason: The 'KAFKA' format only supports a single field. Got: [{got}]"
        )
    del where


def _check_avro_name(name: str) -> None:
    """Avro names: [A-Za-z_][A-Za-z0-9_]* (the Avro library's message)."""
    if not name:
        return
    if not (name[0].isascii() and (name[0].isalpha() or name[0] == "_")):
        raise KsqlError(f"Schema is not compatible with Avro: Illegal initial character: {name}")
    if not all(c.isascii() and (c.isalnum() or c == "_") for c in name):
        raise KsqlError(f"Schema is not compatible with Avro: Illegal character in: {name}")


def _check_avro_map(typ: SqlType) -> None:
    if typ.base == "MAP" and typ.key is not None and typ.key.base != "STRING":
        raise KsqlError("Avro only supports MAPs with STRING keys")


# ----------------------------------------------------------------------------- coercion


def _to_int(v: Any) -> int:
    if isinstance(v, bool):
        raise SerdeError("Can't convert type. sourceType: BooleanNode, requiredType: INTEGER")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            pass
    raise SerdeError(f"Can't convert type. sourceType: {type(v).__name__}, requiredType: INTEGER")


def _to_float(v: Any) -> float:
    if isinstance(v, bool):
        raise SerdeError("Can't convert type. sourceType: BooleanNode, requiredType: DOUBLE")
    if isinstance(v, (int, float, Decimal)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            pass
    raise SerdeError(f"Can't convert type. sourceType: {type(v).__name__}, requiredType: DOUBLE")


def _to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return java_double(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise SerdeError(f"Can't convert type. sourceType: {type(v).__name__}, requiredType: BOOLEAN")


def coercer(typ: SqlType) -> Callable[[Any], Any]:
    """A converter from a decoded JSON/Avro value to the engine value of `typ` (None passes)."""
    base = typ.base
    if base in ("INTEGER", "BIGINT"):
        return _to_int
    if base == "DOUBLE":
        return _to_float
    if base == "STRING":
        return _to_str
    if base == "BOOLEAN":
        return _to_bool
    if base == "DECIMAL":
        q = Decimal(1).scaleb(-typ.scale)

        def dec(v: Any) -> Decimal:
            if isinstance(v, bool):
                raise SerdeError("Can't convert BOOLEAN to DECIMAL")
            d = Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
            return d.quantize(q, context=_DEC_CTX)

        return dec
    if base in ("TIMESTAMP", "TIME", "DATE"):

        def temporal(v: Any) -> int:
            if isinstance(v, str) and base == "TIMESTAMP" and not v.lstrip("-").isdigit():
                return parse_timestamp(v)
            if hasattr(v, "timestamp"):
                return int(v.timestamp() * 1000)
            return _to_int(v)

        return temporal
    if base == "BYTES":
        return lambda v: v if isinstance(v, bytes) else base64.b64decode(v)
    if base == "ARRAY":
        item = coercer(typ.item or T.STRING)

        def arr(v: Any) -> list[Any]:
            if not isinstance(v, list):
                raise SerdeError(
                    f"Can't convert type. sourceType: {type(v).__name__}, requiredType: ARRAY"
                )
            return [None if x is None else item(x) for x in v]

        return arr
    if base == "MAP":
        kc = coercer(typ.key or T.STRING)
        vc = coercer(typ.item or T.STRING)

        def mapping(v: Any) -> dict[Any, Any]:
            if not isinstance(v, dict):
                raise SerdeError(
                    f"Can't convert type. sourceType: {type(v).__name__}, requiredType: MAP"
                )
            return {kc(k): None if x is None else vc(x) for k, x in v.items()}

        return mapping
    if base == "STRUCT":
        fields = [(n, coercer(t)) for n, t in typ.fields]

        def struct_(v: Any) -> dict[str, Any]:
            if not isinstance(v, dict):
                raise SerdeError(
                    f"Can't convert type. sourceType: {type(v).__name__}, requiredType: STRUCT"
                )
            upper = {str(k).upper(): x for k, x in v.items()}
            out = {}
            for n, c in fields:
                x = v.get(n, upper.get(n.upper()))
                out[n] = None if x is None else c(x)
            return out

        return struct_
    return lambda v: v


def _json_ready(value: Any, typ: SqlType) -> Any:
    """Engine value → what goes into a JSON document (Decimal stays, handled by _dumps)."""
    if value is None:
        return None
    base = typ.base
    if base == "BYTES":
        return base64.b64encode(value).decode()
    if base == "ARRAY":
        return [_json_ready(v, typ.item or T.STRING) for v in value]
    if base == "MAP":
        return {
            "null" if k is None else str(k): _json_ready(v, typ.item or T.STRING)
            for k, v in value.items()
        }
    if base == "STRUCT":
        ft = dict(typ.fields)
        return {k: _json_ready(v, ft.get(k, T.STRING)) for k, v in value.items()}
    if base == "DOUBLE" and isinstance(value, float) and not math.isfinite(value):
        return java_double(value)
    return value


class _DecimalEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            return _RawNumber(f"{o:f}")
        return super().default(o)


class _RawNumber(float):
    """Lets json write a Decimal as a number with its exact digits."""

    def __new__(cls, text: str) -> _RawNumber:
        obj = super().__new__(cls, float(text))
        obj.text = text  # type: ignore[attr-defined]
        return obj

    def __repr__(self) -> str:
        return self.text  # type: ignore[attr-defined,no-any-return]


def dumps(obj: Any) -> str:
    """json.dumps that writes Decimal values as exact numbers."""
    if not _has_decimal(obj):
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return _encode_decimal(obj)


def _has_decimal(obj: Any) -> bool:
    if isinstance(obj, Decimal):
        return True
    if isinstance(obj, dict):
        return any(_has_decimal(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_decimal(v) for v in obj)
    return False


def _encode_decimal(obj: Any) -> str:
    if isinstance(obj, Decimal):
        return f"{obj:f}"
    if isinstance(obj, dict):
        return (
            "{"
            + ",".join(
                json.dumps(str(k), ensure_ascii=False) + ":" + _encode_decimal(v)
                for k, v in obj.items()
            )
            + "}"
        )
    if isinstance(obj, list):
        return "[" + ",".join(_encode_decimal(v) for v in obj) + "]"
    return json.dumps(obj, ensure_ascii=False)


# ----------------------------------------------------------------------------- JSON


def json_deserializer(columns: Sequence[ColumnDef], wrap: bool) -> Deserializer:
    convs = [(name, name.upper(), coercer(t)) for name, t in columns]
    if not wrap:
        conv = convs[0][2]

        def unwrapped(data: bytes | None) -> list[Any] | None:
            if data is None:
                return None
            try:
                v = json.loads(data)
            except ValueError as exc:
                raise SerdeError(f"Failed to deserialize JSON: {exc}") from exc
            return [None if v is None else conv(v)]

        return unwrapped

    def wrapped(data: bytes | None) -> list[Any] | None:
        if data is None:
            return None
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise SerdeError(f"Failed to deserialize JSON: {exc}") from exc
        if obj is None:
            return None
        if not isinstance(obj, dict):
            raise SerdeError(
                f"Can't convert type. sourceType: {type(obj).__name__}, requiredType: STRUCT"
            )
        upper = None
        out = []
        for name, up, conv in convs:
            if name in obj:
                v = obj[name]
            else:
                if upper is None:
                    upper = {str(k).upper(): x for k, x in obj.items()}
                v = upper.get(up)
            out.append(None if v is None else conv(v))
        return out

    return wrapped


def json_serializer(columns: Sequence[ColumnDef], wrap: bool) -> Serializer:
    names = [n for n, _ in columns]
    types = [t for _, t in columns]
    simple = all(t.base in ("INTEGER", "BIGINT", "STRING", "BOOLEAN", "DOUBLE") for t in types)
    if not wrap:
        t0 = types[0]
        return lambda row: dumps(_json_ready(row[0], t0)).encode()
    if simple:

        def fast(row: Sequence[Any]) -> bytes:
            return json.dumps(
                dict(zip(names, row, strict=True)),
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=True,
            ).encode()

        return fast

    def slow(row: Sequence[Any]) -> bytes:
        obj = {n: _json_ready(v, t) for n, v, t in zip(names, row, types, strict=True)}
        return dumps(obj).encode()

    return slow


# ----------------------------------------------------------------------------- DELIMITED


def _delimited_parser(typ: SqlType) -> Callable[[str], Any]:
    base = typ.base
    if base in ("INTEGER", "BIGINT"):
        return int
    if base == "DOUBLE":
        return float
    if base == "STRING":
        return str
    if base == "BOOLEAN":

        def boolean(s: str) -> bool:
            low = s.strip().lower()
            if low not in ("true", "false"):
                raise SerdeError(f"Can't coerce '{s}' to BOOLEAN")
            return low == "true"

        return boolean
    if base == "DECIMAL":
        q = Decimal(1).scaleb(-typ.scale)
        return lambda s: Decimal(s).quantize(q, context=_DEC_CTX)
    if base in ("TIMESTAMP", "DATE", "TIME"):
        return int
    if base == "BYTES":
        return base64.b64decode
    raise KsqlError(f"The 'DELIMITED' format does not support type '{base}'")


def delimited_deserializer(columns: Sequence[ColumnDef], delimiter: str) -> Deserializer:
    """Split (csv only when quotes need it) and convert every field with one generated function:
    the DELIMITED source is the pipeline's hot path."""
    parsers = [_delimited_parser(t) for _, t in columns]
    n = len(parsers)
    ns: dict[str, Any] = {f"_p{i}": p for i, p in enumerate(parsers)}
    pieces = []
    i = 0
    while i < n:
        j = i
        while j < n and parsers[j] is parsers[i]:
            j += 1
        p = parsers[i]
        if j - i > 2 and p is not str:
            # a run of same-typed columns: one map() when none of them is empty
            pieces.append(
                f"(list(map(_p{i}, s{i})) if '' not in (s{i} := f[{i}:{j}]) else "
                f"[None if x == '' else _p{i}(x) for x in s{i}])"
            )
        else:
            cells = []
            for k in range(i, j):
                if parsers[k] is str:
                    cells.append(f"(None if (x{k} := f[{k}]) == '' else x{k})")
                else:
                    cells.append(f"(None if (x{k} := f[{k}]) == '' else _p{k}(x{k}))")
            pieces.append("[" + ", ".join(cells) + "]")
        i = j
    src = "def _convert(f):\n    return " + " + ".join(pieces) + "\n"
    exec(compile(src, "<delimited>", "exec"), ns)
    convert = ns["_convert"]
    reader = csv.reader

    def split(text: str) -> list[str]:
        fields = text.split(delimiter)
        if '"' not in text:
            return fields
        stripped = [f[1:-1] if len(f) > 1 and f[0] == '"' and f[-1] == '"' else f for f in fields]
        if any('"' in f for f in stripped):
            return next(reader([text], delimiter=delimiter, strict=False), [])
        return stripped

    def batch(values: list[bytes | None]) -> list[Any]:
        """Many records at once: one csv.reader pass over the batch (C speed)."""
        try:
            texts = [v.decode("utf-8") if v is not None else "" for v in values]
        except UnicodeDecodeError:  # the bad record gets its error in place, the others values
            return [_safe(deser, v) for v in values]
        joined = "".join(texts)
        if "\n" in joined or "\r" in joined:
            return [_safe(deser, v) for v in values]
        parsed = list(reader(texts, delimiter=delimiter, strict=False))
        if len(parsed) != len(values):  # an open quote ran on into the next record
            return [_safe(deser, v) for v in values]
        out: list[Any] = []
        for v, fields in zip(values, parsed, strict=True):
            if v is None:
                out.append(None)
            elif len(fields) != n:
                out.append(
                    SerdeError(f"Unexpected field count, csvFields:{len(fields)} schemaFields:{n}")
                )
            else:
                try:
                    out.append(convert(fields))
                except (ValueError, ArithmeticError) as exc:
                    out.append(SerdeError(f"Failed to deserialise a field: {exc}"))
        return out

    def deser(data: bytes | None) -> list[Any] | None:
        if data is None:
            return None
        fields = split(data.decode("utf-8"))
        if len(fields) != n:
            raise SerdeError(f"Unexpected field count, csvFields:{len(fields)} schemaFields:{n}")
        try:
            return convert(fields)  # type: ignore[no-any-return]
        except (ValueError, ArithmeticError) as exc:
            raise SerdeError(f"Failed to deserialise a field: {exc}") from exc

    deser.batch = batch  # type: ignore[attr-defined]
    # column-wise decoding of a whole batch (None for batches it can't take): see columnar.py
    deser.columns = delimited_columns_decoder([t for _, t in columns], delimiter)  # type: ignore[attr-defined]
    return deser


def _safe(fn: Deserializer, v: bytes | None) -> Any:
    try:
        return fn(v)
    except Exception as exc:
        return exc if isinstance(exc, SerdeError) else SerdeError(str(exc))


def deserialize_batch(fn: Deserializer, values: list[bytes | None]) -> list[Any]:
    """Deserialize many values; a failing one yields its SerdeError in place."""
    batch = getattr(fn, "batch", None)
    if batch is not None:
        return batch(values)  # type: ignore[no-any-return]
    return [_safe(fn, v) for v in values]


def _delimited_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return java_double(v)
    if isinstance(v, Decimal):
        return f"{v:f}"
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return str(v)


def _needs_quotes(s: str, first: bool, delimiter: str) -> bool:
    """Apache Commons CSV's QuoteMode.MINIMAL rule, which ksqlDB's DELIMITED writer uses."""
    if not s:
        return first
    c = s[0]
    if c <= "#":
        return True
    if (first and not c.isascii()) or (first and not c.isalnum()):
        return True
    if any(ch in s for ch in ("\n", "\r", '"', delimiter)):
        return True
    return s[-1] <= " "


def delimited_serializer(columns: Sequence[ColumnDef], delimiter: str) -> Serializer:
    def field(v: Any, first: bool) -> str:
        if v is None:
            return ""
        s = _delimited_text(v)
        if _needs_quotes(s, first, delimiter):
            return '"' + s.replace('"', '""') + '"'
        return s

    def ser(row: Sequence[Any]) -> bytes:
        return delimiter.join(field(v, i == 0) for i, v in enumerate(row)).encode("utf-8")

    return ser


# ----------------------------------------------------------------------------- KAFKA

_PACK = {
    "INTEGER": struct.Struct(">i"),
    "BIGINT": struct.Struct(">q"),
    "DOUBLE": struct.Struct(">d"),
}


_JAVA_DESER = {
    "INTEGER": "IntegerDeserializer",
    "BIGINT": "LongDeserializer",
    "DOUBLE": "DoubleDeserializer",
}


def kafka_deserializer(columns: Sequence[ColumnDef]) -> Deserializer:
    if not columns:
        return lambda data: []
    typ = columns[0][1]
    base = typ.base
    if base == "STRING":
        return lambda data: [None if data is None else data.decode("utf-8")]
    if base == "BYTES":
        return lambda data: [data]
    packer = _PACK.get(base)
    if packer is None:
        raise KsqlError(f"The 'KAFKA' format does not support type '{base}'")

    def deser(data: bytes | None) -> list[Any]:
        if data is None:
            return [None]
        if len(data) != packer.size:
            raise SerdeError(f"Size of data received by {_JAVA_DESER[base]} is not {packer.size}")
        return [packer.unpack(data)[0]]

    return deser


def kafka_serializer(columns: Sequence[ColumnDef]) -> Serializer:
    if not columns:
        return lambda row: None
    base = columns[0][1].base
    if base == "STRING":
        return lambda row: None if row[0] is None else row[0].encode("utf-8")
    if base == "BYTES":
        return lambda row: row[0]
    packer = _PACK[base]
    if base == "DOUBLE":
        return lambda row: None if row[0] is None else packer.pack(float(row[0]))
    return lambda row: None if row[0] is None else packer.pack(row[0])


def decode_timestamp_value(v: Any) -> int:
    """A TIMESTAMP column value as epoch ms (Avro gives datetimes)."""
    if hasattr(v, "timestamp"):
        return int((v.replace(tzinfo=None) - EPOCH).total_seconds() * 1000)
    return int(v)


__all__ = ["SerdeError", "dumps", "io"]
