"""Confluent-framed Avro records → the feature matrix, column-wise, without per-record dicts.

The trainer reads hundreds of thousands of records; decoding each into a Python dict and then
copying 30 floats out of it costs several microseconds per record, far more than consuming it.
Records of one writer schema and one byte length almost always share one byte layout (all
features non-null doubles, a one-character CLASS string), so a batch is grouped by (schema id,
length), the layout is read once from the first record of a group, every other record of the
group is *checked* to have that layout (union branch bytes, varint lengths), and then each
feature column is one strided numpy read. Records that fail the check, or whose schema has types
this reader does not walk, fall back to fastavro + `extract_features`, so the result is the same
as the record-by-record path: the same rows kept, the same labels, the same rejection reasons.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
import numpy as np

from services.common.avro import HEADER, MAGIC_BYTE, SchemaCache
from services.common.features import _label, extract_features
from services.common.topics import AVRO_FEATURE_FIELDS

_SIMPLE = {"null", "boolean", "int", "long", "float", "double", "string", "bytes"}


class _Unsupported(Exception):
    """The schema or the record uses something the column reader does not walk."""


@dataclass(frozen=True)
class _Field:
    kind: str
    pos: int
    size: int


@dataclass(frozen=True)
class _Layout:
    """Byte layout of one record: where each field sits, and which bytes pin the layout."""

    fields: dict[str, _Field]
    check_pos: np.ndarray
    check_mask: np.ndarray
    check_value: np.ndarray


def _field_types(parsed: Any) -> list[tuple[str, list[str]]]:
    """(name, union branch kinds) of a flat record schema, or _Unsupported."""
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise _Unsupported("not a record")
    out = []
    for f in parsed["fields"]:
        typ = f["type"]
        branches = typ if isinstance(typ, list) else [typ]
        kinds = []
        for b in branches:
            kind = b if isinstance(b, str) else b.get("type") if isinstance(b, dict) else None
            if isinstance(b, dict) and b.get("logicalType"):
                kind = None
            if kind not in _SIMPLE:
                raise _Unsupported(f"field {f['name']} has type {b!r}")
            kinds.append(kind)
        out.append((f["name"], kinds if isinstance(typ, list) else ["!" + kinds[0]]))
    return out


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(zigzag-decoded value, byte count) of the varint at pos."""
    shift = result = 0
    start = pos
    while True:
        if pos >= len(buf):
            raise _Unsupported("truncated varint")
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos - start
        shift += 7


_FIXED = {"null": 0, "boolean": 1, "float": 4, "double": 8}


def _layout(body: bytes, start: int, types: list[tuple[str, list[str]]]) -> _Layout:
    """Walk one record from `start` (just after the header) and note its layout."""
    pos = start
    fields: dict[str, _Field] = {}
    checks: list[tuple[int, int, int]] = []
    for name, kinds in types:
        if kinds[0].startswith("!"):
            kind = kinds[0][1:]
        else:
            branch, n = _varint(body, pos)
            checks.extend((pos + k, 0xFF, body[pos + k]) for k in range(n))
            pos += n
            if not 0 <= branch < len(kinds):
                raise _Unsupported("union branch out of range")
            kind = kinds[branch]
        if kind in _FIXED:
            fields[name] = _Field(kind, pos, _FIXED[kind])
            pos += _FIXED[kind]
        elif kind in ("int", "long"):
            _value, n = _varint(body, pos)
            checks.extend((pos + k, 0x80, body[pos + k] & 0x80) for k in range(n))
            fields[name] = _Field(kind, pos, n)
            pos += n
        else:  # string, bytes: length varint pinned exactly, content free
            length, n = _varint(body, pos)
            checks.extend((pos + k, 0xFF, body[pos + k]) for k in range(n))
            fields[name] = _Field(kind, pos + n, length)
            pos += n + length
    if pos != len(body):
        raise _Unsupported("record length does not match its layout")
    arr = np.array(checks, dtype=np.int64).reshape(-1, 3)
    return _Layout(fields, arr[:, 0], arr[:, 1].astype(np.uint8), arr[:, 2].astype(np.uint8))


def _varint_column(mat: np.ndarray, f: _Field) -> np.ndarray:
    raw = np.zeros(len(mat), dtype=np.uint64)
    for k in range(f.size):
        raw |= (mat[:, f.pos + k].astype(np.uint64) & np.uint64(0x7F)) << np.uint64(7 * k)
    return ((raw >> np.uint64(1)).astype(np.int64)) ^ -((raw & np.uint64(1)).astype(np.int64))


def _numeric_column(mat: np.ndarray, f: _Field) -> np.ndarray | None:
    """float64 column of a numeric field, or None when the field is null in this layout."""
    if f.kind == "null":
        return None
    if f.kind in ("double", "float"):
        dtype = "<f8" if f.kind == "double" else "<f4"
        block = np.ascontiguousarray(mat[:, f.pos : f.pos + f.size])
        return block.view(dtype).reshape(-1).astype(np.float64)
    if f.kind == "boolean":
        return mat[:, f.pos].astype(np.float64)
    if f.kind in ("int", "long"):
        return _varint_column(mat, f).astype(np.float64)
    raise _Unsupported(f"numeric feature stored as {f.kind}")


def _label_column(mat: np.ndarray, f: _Field | None) -> np.ndarray:
    n = len(mat)
    if f is None or f.kind == "null":
        return np.full(n, -1, dtype=np.int8)
    if f.kind in ("string", "bytes"):
        if f.size == 0:
            raw = np.full(n, b"", dtype="S1")
        else:
            raw = np.ascontiguousarray(mat[:, f.pos : f.pos + f.size]).view(f"S{f.size}")
        uniques, inverse = np.unique(raw, return_inverse=True)
        mapped = np.array([_label(u.decode("utf-8", "replace")) for u in uniques], dtype=np.int8)
        return mapped[inverse.reshape(-1)]
    column = _numeric_column(mat, f)
    assert column is not None
    return np.array([_label(v) for v in column], dtype=np.int8) if n else np.empty(0, np.int8)


@dataclass
class DecodedBatch:
    """Kept rows (in input order), labels, their input indices, and every rejection."""

    features: np.ndarray
    labels: np.ndarray
    kept: np.ndarray
    rejected: list[tuple[int, str]]
    fast_rows: int = 0


class ColumnarDecoder:
    """Decodes batches of framed values straight into a float32 feature matrix."""

    def __init__(
        self,
        schemas: SchemaCache,
        fields: Sequence[str] = AVRO_FEATURE_FIELDS,
        label_field: str = "CLASS",
    ) -> None:
        self._schemas = schemas
        self.fields = tuple(fields)
        self.label_field = label_field
        self._types: dict[int, list[tuple[str, list[str]]] | None] = {}
        self._layouts: dict[tuple[int, int], _Layout | None] = {}

    def _schema_types(self, schema_id: int) -> list[tuple[str, list[str]]] | None:
        """Field kinds of a writer schema; None (record-by-record path) when it has types the
        column reader does not walk, or cannot be fetched now (the slow path then records why)."""
        if schema_id not in self._types:
            try:
                parsed = self._schemas.get(schema_id)
            except Exception:
                return None  # not cached: the next batch asks the registry again
            try:
                self._types[schema_id] = _field_types(parsed)
            except _Unsupported:
                self._types[schema_id] = None
        return self._types[schema_id]

    def decode(self, values: Sequence[bytes | None]) -> DecodedBatch:
        n = len(values)
        out = np.empty((n, len(self.fields)), dtype=np.float32)
        labels = np.full(n, -1, dtype=np.int8)
        ok = np.zeros(n, dtype=bool)
        reasons: dict[int, str] = {}
        slow: list[int] = []
        lengths = np.fromiter((len(v) if v is not None else -1 for v in values), np.int64, n)
        fast = 0
        for length in np.unique(lengths):
            idx = np.flatnonzero(lengths == length)
            if length < HEADER.size:
                for i in idx:
                    reasons[int(i)] = (
                        "record is null" if length < 0 else "value too short for the wire format"
                    )
                continue
            chunk = b"".join([values[i] for i in idx.tolist()])  # type: ignore[misc]
            mat = np.frombuffer(chunk, dtype=np.uint8)
            mat = mat.reshape(len(idx), int(length))
            ids = mat[:, 1:5].copy().view(">u4").reshape(-1)
            bad_magic = mat[:, 0] != MAGIC_BYTE
            for i in idx[bad_magic]:
                reasons[int(i)] = f"unknown magic byte {values[i][0]}"  # type: ignore[index]
            for schema_id in np.unique(ids[~bad_magic]):
                sel = (ids == schema_id) & ~bad_magic
                fast += self._decode_group(
                    int(schema_id), mat[sel], idx[sel], out, labels, ok, reasons, slow
                )
        if slow:
            self._decode_slow(values, slow, out, labels, ok, reasons)
        kept = np.flatnonzero(ok)
        rejected = sorted(reasons.items())
        return DecodedBatch(out[kept], labels[kept], kept, rejected, fast)

    def _decode_group(
        self,
        schema_id: int,
        mat: np.ndarray,
        idx: np.ndarray,
        out: np.ndarray,
        labels: np.ndarray,
        ok: np.ndarray,
        reasons: dict[int, str],
        slow: list[int],
    ) -> int:
        """Column-read the rows of `mat` that match the group's layout; queue the rest."""
        types = self._schema_types(schema_id)
        key = (schema_id, mat.shape[1])
        layout = self._layouts.get(key)
        if types is not None and key not in self._layouts:
            try:
                layout = _layout(mat[0].tobytes(), HEADER.size, types)
            except _Unsupported:
                layout = None
            self._layouts[key] = layout
        if layout is None or any(
            name in layout.fields and layout.fields[name].kind in ("string", "bytes")
            for name in self.fields
        ):
            slow.extend(int(i) for i in idx)
            return 0
        match = np.all((mat[:, layout.check_pos] & layout.check_mask) == layout.check_value, axis=1)
        slow.extend(int(i) for i in idx[~match])
        mat, idx = mat[match], idx[match]
        if len(idx) == 0:
            return 0
        good = np.ones(len(idx), dtype=bool)
        block = np.empty((len(idx), len(self.fields)), dtype=np.float64)
        missing = [name for name in self.fields if name not in layout.fields]
        for j, name in enumerate(self.fields):
            column = None if name in missing else _numeric_column(mat, layout.fields[name])
            if column is None:  # null (or absent) in this layout: every row lacks it
                for i in idx[good]:
                    reasons[int(i)] = f"missing feature {name}"
                good[:] = False
                break
            finite = np.isfinite(column)
            for i, value in zip(idx[good & ~finite], column[good & ~finite], strict=True):
                reasons[int(i)] = f"non-finite feature {name}={float(value)}"
            good &= finite
            block[:, j] = column
        kept_idx = idx[good]
        with np.errstate(over="ignore"):  # as extract_features: a huge double becomes inf
            out[kept_idx] = block[good]
        labels[kept_idx] = _label_column(mat[good], layout.fields.get(self.label_field))
        ok[kept_idx] = True
        return len(idx)

    def _decode_slow(
        self,
        values: Sequence[bytes | None],
        slow: list[int],
        out: np.ndarray,
        labels: np.ndarray,
        ok: np.ndarray,
        reasons: dict[int, str],
    ) -> None:
        """Record by record with fastavro, judged by `extract_features` itself."""
        records: list[Any] = []
        positions: list[int] = []
        unavailable: dict[int, str] = {}  # ask the registry once per schema id and batch
        for i in slow:
            value = values[i]
            assert value is not None
            schema_id = HEADER.unpack_from(value)[1]
            if schema_id in unavailable:
                reasons[i] = unavailable[schema_id]
                continue
            try:
                parsed = self._schemas.get(schema_id)
            except Exception as exc:
                unavailable[schema_id] = reasons[i] = f"unknown schema id {schema_id}: {exc}"
                continue
            try:
                body = io.BytesIO(memoryview(value)[HEADER.size :])
                records.append(fastavro.schemaless_reader(body, parsed, None))  # type: ignore[call-arg]
                positions.append(i)
            except Exception as exc:
                reasons[i] = f"cannot decode Avro body with schema {schema_id}: {exc}"
        batch = extract_features(records, self.fields, self.label_field)
        where = np.asarray(positions, dtype=np.int64)
        out[where[batch.kept]] = batch.features
        labels[where[batch.kept]] = batch.labels
        ok[where[batch.kept]] = True
        for j, reason in batch.rejected:
            reasons[int(where[j])] = reason
