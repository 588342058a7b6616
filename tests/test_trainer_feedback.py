"""The trainer's second judge: analysts' verdicts joined to the training rows by transaction ID."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.feedback import CONFIRMED_FRAUD, FALSE_POSITIVE, make_feedback
from services.trainer.evaluate import Split
from services.trainer.feedback import evaluate_feedback, feedback_line, report_lines, reviewed_rows
from services.trainer.ingest import MISSING_ID


@dataclass
class _Identity:
    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)


@dataclass
class _FirstColumn:
    """A champion whose score is the first feature."""

    def scores(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x[:, 0], dtype=np.float64)


@dataclass
class _Outcome:
    preprocessing: Any
    champion: Any
    split: Split
    threshold_value: float


def test_reviewed_rows_join_by_id_and_skip_missing_ids() -> None:
    feedback = {
        5: make_feedback(5, CONFIRMED_FRAUD, "a"),
        7: make_feedback(7, FALSE_POSITIVE, "a"),
        99: make_feedback(99, FALSE_POSITIVE, "a"),
    }
    ids = np.array([1, 5, MISSING_ID, 7, 7], dtype=np.int64)
    rows, labels = reviewed_rows(ids, feedback)
    assert rows.tolist() == [1, 3, 4] and labels.tolist() == [1, 0, 0]
    assert reviewed_rows(ids, {})[0].size == 0


def test_precision_on_reviewed_alerts() -> None:
    n = 10
    features = np.zeros((n, 30), dtype=np.float32)
    features[:, 0] = np.arange(n)  # score = row index; threshold 5: rows 5..9 alert
    ids = np.arange(100, 100 + n, dtype=np.int64)
    labels = np.zeros(n, dtype=np.int8)
    verdicts = {
        102: CONFIRMED_FRAUD,  # not alerted: missed
        105: CONFIRMED_FRAUD,  # alerted, true
        106: FALSE_POSITIVE,  # alerted, false
        108: CONFIRMED_FRAUD,  # alerted, true
    }
    feedback = {i: make_feedback(i, v, "ana") for i, v in verdicts.items()}
    split = Split(np.arange(0, 6), np.arange(6, 8), np.arange(8, 10))
    outcome = _Outcome(_Identity(), _FirstColumn(), split, 5.0)
    doc = evaluate_feedback(outcome, features, labels, ids, feedback)  # type: ignore[arg-type]
    assert doc["reviewed_rows"] == 4 and doc["confirmed_fraud"] == 3 and doc["false_positive"] == 1
    assert doc["alerts"] == 3 and doc["true_alerts"] == 2
    assert doc["precision_on_reviewed_alerts"] == 2 / 3
    assert doc["recall_on_confirmed"] == 2 / 3
    assert doc["in_training_split"] == 2  # rows 2 and 5
    assert "precision on reviewed alerts 0.6667" in (feedback_line(doc) or "")
    assert any("0.6667" in line for line in report_lines(doc))
    none = evaluate_feedback(outcome, features, labels, None, feedback)  # type: ignore[arg-type]
    assert none["reviewed_rows"] == 0 and feedback_line(none) is None
