"""The one feature decoder: a batch of Confluent-framed Avro values → the model's feature matrix
(and labels), with every value it cannot use explained. The trainer and the scorer both use it.

fastavro decodes one record per call (about 17 µs for the 34-field transaction record), which
caps a Python consumer near 60,000 records/s before any model runs. The pipeline's records are
flat, so compiled kernels (`services.common.avro.kernels`) read whole batches instead, in two
ways:

- the *single-header fast pass* (`walk_features`; only when no label is wanted, the scorer's
  case): every value framed with one expected header (the first value's, else the last
  batch's) is walked once, its features written straight into the float32 matrix;
- the *general path*: framing checked with numpy over the joined batch, values grouped by
  writer schema id, each group walked column-wise (`walk_records`), features and labels taken
  from the columns.

Correctness rests on two checks made for every record: no read crosses the record's own end,
and the walk ends exactly at that end. A record that fails either, or whose schema has no plan,
is read by fastavro and judged by `services.common.avro.features.extract_features`, which also gives
the precise rejection; the compiled paths reproduce extract_features' rules and texts exactly.
Values the fast pass does not take go down the general path and are merged back by index.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import fastavro
import numpy as np
from confluent_kafka.schema_registry import SchemaRegistryClient

from services.common.avro.columns import Column, ColumnBatch
from services.common.avro.features import FeatureRejected, _label, extract_features
from services.common.avro.kernels import (
    FLOAT_KINDS,
    KIND_BOOLEAN,
    KIND_VARINT,
    KINDS,
    encode_records,
    slots_of,
    walk_features,
    walk_records,
)
from services.common.avro.schemas import (
    FieldPlan,
    Writer,
    WriterSchemas,
    numeric_features,
)
from services.common.avro.wire import (
    HEADER,
    MAGIC_BYTE,
    WireFormatError,
    frame_values,
    header_of,
    join_values,
)
from services.common.errors import RecordRejected
from services.common.topics import AVRO_FEATURE_FIELDS

Rejections = list[tuple[int, RecordRejected]]
_Rows = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(features, input indices, labels) of some usable rows"""


def _kinds_and_nulls(plans: Sequence[FieldPlan]) -> tuple[np.ndarray, np.ndarray]:
    """The walkers' view of a plan: each field's kind, and its null union branch (-1: none)."""
    kinds = np.array([KINDS[p.type] for p in plans], dtype=np.int8)
    nulls = np.array([-1 if p.null_branch is None else p.null_branch for p in plans], np.int8)
    return kinds, nulls


def decode_columns(bodies: Sequence[bytes | memoryview], plans: list[FieldPlan]) -> ColumnBatch:
    """Decode Avro bodies (no wire-format header) of one flat schema."""
    buf, _, starts, ends = join_values(bodies)
    return decode_columns_at(buf, starts, ends, plans)


def decode_columns_at(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, plans: list[FieldPlan]
) -> ColumnBatch:
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
    columns: list[Column] = []
    for j, plan in enumerate(plans):
        kind, slot = int(kinds[j]), int(slots[j])
        if kind == KIND_BOOLEAN:
            columns.append(Column(plan.type, present[j], values=floats[slot] == 1.0))
        elif kind in FLOAT_KINDS:
            columns.append(Column(plan.type, present[j], values=floats[slot]))
        elif kind == KIND_VARINT:
            columns.append(Column(plan.type, present[j], values=ints[slot]))
        else:
            columns.append(
                Column(plan.type, present[j], starts=spans[slot, 0], lengths=spans[slot, 1])
            )
    return ColumnBatch(buf, columns, [p.name for p in plans], ok)


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

    def columns(self, rows: np.ndarray, plans: list[FieldPlan]) -> ColumnBatch:
        """Every field of these rows (only the few that alert need them), row k = rows[k]."""
        return decode_columns_at(self.buf, self.starts[rows] + HEADER.size, self.ends[rows], plans)


def framed_features(
    values: Sequence[bytes | None], header: bytes, plans: list[FieldPlan], fields: Sequence[str]
) -> FramedFeatures:
    """Features straight from the Kafka values of one writer schema (`header`: magic byte and
    schema id), with no per-field column in between. The fields must pass `numeric_features`;
    rows that are not `ok` (a tombstone among them) are for the general path."""
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


def features_from_columns(
    batch: ColumnBatch, fields: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, dict[int, RecordRejected]]:
    """Features (float32) of every row, which rows are usable, and extract_features' rejection
    of the others that the walker read (the first bad field in field order). The fields must
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
    reasons: dict[int, RecordRejected] = {}
    for row in np.flatnonzero(batch.ok & ~usable):
        name = fields[int(np.argmax(bad[row]))]
        col = batch.column(name)
        assert col is not None and col.values is not None
        if not col.present[row]:
            reasons[int(row)] = FeatureRejected.missing(name)
        else:
            reasons[int(row)] = FeatureRejected.non_finite(name, float(col.values[row]))
    return x, usable, reasons


def labels_from_columns(batch: ColumnBatch, rows: np.ndarray, label_field: str) -> np.ndarray:
    """The label of each row (`features._label`: 1, 0, or -1 for none/unparseable); each
    distinct label value is parsed once."""
    column = batch.column(label_field)
    if column is None or len(rows) == 0:
        return np.full(len(rows), -1, dtype=np.int8)
    if column.values is not None:
        return np.array([_label(v) for v in column.take(rows).to_list(batch.buf)], np.int8)
    assert column.starts is not None and column.lengths is not None
    starts, lengths = column.starts[rows], column.lengths[rows]
    present = column.present[rows]
    width = int(lengths[present].max()) if present.any() else 0
    if width > 7:  # long label strings (unusual): one Python decode per row
        return np.array([_label(v) for v in column.take(rows).to_list(batch.buf)], np.int8)
    # up to 7 bytes and the length packed into one integer per row; each distinct value once
    keys = np.where(present, lengths, 255).astype(np.uint64) << np.uint64(56)
    for k in range(width):
        # (a null's span is garbage, whatever its sign: clipped, and masked out below)
        byte = batch.buf[np.clip(starts + k, 0, len(batch.buf) - 1)].astype(np.uint64)
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
class _Columns:
    """Where the other fields of some decoded rows can be read: either columns decoded already
    (`batch`) or a fast-pass batch whose columns are decoded on demand, for the rows asked."""

    indices: np.ndarray
    """sorted input indices of the rows, in row order"""
    batch: ColumnBatch | None = None
    framed: FramedFeatures | None = None
    plans: list[FieldPlan] | None = None
    framed_rows: np.ndarray | None = None
    """row k is the fast pass's row framed_rows[k]"""

    def rows(self, rows: np.ndarray) -> tuple[ColumnBatch, np.ndarray]:
        """A ColumnBatch holding these rows, and where they are in it."""
        if self.batch is not None:
            return self.batch, rows
        assert self.framed is not None and self.plans is not None
        assert self.framed_rows is not None
        return self.framed.columns(self.framed_rows[rows], self.plans), np.arange(len(rows))


@dataclass
class DecodedBatch:
    """Usable rows as features (and labels), the way back to each row's record, and the
    rejected inputs."""

    features: np.ndarray
    """float32 [n_ok, n_fields], e.g. TIME, V1..V28, AMOUNT."""
    kept: np.ndarray
    """int64 [n_ok]: index into the input values of each feature row (ascending)."""
    labels: np.ndarray
    """int8 [n_ok]: 1, 0, or -1 when unlabelled (always -1 without a label field)."""
    rejected: Rejections = field(default_factory=list)
    """(input index, why), ascending by index."""
    fast_rows: int = 0
    """how many inputs a compiled kernel read (the rest: fastavro or rejected by header)"""
    _records: dict[int, dict[str, Any]] = field(default_factory=dict)
    """input index -> record decoded by fastavro (general path)."""
    _columnar: list[_Columns] = field(default_factory=list)
    """rows read by a compiled path, and how to read their other fields."""

    @classmethod
    def empty(cls, width: int) -> DecodedBatch:
        return cls(np.empty((0, width), np.float32), np.empty(0, np.int64), np.empty(0, np.int8))

    def record(self, index: int, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """The decoded record of input `index` (only needed for rows that alert); `fields`
        limits it to those fields where that saves work (the general path has them all)."""
        found = self._records.get(index)
        if found is not None:
            return found
        for source in self._columnar:
            row = int(np.searchsorted(source.indices, index))
            if row < len(source.indices) and source.indices[row] == index:
                batch, at = source.rows(np.array([row]))
                return batch.record(int(at[0]), fields)
        raise KeyError(index)

    def columnar_rows(self, inputs: np.ndarray) -> list[tuple[ColumnBatch, np.ndarray, np.ndarray]]:
        """Which of these input indices a compiled path decoded: per group, (columns, rows in
        them, positions in `inputs`). The others were decoded by fastavro (`record`)."""
        found = []
        for source in self._columnar:
            indices = source.indices
            if not len(indices):
                continue
            at = np.minimum(np.searchsorted(indices, inputs), len(indices) - 1)
            hit = np.flatnonzero(indices[at] == inputs)
            if len(hit):
                batch, rows = source.rows(at[hit])
                found.append((batch, rows, hit))
        return found

    def add(self, features: np.ndarray, kept: np.ndarray, labels: np.ndarray) -> None:
        """Add rows (any order); rows stay sorted by input index."""
        if len(self.kept):
            kept = np.concatenate([self.kept, kept])
            features = np.concatenate([self.features, features])
            labels = np.concatenate([self.labels, labels])
        if len(kept) > 1 and not (kept[1:] > kept[:-1]).all():  # (one group: sorted already)
            order = np.argsort(kept, kind="stable")
            kept, features, labels = kept[order], features[order], labels[order]
        self.kept, self.features, self.labels = kept, features, labels

    def merge(self, other: DecodedBatch, where: np.ndarray) -> None:
        """Add the result of decoding the inputs `where` (ascending) on their own."""
        self.add(other.features, where[other.kept], other.labels)
        self.rejected = sorted(
            self.rejected + [(int(where[i]), r) for i, r in other.rejected], key=_index
        )
        self.fast_rows += other.fast_rows
        self._records.update({int(where[i]): rec for i, rec in other._records.items()})
        for source in other._columnar:
            source.indices = where[source.indices]
            self._columnar.append(source)


def _index(item: tuple[int, RecordRejected]) -> int:
    return item[0]


class FeatureDecoder:
    """Decodes batches of Confluent-framed values into features (and labels, with a
    `label_field`); see the module docstring for the paths a value can take."""

    def __init__(
        self,
        client: SchemaRegistryClient,
        fields: Sequence[str] = AVRO_FEATURE_FIELDS,
        label_field: str | None = None,
        retries: int = 5,
    ) -> None:
        self.schemas = WriterSchemas(client, retries)
        self.fields = tuple(fields)
        self.label_field = label_field
        self.columnar = True
        """Use the compiled paths where the schema allows (False: always fastavro)."""
        self._header: bytes | None = None
        """the wire header of the last batch the fast pass took"""

    def decode(self, values: Sequence[bytes | None]) -> DecodedBatch:
        """Features of the values that are usable, every other value with its reason.
        ServiceUnavailable when the registry does not answer: retry the batch."""
        fast = self._decode_fast(values)
        return fast if fast is not None else self._decode_general(values)

    def _planned(self, writer: Writer) -> list[FieldPlan] | None:
        """The writer's plan when the compiled paths may read its features."""
        plans = writer.plans
        ok = self.columnar and plans is not None and numeric_features(plans, self.fields)
        return plans if ok else None

    def _decode_fast(self, values: Sequence[bytes | None]) -> DecodedBatch | None:
        """The common case in one compiled pass: values framed with one header (`_fast_schema`)
        of a flat schema with numeric features. The values that do not pass go through
        `_decode_general` and are merged back. None: no header fits the fast pass."""
        chosen = self._fast_schema(values) if self.label_field is None else None
        if chosen is None:
            return None
        header, plans = chosen
        framed = framed_features(values, header, plans, self.fields)
        self._header = header
        rows = np.flatnonzero(framed.ok)
        n = len(values)
        out = DecodedBatch(
            framed.features[rows] if len(rows) < n else framed.features,
            rows,
            np.full(len(rows), -1, np.int8),
            fast_rows=len(rows),
        )
        out._columnar.append(_Columns(rows, framed=framed, plans=plans, framed_rows=rows))
        if len(rows) < n:
            others = np.flatnonzero(~framed.ok)
            out.merge(self._decode_general([values[int(i)] for i in others]), others)
        return out

    def _fast_schema(self, values: Sequence[bytes | None]) -> tuple[bytes, list[FieldPlan]] | None:
        """The wire header the fast pass expects, and its writer schema's plans: the first
        value's, or, when that one is bad (a tombstone, a wrong magic byte, an unknown or
        unsuitable schema), the last batch's, so one bad record at the head of a batch does not
        send the whole batch down the general path."""
        first = values[0] if len(values) else None
        candidates = [self._header] if self._header is not None else []
        if first is not None and len(first) >= HEADER.size and first[0] == MAGIC_BYTE:
            candidates.insert(0, first[: HEADER.size])
        for header in candidates:
            try:
                plans = self._planned(self.schemas.get(HEADER.unpack(header)[1]))
            except WireFormatError:
                continue
            if plans is not None:
                return header, plans
        return None

    def _decode_general(self, values: Sequence[bytes | None]) -> DecodedBatch:
        """Framing, then per writer schema: the column-wise walk, then fastavro for the rest."""
        framing = frame_values(values)
        out = DecodedBatch.empty(len(self.fields))
        rejected: Rejections = list(framing.rejected())
        parts: list[_Rows] = []
        for schema_id, indices in framing.by_schema():
            try:
                writer = self.schemas.get(schema_id)
            except WireFormatError as exc:
                rejected.extend((int(i), exc) for i in indices)
                continue
            slow = indices
            plans = self._planned(writer)
            if plans is not None:
                starts = framing.starts[indices] + HEADER.size
                batch = decode_columns_at(framing.buf, starts, framing.ends[indices], plans)
                parts.append(self._take_columns(batch, indices, out, rejected))
                slow = indices[~batch.ok]
            if len(slow):
                parts.append(self._decode_slow(values, slow, writer, out, rejected))
        if len(parts) == 1:
            out.add(*parts[0])
        elif parts:
            out.add(*(np.concatenate(p) for p in zip(*parts, strict=True)))
        rejected.sort(key=_index)
        out.rejected = rejected
        return out

    def _take_columns(
        self, batch: ColumnBatch, indices: np.ndarray, out: DecodedBatch, rejected: Rejections
    ) -> _Rows:
        """The usable rows of a column-wise walk; its bad rows go into `rejected`."""
        x, usable, reasons = features_from_columns(batch, self.fields)
        rows = np.flatnonzero(usable)
        labels = (
            np.full(len(rows), -1, np.int8)
            if self.label_field is None
            else labels_from_columns(batch, rows, self.label_field)
        )
        out._columnar.append(_Columns(indices, batch=batch))
        rejected.extend((int(indices[row]), why) for row, why in reasons.items())
        out.fast_rows += int(batch.ok.sum())
        return x[rows], indices[rows], labels

    def _decode_slow(
        self,
        values: Sequence[bytes | None],
        indices: np.ndarray,
        writer: Writer,
        out: DecodedBatch,
        rejected: Rejections,
    ) -> _Rows:
        """fastavro record by record, judged by `extract_features`: the general path's last
        resort, and the source of exact error texts."""
        decoded: list[dict[str, Any]] = []
        where: list[int] = []
        for i in indices.tolist():
            body = memoryview(values[i] or b"")[HEADER.size :]
            try:
                record = fastavro.schemaless_reader(io.BytesIO(body), writer.parsed, None)  # type: ignore[call-arg]
            except Exception as exc:
                rejected.append((i, WireFormatError.bad_body(writer.schema_id, exc)))
                continue
            if not isinstance(record, dict):
                rejected.append((i, WireFormatError.not_record(writer.schema_id)))
                continue
            decoded.append(record)
            where.append(i)
        fb = extract_features(decoded, self.fields, self.label_field)
        rejected.extend((where[row], why) for row, why in fb.rejected)
        kept = np.asarray(where, dtype=np.int64)[fb.kept]
        for row, i in zip(fb.kept.tolist(), kept.tolist(), strict=True):
            out._records[i] = decoded[row]
        return fb.features, kept, fb.labels


def warm_up() -> None:
    """Load (or compile, the first time) the decoding and alert-encoding kernels now rather
    than in the first batch."""
    plans = [FieldPlan("x", "double", 0)]
    batch = decode_columns([b"\x02" + bytes(8)], plans)
    header = header_of(1)
    framed_features([header + b"\x02" + bytes(8)], header, plans, ["x"])
    column = batch.columns[0]
    assert column.values is not None
    encode_records(
        np.zeros(5, np.uint8),
        batch.buf,
        np.zeros(0, np.uint8),
        np.array([KINDS["double"]], np.int8),
        np.zeros(1, np.int64),
        column.values.reshape(1, 1),
        np.zeros((0, 1), np.int64),
        np.zeros((0, 2, 1), np.int64),
        column.present.reshape(1, 1),
    )
