"""The alert record written to `fraud_alerts`, and how a scored batch becomes alerts.

The layout is fixed by DESIGN.md (`ID, USER, TIMESTAMP, AMOUNT, SCORE, THRESHOLD, MODEL_VERSION,
SCORED_AT, CLASS`). Fields are nullable in the same null-first style ksqlDB writes, so a
`FRAUD_ALERTS` stream declared in KSQL reads them without a cast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.common.avro import ksql_record_schema

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
