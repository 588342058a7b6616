"""The alert record written to `fraud_alerts`, and how a scored batch becomes alerts.

The layout is fixed by DESIGN.md (`ID, USER, TIMESTAMP, AMOUNT, SCORE, THRESHOLD, MODEL_VERSION,
SCORED_AT, CLASS`). Fields are nullable in the same null-first style ksqlDB writes, so a
`FRAUD_ALERTS` stream declared in KSQL reads them without a cast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.common.avro.columns import Column, ColumnBatch
from services.common.avro.kernels import KINDS, encode_records, slots_of, split_records
from services.common.avro.schemas import ksql_record_schema

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


def alert_schema() -> dict[str, Any]:
    """The Avro value schema of `fraud_alerts`, registered under `<topic>-value`."""
    return ksql_record_schema(list(ALERT_FIELDS))


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
) -> list[bytes] | None:
    """The alert values of `rows` of a columnar batch in one compiled pass (the same bytes
    `make_alert` + fastavro give), or None when an input field this copies is absent or of
    another type (then the caller makes each alert with `make_alert`)."""
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
    return split_records(out, bounds)
