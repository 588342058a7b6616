"""From decoded transaction records to the model's feature matrix, in one pass per batch.

The trainer and the scorer both call this, so a record is judged usable (or sent to the DLQ with
the reason) by exactly the same rule in training and in production.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.common.avro.wire import WireFormatError
from services.common.errors import RecordRejected
from services.common.topics import AVRO_FEATURE_FIELDS

N_FEATURES = len(AVRO_FEATURE_FIELDS)


class FeatureRejected(RecordRejected):
    """A record that decoded but cannot be scored: a feature is missing, not a number, or not
    finite (the same rule in training and in production)."""

    @classmethod
    def missing(cls, name: str) -> FeatureRejected:
        return cls(f"missing feature {name}", code="missing_feature")

    @classmethod
    def non_numeric(cls, name: str, value: Any) -> FeatureRejected:
        return cls(f"non-numeric feature {name}={value!r}", code="non_numeric")

    @classmethod
    def non_finite(cls, name: str, number: float) -> FeatureRejected:
        return cls(f"non-finite feature {name}={number}", code="non_finite")


@dataclass
class FeatureBatch:
    """Features of the usable records, their labels, and why the others were rejected."""

    features: np.ndarray
    """float32 [n_ok, 30] in the order of AVRO_FEATURE_FIELDS (TIME, V1..V28, AMOUNT)."""
    labels: np.ndarray
    """int8 [n_ok]: 0, 1, or -1 when unlabelled."""
    kept: np.ndarray
    """int64 indices into the input of the rows in `features`."""
    rejected: list[tuple[int, RecordRejected]] = field(default_factory=list)
    """(input index, why) of every record that could not be used."""


def _label(value: Any) -> int:
    if value is None or value == "":
        return -1
    try:
        return 1 if int(float(value)) == 1 else 0
    except (TypeError, ValueError):
        return -1


def extract_features(
    records: Sequence[Mapping[str, Any] | None],
    fields: Sequence[str] = AVRO_FEATURE_FIELDS,
    label_field: str | None = "CLASS",
) -> FeatureBatch:
    """Fill a preallocated float32 matrix; reject records with a missing or non-finite feature."""
    n = len(records)
    out = np.empty((n, len(fields)), dtype=np.float32)
    labels = np.empty(n, dtype=np.int8)
    kept = np.empty(n, dtype=np.int64)
    rejected: list[tuple[int, RecordRejected]] = []
    rows = 0
    for i, record in enumerate(records):
        reason = _fill_row(record, fields, out[rows])
        if reason is not None:
            rejected.append((i, reason))
            continue
        labels[rows] = _label(record.get(label_field) if record and label_field else None)
        kept[rows] = i
        rows += 1
    return FeatureBatch(out[:rows], labels[:rows], kept[:rows], rejected)


def _fill_row(
    record: Mapping[str, Any] | None, fields: Sequence[str], row: np.ndarray
) -> RecordRejected | None:
    if record is None:
        return WireFormatError.null_record()
    for j, name in enumerate(fields):
        value = record.get(name)
        if value is None:
            return FeatureRejected.missing(name)
        try:
            number = float(value)
        except (TypeError, ValueError):
            return FeatureRejected.non_numeric(name, value)
        if not math.isfinite(number):
            return FeatureRejected.non_finite(name, number)
        row[j] = number
    return None
