"""The alert record written to `fraud_alerts`, and how a scored batch becomes alerts.

The layout is fixed by DESIGN.md (`ID, USER, TIMESTAMP, AMOUNT, SCORE, THRESHOLD, MODEL_VERSION,
SCORED_AT, CLASS`), followed by the optional `EXPLANATION` (issue 17, a BACKWARD-compatible
evolution: docs/alerts-schema.md): the top features of the reconstruction error, each with its
share of the error, its value and its normal range in the training data. Fields are nullable in
the same null-first style ksqlDB writes (arrays of nullable items, structs as records named
`KsqlDataSourceSchema_<COLUMN>`), so a `FRAUD_ALERTS` stream declared in KSQL reads them without
a cast.

Explanations are computed for a whole batch at once from the per-feature parts of the error
that the model's one compiled call returned with the scores (`explain`: numpy over the alerting
rows only), and appended to the compiled alert encoding by a numba loop (`encode_alerts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from services.common.avro.columns import Column, ColumnBatch
from services.common.avro.kernels import KINDS, encode_records, slots_of, split_records
from services.common.avro.schemas import KSQL_RECORD_NAME, ksql_record_schema
from services.common.topics import AVRO_FEATURE_FIELDS
from services.model_registry.api import LoadedModel
from services.model_registry.feature_stats import FeatureStats, display_values

ALERT_SUBJECT_SUFFIX = "-value"

ALERT_FIELDS: tuple[tuple[str, str], ...] = (
    ("ID", "long"),
    ("USER", "string"),
    ("TIMESTAMP", "string"),
    ("AMOUNT", "double"),
    ("SCORE", "double"),
    ("THRESHOLD", "double"),
    ("MODEL_VERSION", "string"),
    ("SCORED_AT", "long"),
    ("CLASS", "string"),
)
"""SCORED_AT is epoch milliseconds (UTC) when the batch was scored: a BIGINT in KSQL."""


ALERT_INPUT_FIELDS: tuple[str, ...] = ("ID", "USER", "TIMESTAMP", "AMOUNT", "CLASS")
"""The input fields an alert copies (make_alert and alert_key read only these)."""


EXPLANATION_FIELD = "EXPLANATION"
EXPLANATION_ITEM_FIELDS: tuple[tuple[str, str], ...] = (
    ("FEATURE", "string"),
    ("SHARE", "double"),
    ("VALUE", "double"),
    ("NORMAL_LOW", "double"),
    ("NORMAL_HIGH", "double"),
)
"""One explaining feature: its name (TIME, V1..V28, AMOUNT), its share of the row's squared
reconstruction error (0-1), its value (TIME as hour of day) and the 1st/99th percentiles of the
training split (null for a version without feature_stats.json)."""
TOP_FEATURES = 5


def explanation_type() -> dict[str, Any]:
    """The Avro type of EXPLANATION's non-null branch, as ksqlDB writes ARRAY<STRUCT<...>>."""
    item = {
        "type": "record",
        "name": f"{KSQL_RECORD_NAME}_{EXPLANATION_FIELD}",
        "fields": [
            {"name": name, "type": ["null", typ], "default": None}
            for name, typ in EXPLANATION_ITEM_FIELDS
        ],
    }
    return {"type": "array", "items": ["null", item]}


def alert_schema() -> dict[str, Any]:
    """The Avro value schema of `fraud_alerts`, registered under `<topic>-value`: the fixed
    fields, then the optional EXPLANATION (default null: old and new readers both work)."""
    return ksql_record_schema([*ALERT_FIELDS, (EXPLANATION_FIELD, explanation_type())])


@dataclass(frozen=True)
class Explanations:
    """The top features of m alerting rows: column indices, shares and values [m, k], and the
    model's normal ranges [30] (None: the version has no feature statistics)."""

    features: np.ndarray
    shares: np.ndarray
    values: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None

    def __len__(self) -> int:
        return len(self.features)

    def take(self, rows: np.ndarray) -> Explanations:
        return Explanations(
            self.features[rows], self.shares[rows], self.values[rows], self.low, self.high
        )

    def record(self, row: int) -> list[dict[str, Any]]:
        """One row's EXPLANATION as fastavro takes it (the record-at-a-time path)."""
        out = []
        for f, share, value in zip(
            self.features[row].tolist(),
            self.shares[row].tolist(),
            self.values[row].tolist(),
            strict=True,
        ):
            out.append(
                {
                    "FEATURE": AVRO_FEATURE_FIELDS[f],
                    "SHARE": share,
                    "VALUE": value,
                    "NORMAL_LOW": None if self.low is None else float(self.low[f]),
                    "NORMAL_HIGH": None if self.high is None else float(self.high[f]),
                }
            )
        return out


def explain(
    parts: np.ndarray, features: np.ndarray, stats: FeatureStats | None, k: int = TOP_FEATURES
) -> Explanations:
    """Top-k features by share of the error for every row at once: `parts` [m, 30] are the
    rows' per-feature (capped) squared residuals from the model call, `features` [m, 30] their
    raw values. Ties in share go to the earlier column."""
    parts = np.asarray(parts, dtype=np.float64)
    total = parts.sum(axis=1, keepdims=True)
    shares = np.divide(parts, total, out=np.zeros_like(parts), where=total > 0)
    k = min(k, parts.shape[1])
    top = np.argsort(-shares, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(display_values(features), top, axis=1)
    return Explanations(
        top,
        np.take_along_axis(shares, top, axis=1),
        values,
        None if stats is None else stats.low,
        None if stats is None else stats.high,
    )


def score_batch(
    model: LoadedModel, features: np.ndarray, explain: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The scores of a batch and, when asked and the model can, the per-feature parts of its
    error from the same compiled call (a model without `score_explained`: None)."""
    if explain:
        explained = getattr(model, "score_explained", None)
        if explained is not None:
            scores, parts = explained(features)
            return scores, parts
    return model.score(features), None


def explain_alerts(
    model: LoadedModel, parts: np.ndarray | None, features: np.ndarray, alerting: np.ndarray
) -> Explanations | None:
    """The explanations of the alerting rows of a batch (None without parts)."""
    if parts is None:
        return None
    stats = getattr(model, "feature_stats", None)
    return explain(parts[alerting], features[alerting], stats)


def alert_mask(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The alert rule of the scorer (issue 6): a score at or above the threshold alerts.

    Offline checks (tests, the crash test, the pipeline's precision/recall) call this same
    function, so production and verification cannot disagree on the boundary.
    """
    return np.asarray(scores) >= threshold


def _as_long(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def make_alert(
    record: Mapping[str, Any],
    amount: float,
    score: float,
    threshold: float,
    version: str,
    scored_at_ms: int,
    explanation: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One alert from the decoded input record and its score."""
    return {
        "ID": _as_long(record.get("ID")),
        "USER": _as_str(record.get("USER")),
        "TIMESTAMP": _as_str(record.get("TIMESTAMP")),
        "AMOUNT": float(amount),
        "SCORE": float(score),
        "THRESHOLD": float(threshold),
        "MODEL_VERSION": version,
        "SCORED_AT": scored_at_ms,
        "CLASS": _as_str(record.get("CLASS")),
        EXPLANATION_FIELD: explanation,
    }


def alert_key(record: Mapping[str, Any], input_key: bytes | None) -> bytes | None:
    """Alerts are keyed by the transaction ID: the input key as received (it is the ID in the
    scoring topic's key format), or the ID as text when the input had no key."""
    if input_key is not None:
        return input_key
    ident = record.get("ID")
    return None if ident is None else str(ident).encode()


def scored_ids(alerts: Sequence[Mapping[str, Any]]) -> list[int | None]:
    """The IDs of some alerts (a small helper for tests and the pipeline summary)."""
    return [a.get("ID") for a in alerts]


_ALERT_KINDS = [KINDS[typ] for _, typ in ALERT_FIELDS]
_ALERT_SLOTS, _ = slots_of(_ALERT_KINDS)
_COPIED_TYPES = {
    "ID": ("int", "long"),
    "USER": ("string",),
    "TIMESTAMP": ("string",),
    "AMOUNT": ("double", "float"),
    "CLASS": ("string",),
}


def encode_alerts(
    batch: ColumnBatch,
    rows: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    version: str,
    scored_at_ms: int,
    header: bytes,
    explanations: Explanations | None = None,
) -> list[bytes] | None:
    """The alert values of `rows` of a columnar batch in one compiled pass (the same bytes
    `make_alert` + fastavro give), or None when an input field this copies is absent or of
    another type (then the caller makes each alert with `make_alert`). `explanations`: one
    per row (None: EXPLANATION is null)."""
    columns: dict[str, Column] = {}
    for name, types in _COPIED_TYPES.items():
        column = batch.column(name)
        if column is None or column.type not in types:
            return None
        columns[name] = column
    m = len(rows)
    version_bytes = version.encode()
    floats = np.empty((3, m), dtype=np.float64)
    floats[0] = columns["AMOUNT"].values[rows]  # type: ignore[index]
    floats[1] = scores
    floats[2] = threshold
    ints = np.empty((2, m), dtype=np.int64)
    ints[0] = columns["ID"].values[rows]  # type: ignore[index]
    ints[1] = scored_at_ms
    spans = np.empty((4, 2, m), dtype=np.int64)
    for slot, copied in ((0, "USER"), (1, "TIMESTAMP"), (3, "CLASS")):
        spans[slot, 0] = columns[copied].starts[rows]  # type: ignore[index]
        spans[slot, 1] = columns[copied].lengths[rows]  # type: ignore[index]
    spans[2, 0], spans[2, 1] = len(batch.buf), len(version_bytes)  # MODEL_VERSION
    present = np.ones((len(ALERT_FIELDS), m), dtype=np.bool_)
    for j, (name, _) in enumerate(ALERT_FIELDS):
        if name in _COPIED_TYPES:
            present[j] = columns[name].present[rows]
    out, bounds = encode_records(
        np.frombuffer(header, np.uint8),
        batch.buf,
        np.frombuffer(version_bytes, np.uint8),  # MODEL_VERSION's span is past the buffer
        np.array(_ALERT_KINDS, dtype=np.int8),
        _ALERT_SLOTS,
        floats,
        ints,
        spans,
        present,
    )
    out, bounds = _append_explanations(out, bounds, explanations)
    return split_records(out, bounds)


_NAMES = np.frombuffer("".join(AVRO_FEATURE_FIELDS).encode(), dtype=np.uint8)
_NAME_STARTS = np.concatenate([[0], np.cumsum([len(n) for n in AVRO_FEATURE_FIELDS])]).astype(
    np.int64
)
assert max(len(n) for n in AVRO_FEATURE_FIELDS) < 64 and TOP_FEATURES < 64  # one-byte varints


def _append_explanations(
    out: np.ndarray, bounds: np.ndarray, explanations: Explanations | None
) -> tuple[np.ndarray, np.ndarray]:
    """Each encoded alert followed by its EXPLANATION (the record's last field, so appending
    its bytes is encoding it)."""
    n = len(bounds) - 1
    if explanations is None:
        features = np.zeros((n, 0), dtype=np.int64)
        doubles = np.zeros((n, 0, 32), dtype=np.uint8)
        return _join_explanations(
            out, bounds, features, doubles, False, _NAMES, _NAME_STARTS, np.zeros(n, np.bool_)
        )
    has_range = explanations.low is not None and explanations.high is not None
    features = np.ascontiguousarray(explanations.features, dtype=np.int64)
    packed = np.zeros((n, features.shape[1], 4), dtype="<f8")
    packed[:, :, 0] = explanations.shares
    packed[:, :, 1] = explanations.values
    if has_range:
        assert explanations.low is not None and explanations.high is not None
        packed[:, :, 2] = explanations.low[features]
        packed[:, :, 3] = explanations.high[features]
    doubles = packed.view(np.uint8).reshape(n, features.shape[1], 32)
    return _join_explanations(
        out, bounds, features, doubles, has_range, _NAMES, _NAME_STARTS, np.ones(n, np.bool_)
    )


@numba.njit(cache=True, nogil=True)
def _join_explanations(
    out: np.ndarray,
    bounds: np.ndarray,
    features: np.ndarray,
    doubles: np.ndarray,
    has_range: bool,
    names: np.ndarray,
    name_starts: np.ndarray,
    present: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled; tested through encode_alerts
    """Records `out[bounds[i]:bounds[i+1]]` each followed by its explanation: 0x00 (null), or
    0x02, the block count, per item 0x02 (the record branch) and its five null-first fields
    (FEATURE from `names`, then SHARE, VALUE, NORMAL_LOW, NORMAL_HIGH as 8 little-endian
    bytes from `doubles`), and 0x00 ending the array."""
    n, k = bounds.size - 1, features.shape[1]
    new_bounds = np.empty(n + 1, dtype=np.int64)
    new_bounds[0] = 0
    for i in range(n):
        size = bounds[i + 1] - bounds[i] + 1
        if present[i]:
            size += 2
            for j in range(k):
                f = features[i, j]
                size += 3 + name_starts[f + 1] - name_starts[f] + 18 + (18 if has_range else 2)
        new_bounds[i + 1] = new_bounds[i] + size
    res = np.empty(new_bounds[n], dtype=np.uint8)
    for i in range(n):
        pos = new_bounds[i]
        length = bounds[i + 1] - bounds[i]
        res[pos : pos + length] = out[bounds[i] : bounds[i + 1]]
        pos += length
        if not present[i]:
            res[pos] = 0
            continue
        res[pos] = 2
        res[pos + 1] = 2 * k
        pos += 2
        for j in range(k):
            f = features[i, j]
            start, end = name_starts[f], name_starts[f + 1]
            res[pos] = 2
            res[pos + 1] = 2
            res[pos + 2] = 2 * (end - start)
            pos += 3
            res[pos : pos + end - start] = names[start:end]
            pos += end - start
            for d in range(4):
                if d >= 2 and not has_range:
                    res[pos] = 0
                    pos += 1
                    continue
                res[pos] = 2
                res[pos + 1 : pos + 9] = doubles[i, j, 8 * d : 8 * d + 8]
                pos += 9
        res[pos] = 0
    return res, new_bounds
