"""What every format's codec stands on: the (de)serializer types, SerdeError, the format names,
the schema checks per format (`validate_format`) and the coercion of JSON-ish values to column
types (`coercer`).

One module per format sits on top of this one (`kafka`, `delimited`, `json_plain`, `avro`,
`json_sr`, `protobuf`) and none imports a sibling; `factory` is the one place that knows them all.
Each factory returns a closure specialised to the columns, so the per-record work is a split or
a json.loads plus one converter call per column. Deserializers return the column values as a
list (None for a null/tombstone record) and raise SerdeError with ksqlDB's reason otherwise.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from services.common.errors import RecordRejected
from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError, KsqlServiceError, UnsupportedError
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.types import ColumnDef, SqlType
from services.ksql_server.values import EPOCH, java_double, parse_timestamp

Deserializer = Callable[[bytes | None], list[Any] | None]
Serializer = Callable[[Sequence[Any]], bytes | None]

DECIMAL_CONTEXT = __import__("decimal").Context(prec=100)
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
                f"reason: The '{name}' format does not support type '{typ.base}'"
                # ksqlDB's DELIMITED names the column, its KAFKA format does not
                + (f", column: `{col}`" if name == "DELIMITED" else "")
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


_EPOCH_DAY = _dt.date(1970, 1, 1)


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
            return d.quantize(q, context=DECIMAL_CONTEXT)

        return dec
    if base in ("TIMESTAMP", "TIME", "DATE"):

        def temporal(v: Any) -> int:
            if isinstance(v, str) and base == "TIMESTAMP" and not v.lstrip("-").isdigit():
                return parse_timestamp(v)
            if hasattr(v, "timestamp"):
                return int(v.timestamp() * 1000)
            if isinstance(v, _dt.date):  # Avro's `date` logical type, decoded
                return (v - _EPOCH_DAY).days
            if isinstance(v, _dt.time):  # Avro's `time-millis`, decoded
                return ((v.hour * 60 + v.minute) * 60 + v.second) * 1000 + v.microsecond // 1000
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


def safe_deserialize(fn: Deserializer, v: bytes | None) -> Any:
    try:
        return fn(v)
    except Exception as exc:
        return exc if isinstance(exc, SerdeError) else SerdeError(str(exc))


def deserialize_batch(fn: Deserializer, values: list[bytes | None]) -> list[Any]:
    """Deserialize many values; a failing one yields its SerdeError in place."""
    batch = getattr(fn, "batch", None)
    if batch is not None:
        return batch(values)  # type: ignore[no-any-return]
    return [safe_deserialize(fn, v) for v in values]


def decode_timestamp_value(v: Any) -> int:
    """A TIMESTAMP column value as epoch ms (Avro gives datetimes)."""
    if hasattr(v, "timestamp"):
        return int((v.replace(tzinfo=None) - EPOCH).total_seconds() * 1000)
    return int(v)
