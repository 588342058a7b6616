"""From a batch of Kafka values to the model's feature matrix, with every bad record explained.

A value can be bad in four ways, each sent to the DLQ with its reason: not in the Confluent wire
format (wrong magic byte, too short), an unknown schema id, an Avro body that does not decode,
or features that are missing, non-numeric or not finite. The rules for the last kind are those of
`services.common.features.extract_features`, shared with the trainer; the fast columnar path
(`services.common.avro_columns`) reproduces them exactly and hands anything unusual to the
general path.

An unreachable Schema Registry is *not* a bad record: it raises `ServiceUnavailable`, so the
batch is retried instead of dead-lettering good data.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import fastavro
import numpy as np
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from services.common.avro import HEADER, MAGIC_BYTE, WireFormatError, parse_schema
from services.common.avro_columns import (
    ColumnarBatch,
    FieldPlan,
    FramedFeatures,
    decode_columns_at,
    features_from_columns,
    frame_values,
    framed_features,
    numeric_features,
    plan_schema,
)
from services.common.errors import ServiceUnavailable
from services.common.features import extract_features
from services.common.topics import AVRO_FEATURE_FIELDS

log = logging.getLogger("fraudstream.scorer.decode")

UNKNOWN_ID_TTL_S = 60.0
"""An id the registry did not know is not asked for again for this long (bad records with a
bogus id must not cost a registry round trip each)."""


@dataclass
class _Group:
    """The records of one batch that share a writer schema id."""

    values: Sequence[bytes | None]
    buf: np.ndarray
    body_starts: np.ndarray
    ends: np.ndarray
    indices: np.ndarray


@dataclass
class _Writer:
    parsed: Any
    plans: list[FieldPlan] | None


class WriterSchemas:
    """Writer schemas by id; tells 'no such schema' (a bad record) from 'registry down'."""

    def __init__(self, client: SchemaRegistryClient, retries: int = 5) -> None:
        self._client = client
        self._retries = retries
        self._known: dict[int, _Writer] = {}
        self._unknown: dict[int, float] = {}

    def get(self, schema_id: int) -> _Writer:
        writer = self._known.get(schema_id)
        if writer is not None:
            return writer
        failed_at = self._unknown.get(schema_id)
        if failed_at is not None and time.monotonic() - failed_at < UNKNOWN_ID_TTL_S:
            raise WireFormatError(f"unknown schema id {schema_id}")
        schema_str = self._fetch(schema_id)
        parsed = parse_schema(schema_str)
        import json

        writer = _Writer(parsed, plan_schema(json.loads(schema_str)))
        self._known[schema_id] = writer
        return writer

    def _fetch(self, schema_id: int) -> str:
        delay = 0.2
        for attempt in range(self._retries + 1):
            try:
                return str(self._client.get_schema(schema_id).schema_str)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    self._unknown[schema_id] = time.monotonic()
                    raise WireFormatError(f"unknown schema id {schema_id}") from exc
                last: Exception = exc
            except Exception as exc:
                last = exc
            if attempt < self._retries:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise ServiceUnavailable(f"Schema Registry did not return schema {schema_id}: {last}")


@dataclass
class _Columns:
    """Where the other fields of some decoded rows can be read: either columns decoded already
    (`batch`) or a fast-path batch whose columns are decoded on demand, for the rows asked."""

    indices: np.ndarray
    """sorted input indices of the rows, in row order"""
    batch: ColumnarBatch | None = None
    framed: FramedFeatures | None = None
    plans: list[FieldPlan] | None = None
    framed_rows: np.ndarray | None = None
    """row k is framed row framed_rows[k]"""

    def rows(self, rows: np.ndarray) -> tuple[ColumnarBatch, np.ndarray]:
        """A ColumnarBatch holding these rows, and where they are in it."""
        if self.batch is not None:
            return self.batch, rows
        assert self.framed is not None and self.plans is not None
        assert self.framed_rows is not None
        return self.framed.columns(self.framed_rows[rows], self.plans), np.arange(len(rows))


@dataclass
class DecodedBatch:
    """Usable rows as features, the way back to each row's record, and the rejected inputs."""

    features: np.ndarray
    """float32 [n_ok, 30] (TIME, V1..V28, AMOUNT)."""
    kept: np.ndarray
    """int64 [n_ok]: index into the input values of each feature row (ascending)."""
    rejected: list[tuple[int, str]] = field(default_factory=list)
    _records: dict[int, dict[str, Any]] = field(default_factory=dict)
    """input index -> record decoded by fastavro (general path)."""
    _columnar: list[_Columns] = field(default_factory=list)
    """rows read by a compiled path, and how to read their other fields."""

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

    def columnar_rows(
        self, inputs: np.ndarray
    ) -> list[tuple[ColumnarBatch, np.ndarray, np.ndarray]]:
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

    def merge(self, other: DecodedBatch, where: np.ndarray) -> None:
        """Add the result of decoding the inputs `where` (ascending) on their own."""
        kept = np.concatenate([self.kept, where[other.kept]])
        order = np.argsort(kept, kind="stable")
        self.features = np.concatenate([self.features, other.features])[order]
        self.kept = kept[order]
        self.rejected = sorted(self.rejected + [(int(where[i]), r) for i, r in other.rejected])
        self._records.update({int(where[i]): rec for i, rec in other._records.items()})
        for source in other._columnar:
            source.indices = where[source.indices]
            self._columnar.append(source)


class BatchDecoder:
    """Decodes a batch of Confluent-framed values into the model's features.

    The common case is one compiled pass over the joined values (`_decode_fast`): header check,
    Avro walk and features together. What it does not accept takes the general path
    (`_decode_general`): framing checked with numpy over one joined buffer, values grouped by
    writer schema id, the column-wise walker, then fastavro for the rest and for exact errors.
    Either way the per-record Python work is a length lookup.
    """

    def __init__(
        self, client: SchemaRegistryClient, fields: Sequence[str] = AVRO_FEATURE_FIELDS
    ) -> None:
        self.schemas = WriterSchemas(client)
        self.fields = tuple(fields)
        self.columnar = True
        """Use the columnar fast path where the schema allows (False: always fastavro)."""
        self._header: bytes | None = None
        """the wire header of the last batch the fast pass took"""

    def decode(self, values: Sequence[bytes | None]) -> DecodedBatch:
        """Features of the values that are usable, every other value with its reason."""
        fast = self._decode_fast(values)
        return fast if fast is not None else self._decode_general(values)

    def _decode_fast(self, values: Sequence[bytes | None]) -> DecodedBatch | None:
        """The common case in one compiled pass: values framed with one header (`_fast_schema`)
        of a flat schema with numeric features. The values that do not pass go through
        `_decode_general` and are merged back. None: no header fits the fast pass."""
        chosen = self._fast_schema(values) if self.columnar else None
        if chosen is None:
            return None
        header, plans = chosen
        framed = framed_features(values, header, plans, self.fields)
        self._header = header
        rows = np.flatnonzero(framed.ok)
        out = DecodedBatch(
            framed.features[rows] if len(rows) < len(values) else framed.features, rows
        )
        out._columnar.append(_Columns(rows, framed=framed, plans=plans, framed_rows=rows))
        if len(rows) < len(values):
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
                writer = self.schemas.get(HEADER.unpack(header)[1])
            except WireFormatError:
                continue
            if writer.plans is not None and numeric_features(writer.plans, self.fields):
                return header, writer.plans
        return None

    def _decode_general(self, values: Sequence[bytes | None]) -> DecodedBatch:
        framing = frame_values(values)
        magic = framing.magic.view(np.int8)
        rejected: list[tuple[int, str]] = [
            (int(i), "value too short for the Confluent wire format")
            for i in np.flatnonzero(~framing.framed)
        ]
        rejected += [
            (int(i), f"unknown magic byte {int(magic[i])}")
            for i in np.flatnonzero(framing.framed & ~framing.good)
        ]
        out = DecodedBatch(np.empty((0, len(self.fields)), np.float32), np.empty(0, np.int64))
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        for schema_id, indices in framing.by_schema():
            try:
                writer = self.schemas.get(schema_id)
            except WireFormatError as exc:
                rejected.extend((int(i), str(exc)) for i in indices)
                continue
            group = _Group(
                values,
                framing.buf,
                framing.starts[indices] + HEADER.size,
                framing.ends[indices],
                indices,
            )
            parts.append(self._decode_group(group, writer, schema_id, rejected, out))
        if parts:
            features = np.concatenate([p[0] for p in parts])
            kept = np.concatenate([p[1] for p in parts])
            order = np.argsort(kept, kind="stable")
            out.features, out.kept = features[order], kept[order]
        rejected.sort()
        out.rejected = rejected
        return out

    def _decode_group(
        self,
        group: _Group,
        writer: _Writer,
        schema_id: int,
        rejected: list[tuple[int, str]],
        out: DecodedBatch,
    ) -> tuple[np.ndarray, np.ndarray]:
        slow = group.indices
        feats: list[np.ndarray] = []
        kept: list[np.ndarray] = []
        if (
            self.columnar
            and writer.plans is not None
            and numeric_features(writer.plans, self.fields)
        ):
            batch = decode_columns_at(group.buf, group.body_starts, group.ends, writer.plans)
            x, usable, reasons = features_from_columns(batch, self.fields)
            feats.append(x[usable])
            kept.append(group.indices[usable])
            out._columnar.append(_Columns(group.indices, batch=batch))
            rejected.extend(
                (int(group.indices[row]), reasons[int(row)])
                for row in np.flatnonzero(batch.ok & ~usable)
            )
            slow = group.indices[~batch.ok]
        if len(slow):
            x_slow, kept_slow = self._decode_slow(
                group.values, slow, writer, schema_id, rejected, out
            )
            feats.append(x_slow)
            kept.append(kept_slow)
        return np.concatenate(feats), np.concatenate(kept)

    def _decode_slow(
        self,
        values: Sequence[bytes | None],
        indices: np.ndarray,
        writer: _Writer,
        schema_id: int,
        rejected: list[tuple[int, str]],
        out: DecodedBatch,
    ) -> tuple[np.ndarray, np.ndarray]:
        """fastavro record by record: the general path, and the source of exact error text."""
        decoded: list[dict[str, Any]] = []
        where: list[int] = []
        for i in (int(j) for j in indices):
            body = memoryview(values[i] or b"")[HEADER.size :]
            try:
                record = fastavro.schemaless_reader(io.BytesIO(body), writer.parsed, None)  # type: ignore[call-arg]
            except Exception as exc:
                rejected.append((i, f"cannot decode Avro body with schema {schema_id}: {exc}"))
                continue
            if not isinstance(record, dict):
                rejected.append((i, f"schema {schema_id} does not describe a record"))
                continue
            decoded.append(record)
            where.append(i)
        fb = extract_features(decoded, self.fields)
        for row, reason in fb.rejected:
            rejected.append((where[row], reason))
        kept = np.asarray(where, dtype=np.int64)[fb.kept]
        for row, i in zip(fb.kept, kept, strict=True):
            out._records[int(i)] = decoded[int(row)]
        return fb.features, kept
