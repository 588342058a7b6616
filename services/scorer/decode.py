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

from services.common.avro import HEADER, WireFormatError, parse_schema
from services.common.avro_columns import (
    ColumnarBatch,
    FieldPlan,
    decode_columns_at,
    features_from_columns,
    frame_values,
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
class DecodedBatch:
    """Usable rows as features, the way back to each row's record, and the rejected inputs."""

    features: np.ndarray
    """float32 [n_ok, 30] (TIME, V1..V28, AMOUNT)."""
    kept: np.ndarray
    """int64 [n_ok]: index into the input values of each feature row."""
    rejected: list[tuple[int, str]] = field(default_factory=list)
    _records: dict[int, dict[str, Any]] = field(default_factory=dict)
    """input index -> record decoded by fastavro (general path)."""
    _columnar: list[tuple[ColumnarBatch, np.ndarray]] = field(default_factory=list)
    """fast-path groups: (columns, sorted input indices of their rows)."""

    def record(self, index: int, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """The decoded record of input `index` (only needed for rows that alert); `fields`
        limits it to those fields where that saves work (the general path has them all)."""
        found = self._records.get(index)
        if found is not None:
            return found
        for batch, indices in self._columnar:
            row = int(np.searchsorted(indices, index))
            if row < len(indices) and indices[row] == index:
                return batch.record(row, fields)
        raise KeyError(index)

    def columnar_rows(
        self, inputs: np.ndarray
    ) -> list[tuple[ColumnarBatch, np.ndarray, np.ndarray]]:
        """Which of these input indices the columnar path decoded: per group, (columns, rows in
        them, positions in `inputs`). The others were decoded by fastavro (`record`)."""
        found = []
        for batch, indices in self._columnar:
            at = np.minimum(np.searchsorted(indices, inputs), len(indices) - 1)
            hit = np.flatnonzero(indices[at] == inputs) if len(indices) else np.empty(0, np.int64)
            if len(hit):
                found.append((batch, at[hit], hit))
        return found


class BatchDecoder:
    """Decodes a batch of Confluent-framed values, grouped by writer schema id.

    The framing (length, magic byte, schema id) is checked for the whole batch with numpy on
    one joined buffer, so the per-record Python work is a length lookup.
    """

    def __init__(
        self, client: SchemaRegistryClient, fields: Sequence[str] = AVRO_FEATURE_FIELDS
    ) -> None:
        self.schemas = WriterSchemas(client)
        self.fields = tuple(fields)
        self.columnar = True
        """Use the columnar fast path where the schema allows (False: always fastavro)."""

    def decode(self, values: Sequence[bytes | None]) -> DecodedBatch:
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
            out._columnar.append((batch, group.indices))
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
