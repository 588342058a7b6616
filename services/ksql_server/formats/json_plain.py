"""The JSON format (schemaless): ksqlDB's JSON values, Decimals written with their exact digits."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.formats.base import Deserializer, SerdeError, Serializer, coercer
from services.ksql_server.types import ColumnDef, SqlType
from services.ksql_server.values import java_double


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
    """json.dumps that writes Decimal values as exact numbers, and NaN and the infinities as
    the strings Jackson writes for them ("NaN", "Infinity", "-Infinity"): bare NaN is no JSON."""
    if not _has_decimal(obj):
        try:
            return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:
            return json.dumps(_finite(obj), separators=(",", ":"), ensure_ascii=False)
    return _encode_decimal(_finite(obj))


def _finite(obj: Any) -> Any:
    """`obj` with every non-finite float as Jackson's string for it."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


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
            obj = dict(zip(names, row, strict=True))
            try:
                text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            except ValueError:  # NaN or an infinity: written as Jackson writes them
                text = dumps(obj)
            return text.encode()

        return fast

    def slow(row: Sequence[Any]) -> bytes:
        obj = {n: _json_ready(v, t) for n, v, t in zip(names, row, types, strict=True)}
        return dumps(obj).encode()

    return slow
