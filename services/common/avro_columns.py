"""Confluent-framed Avro records of flat schemas → typed columns → the feature matrix: the hot
path of both the trainer (hundreds of thousands of records) and the scorer.

fastavro decodes one record per call (about 17 µs for the 34-field transaction record), which
caps a Python consumer near 60,000 records/s before any model runs. The pipeline's records are
flat: every field is a primitive or a `["null", primitive]` union, exactly what ksqlDB writes.
For such a schema one numba-compiled loop walks every record of a batch (a union index byte,
then a fixed-width value or a zig-zag varint; a string is a varint length and that many UTF-8
bytes) and writes each field into a typed column: a few nanoseconds per field, no Python object
per record (`services.common.avro_flat.walk_records`).

Correctness rests on two checks made for every record: no read crosses the record's own end,
and the walk ends exactly at that end. A record that fails either (corrupt, truncated, an
unexpected union branch, a string that is not UTF-8) is reported as not decoded, and the caller
falls back to fastavro for it, which also produces the precise error message. Features and
labels follow `services.common.features` (`extract_features`) to the letter, reasons included.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
import numpy as np

from services.common.avro import HEADER, MAGIC_BYTE, SchemaCache
from services.common.avro_flat import (
    FLOAT_KINDS,
    KIND_BOOLEAN,
    KIND_VARINT,
    KINDS,
    encode_records,
    slots_of,
    walk_features,
    walk_records,
)
from services.common.features import _label, extract_features
from services.common.topics import AVRO_FEATURE_FIELDS

PAD = 16
"""Zero bytes after a joined batch, so its buffer is never empty (a batch of tombstones still
has a byte for `frame_values` to read headers from)."""
_PAD_BYTES = b"\x00" * PAD


@dataclass(frozen=True)
class FieldPlan:
    """How to read one field: its primitive type and where null sits in its union (if any)."""

    name: str
    type: str
    null_branch: int | None
    """None: not a union; 0 or 1: the union branch index that is null."""


def plan_schema(schema: Any) -> list[FieldPlan] | None:
    """A plan for a flat record schema, or None when the schema needs the general decoder."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    plans: list[FieldPlan] = []
    for field in schema.get("fields", []):
        plan = _plan_field(field.get("name"), field.get("type"))
        if plan is None:
            return None
        plans.append(plan)
    return plans


def _primitive(typ: Any) -> str | None:
    if isinstance(typ, dict) and "logicalType" not in typ:
        typ = typ.get("type")
    return typ if isinstance(typ, str) and typ in KINDS else None


def _plan_field(name: Any, typ: Any) -> FieldPlan | None:
    if not isinstance(name, str):
        return None
    if isinstance(typ, list):
        if len(typ) != 2 or "null" not in typ:
            return None
        null_branch = typ.index("null")
        primitive = _primitive(typ[1 - null_branch])
        return None if primitive is None else FieldPlan(name, primitive, null_branch)
    primitive = _primitive(typ)
    return None if primitive is None else FieldPlan(name, primitive, None)


@dataclass
class Column:
    """One decoded field over the batch: values (numeric) or byte spans (string/bytes)."""

    plan: FieldPlan
    present: np.ndarray
    """bool [n]: False where the value is null."""
    values: np.ndarray | None = None
    """numeric values (float64 / int64 / bool), garbage where not present."""
    starts: np.ndarray | None = None
    lengths: np.ndarray | None = None


class ColumnarBatch:
    """The decoded columns of a batch, plus which records decoded cleanly."""

    def __init__(self, buf: np.ndarray, columns: dict[str, Column], ok: np.ndarray) -> None:
        self._buf = buf
        self.columns = columns
        self.ok = ok
        """bool [n]: the record was decoded by the fast path (others need fastavro)."""

    @property
    def buffer(self) -> np.ndarray:
        """The bytes the string columns' spans point into."""
        return self._buf

    def numeric(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(values as float64, present) of a numeric field, or None if not numeric/absent."""
        col = self.columns.get(name)
        if col is None or col.values is None:
            return None
        return col.values.astype(np.float64, copy=False), col.present

    def record(self, i: int, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """Record i as fastavro would return it, or only `fields` of it (the few rows that
        alert need five fields, not 34)."""
        names = self.columns if fields is None else [f for f in fields if f in self.columns]
        out: dict[str, Any] = {}
        for name in names:
            col = self.columns[name]
            if not col.present[i]:
                out[name] = None
            elif col.values is not None:
                out[name] = col.values[i].item()
            else:
                assert col.starts is not None and col.lengths is not None
                start = int(col.starts[i])
                raw = self._buf[start : start + int(col.lengths[i])].tobytes()
                out[name] = raw.decode() if col.plan.type == "string" else raw
        return out


@dataclass
class Framing:
    """A batch of Confluent-framed values joined into one buffer, each value's wire-format
    header read with numpy (no per-record Python beyond a length)."""

    buf: np.ndarray
    """every value joined, then PAD zero bytes"""
    lengths: np.ndarray
    """int64 [n]: each value's length, -1 for a tombstone (None)"""
    starts: np.ndarray
    ends: np.ndarray
    magic: np.ndarray
    """uint8 [n]: first byte (meaningless where not `framed`)"""
    schema_ids: np.ndarray
    """uint32 [n]: the big-endian id after the magic byte (likewise)"""

    @property
    def framed(self) -> np.ndarray:
        """Long enough to hold the header."""
        return self.lengths >= HEADER.size

    @property
    def good(self) -> np.ndarray:
        """Framed and with the Confluent magic byte."""
        return self.framed & (self.magic == MAGIC_BYTE)

    def by_schema(self) -> list[tuple[int, np.ndarray]]:
        """(schema id, indices) of the good values, grouped by writer schema id."""
        good = self.good
        return [
            (int(schema_id), np.flatnonzero(good & (self.schema_ids == schema_id)))
            for schema_id in np.unique(self.schema_ids[good])
        ]


def join_values(
    values: Sequence[bytes | memoryview | None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A consumed batch as one buffer: (every value joined, then PAD zero bytes; each value's
    length, -1 for a tombstone; where each starts; where each ends). A tombstone occupies no
    bytes (start == end)."""
    n = len(values)
    try:
        lengths = np.fromiter(map(len, values), np.int64, count=n)  # type: ignore[arg-type]
        present: Sequence[bytes | memoryview | None] = values
    except TypeError:  # a tombstone (None) in the batch
        lengths = np.fromiter((-1 if v is None else len(v) for v in values), np.int64, n)
        present = [v for v in values if v is not None]
    sizes = np.maximum(lengths, 0)
    ends = np.cumsum(sizes)
    # the padding joins in with the values: no second copy of the batch to append it
    buf = np.frombuffer(b"".join([*present, _PAD_BYTES]), dtype=np.uint8)  # type: ignore[list-item]
    return buf, lengths, ends - sizes, ends


def frame_values(values: Sequence[bytes | None]) -> Framing:
    """Join a consumed batch and read every header at once."""
    buf, lengths, starts, ends = join_values(values)
    head = buf[np.clip(starts[:, None] + np.arange(HEADER.size), 0, len(buf) - 1)]
    schema_ids = (head[:, 1:].astype(np.uint32) << np.array([24, 16, 8, 0], np.uint32)).sum(
        axis=1, dtype=np.uint32
    )
    return Framing(buf, lengths, starts, ends, head[:, 0], schema_ids)


@dataclass
class FramedFeatures:
    """The features of a batch of framed values, read by one compiled pass (`walk_features`),
    and the joined buffer to decode any of its records' other fields from later."""

    features: np.ndarray
    """float32 [n, len(fields)]; rows where `ok` is False hold garbage."""
    ok: np.ndarray
    """bool [n]: framed with the expected header, decoded cleanly, every feature usable."""
    buf: np.ndarray
    starts: np.ndarray
    """int64 [n]: where each whole value (header included) starts in buf."""
    ends: np.ndarray

    def columns(self, rows: np.ndarray, plans: list[FieldPlan]) -> ColumnarBatch:
        """Every field of these rows (only the few that alert need them), row k = rows[k]."""
        return decode_columns_at(self.buf, self.starts[rows] + HEADER.size, self.ends[rows], plans)


def framed_features(
    values: Sequence[bytes | None], header: bytes, plans: list[FieldPlan], fields: Sequence[str]
) -> FramedFeatures:
    """The scorer's fast path: features straight from the Kafka values of one writer schema
    (`header`: magic byte and schema id), with no per-field column in between. The fields must
    pass `numeric_features`; rows that are not `ok` (a tombstone among them) are for the general
    path, which knows what is wrong with them."""
    buf, _, starts, ends = join_values(values)  # a tombstone: no bytes, too short to be framed
    column = {name: j for j, name in enumerate(fields)}
    features = np.empty((len(values), len(fields)), dtype=np.float32)
    ok = walk_features(
        buf,
        starts,
        ends,
        np.frombuffer(header, dtype=np.uint8),
        *_kinds_and_nulls(plans),
        np.array([column.get(p.name, -1) for p in plans], dtype=np.int64),
        features,
    )
    return FramedFeatures(features, ok, buf, starts, ends)


def _kinds_and_nulls(plans: Sequence[FieldPlan]) -> tuple[np.ndarray, np.ndarray]:
    """The walkers' view of a plan: each field's kind, and its null union branch (-1: none)."""
    kinds = np.array([KINDS[p.type] for p in plans], dtype=np.int8)
    nulls = np.array([-1 if p.null_branch is None else p.null_branch for p in plans], np.int8)
    return kinds, nulls


def decode_columns(bodies: Sequence[bytes | memoryview], plans: list[FieldPlan]) -> ColumnarBatch:
    """Decode Avro bodies (no wire-format header) of one flat schema."""
    buf, _, starts, ends = join_values(bodies)
    return decode_columns_at(buf, starts, ends, plans)


def decode_columns_at(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, plans: list[FieldPlan]
) -> ColumnarBatch:
    """Decode the bodies found at buf[starts[i]:ends[i]]."""
    n = len(starts)
    kinds, nulls = _kinds_and_nulls(plans)
    slots, (n_floats, n_ints, n_spans) = slots_of(kinds.tolist())
    floats = np.empty((n_floats, n), dtype=np.float64)
    ints = np.empty((n_ints, n), dtype=np.int64)
    spans = np.empty((n_spans, 2, n), dtype=np.int64)
    present = np.empty((len(plans), n), dtype=np.bool_)
    ok = np.empty(n, dtype=np.bool_)
    walk_records(
        buf,
        starts.astype(np.int64, copy=False),
        ends.astype(np.int64, copy=False),
        kinds,
        nulls,
        slots,
        floats,
        ints,
        spans,
        present,
        ok,
    )
    columns: dict[str, Column] = {}
    for j, plan in enumerate(plans):
        kind, slot = int(kinds[j]), int(slots[j])
        if kind == KIND_BOOLEAN:
            columns[plan.name] = Column(plan, present[j], values=floats[slot] == 1.0)
        elif kind in FLOAT_KINDS:
            columns[plan.name] = Column(plan, present[j], values=floats[slot])
        elif kind == KIND_VARINT:
            columns[plan.name] = Column(plan, present[j], values=ints[slot])
        else:
            columns[plan.name] = Column(
                plan, present[j], starts=spans[slot, 0], lengths=spans[slot, 1]
            )
    return ColumnarBatch(buf, columns, ok)


def warm_up() -> None:
    """Load (or compile, the first time) the decoding and alert-encoding kernels now rather
    than in the first batch."""
    plans = [FieldPlan("x", "double", 0)]
    batch = decode_columns([b"\x02" + bytes(8)], plans)
    header = HEADER.pack(MAGIC_BYTE, 1)
    framed_features([header + b"\x02" + bytes(8)], header, plans, ["x"])
    column = batch.columns["x"]
    assert column.values is not None
    encode_records(
        np.zeros(5, np.uint8),
        batch.buffer,
        np.zeros(0, np.uint8),
        np.array([KINDS["double"]], np.int8),
        np.zeros(1, np.int64),
        column.values.reshape(1, 1),
        np.zeros((0, 1), np.int64),
        np.zeros((0, 2, 1), np.int64),
        column.present.reshape(1, 1),
    )


def numeric_features(plans: Sequence[FieldPlan], fields: Sequence[str]) -> bool:
    """Every feature field is in the schema with a numeric type (else: the general path)."""
    types = {p.name: p.type for p in plans}
    return all(types.get(f) in ("int", "long", "float", "double") for f in fields)


def features_from_columns(
    batch: ColumnarBatch, fields: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Features (float32) of every row, which rows are usable, and extract_features' reason for
    the others (the first bad field in field order, with the same wording). The fields must
    pass `numeric_features`."""
    n = len(batch.ok)
    x = np.empty((n, len(fields)), dtype=np.float32)
    bad = np.zeros((n, len(fields)), dtype=bool)
    for j, name in enumerate(fields):
        column = batch.numeric(name)
        assert column is not None
        values, present = column
        with np.errstate(over="ignore", invalid="ignore"):  # a huge double becomes inf
            x[:, j] = values
        bad[:, j] = ~present | ~np.isfinite(values)
    usable = batch.ok & ~bad.any(axis=1)
    reasons: dict[int, str] = {}
    for row in np.flatnonzero(batch.ok & ~usable):
        j = int(np.argmax(bad[row]))
        name = fields[j]
        if not batch.columns[name].present[row]:
            reasons[int(row)] = f"missing feature {name}"
        else:
            value = float(batch.columns[name].values[row])  # type: ignore[index]
            reasons[int(row)] = f"non-finite feature {name}={value}"
    return x, usable, reasons


def labels_from_columns(batch: ColumnarBatch, rows: np.ndarray, label_field: str) -> np.ndarray:
    """The label of each row (`features._label`: 1, 0, or -1 for none/unparseable); each
    distinct label value is parsed once."""
    column = batch.columns.get(label_field)
    if column is None or len(rows) == 0:
        return np.full(len(rows), -1, dtype=np.int8)
    if column.values is not None:
        values = [
            v if p else None
            for v, p in zip(
                column.values[rows].tolist(), column.present[rows].tolist(), strict=True
            )
        ]
        return np.array([_label(v) for v in values], dtype=np.int8)
    assert column.starts is not None and column.lengths is not None
    starts, lengths = column.starts[rows], column.lengths[rows]
    present = column.present[rows]
    width = int(lengths[present].max()) if present.any() else 0
    if width > 7:  # long label strings (unusual): one Python decode per row
        buf = batch.buffer
        return np.array(
            [
                _label(buf[a : a + n].tobytes().decode("utf-8") if here else None)
                for a, n, here in zip(
                    starts.tolist(), lengths.tolist(), present.tolist(), strict=True
                )
            ],
            dtype=np.int8,
        )
    # up to 7 bytes and the length packed into one integer per row; each distinct value once
    keys = np.where(present, lengths, 255).astype(np.uint64) << np.uint64(56)
    for k in range(width):
        byte = batch.buffer[np.minimum(starts + k, len(batch.buffer) - 1)].astype(np.uint64)
        keys |= np.where(present & (k < lengths), byte, 0).astype(np.uint64) << np.uint64(8 * k)
    distinct, inverse = np.unique(keys, return_inverse=True)
    parsed = np.array([_label(_unpack(int(key))) for key in distinct.tolist()], dtype=np.int8)
    return parsed[inverse.reshape(-1)]


def _unpack(key: int) -> str | None:
    length = key >> 56
    if length == 255:
        return None
    return key.to_bytes(8, "little")[:length].decode("utf-8")


@dataclass
class DecodedBatch:
    """Kept rows (in input order), labels, their input indices, and every rejection."""

    features: np.ndarray
    labels: np.ndarray
    kept: np.ndarray
    rejected: list[tuple[int, str]]
    fast_rows: int = 0


class ColumnarDecoder:
    """The trainer's reader: batches of framed values straight into features and labels."""

    def __init__(
        self,
        schemas: SchemaCache,
        fields: Sequence[str] = AVRO_FEATURE_FIELDS,
        label_field: str = "CLASS",
    ) -> None:
        self._schemas = schemas
        self.fields = tuple(fields)
        self.label_field = label_field
        self._plans: dict[int, list[FieldPlan] | None] = {}

    def _plan(self, schema_id: int) -> list[FieldPlan] | None:
        """The column plan of a writer schema; None (record-by-record path) when it has types
        the walker does not read, or cannot be fetched now (the slow path then records why)."""
        if schema_id not in self._plans:
            try:
                parsed = self._schemas.get(schema_id)
            except Exception:
                return None  # not cached: the next batch asks the registry again
            plans = plan_schema(parsed)
            self._plans[schema_id] = (
                plans if plans is not None and numeric_features(plans, self.fields) else None
            )
        return self._plans[schema_id]

    def decode(self, values: Sequence[bytes | None]) -> DecodedBatch:
        n = len(values)
        out = np.empty((n, len(self.fields)), dtype=np.float32)
        labels = np.full(n, -1, dtype=np.int8)
        ok = np.zeros(n, dtype=bool)
        reasons: dict[int, str] = {}
        framing = frame_values(values)
        for i in np.flatnonzero(~framing.framed).tolist():
            reasons[i] = (
                "record is null"
                if framing.lengths[i] < 0
                else "value too short for the wire format"
            )
        for i in np.flatnonzero(framing.framed & ~framing.good).tolist():
            reasons[i] = f"unknown magic byte {int(framing.magic[i])}"
        slow: list[int] = []
        fast = 0
        for schema_id, idx in framing.by_schema():
            plans = self._plan(schema_id)
            if plans is None:
                slow.extend(idx.tolist())
                continue
            batch = decode_columns_at(
                framing.buf, framing.starts[idx] + HEADER.size, framing.ends[idx], plans
            )
            x, usable, why = features_from_columns(batch, self.fields)
            out[idx[usable]] = x[usable]
            labels[idx[usable]] = labels_from_columns(
                batch, np.flatnonzero(usable), self.label_field
            )
            ok[idx[usable]] = True
            for row, reason in why.items():
                reasons[int(idx[row])] = reason
            slow.extend(idx[~batch.ok].tolist())
            fast += int(batch.ok.sum())
        if slow:
            self._decode_slow(values, sorted(slow), out, labels, ok, reasons)
        kept = np.flatnonzero(ok)
        return DecodedBatch(out[kept], labels[kept], kept, sorted(reasons.items()), fast)

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
