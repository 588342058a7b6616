"""Analysts' verdicts as a second judge of a new model version.

The test split says how a version does on the labels the data came with. Analysts' feedback
(`fraud_feedback`: CONFIRMED_FRAUD = 1, FALSE_POSITIVE = 0) says something the labels cannot:
how it does on exactly the transactions that were alerted and looked at, the ones that cost the
team time. So every version the trainer registers from Kafka is also scored on the reviewed
transactions it has features for (joined by transaction ID), and its metrics and report show
the precision of its alerts among them. The reviewed rows are not held out from training (an
analyst's false positive may be a normal training row): the report says how many fall in the
training split, so the figure is read for what it is.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common.errors import ServiceUnavailable
from services.common.feedback import Feedback, read_feedback
from services.common.topics import FEEDBACK_TOPIC
from services.trainer.evaluate import ranking_metrics
from services.trainer.ingest import MISSING_ID

if TYPE_CHECKING:
    from services.trainer.core import TrainOutcome

log = logging.getLogger("fraudstream.trainer.feedback")


def fetch_feedback(
    topic: str | None = FEEDBACK_TOPIC,
    bootstrap: str | None = None,
    schema_registry_url: str | None = None,
) -> dict[int, Feedback]:
    """The latest verdict per transaction, or none when feedback is off (`topic` None) or the
    topic cannot be read now (training goes on; the report then shows no feedback)."""
    if topic is None:
        return {}
    try:
        return read_feedback(topic, bootstrap, schema_registry_url)
    except ServiceUnavailable as exc:
        log.warning(
            "feedback not read; evaluating without it", extra={"fields": {"error": str(exc)}}
        )
        return {}


def reviewed_rows(ids: np.ndarray, feedback: dict[int, Feedback]) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, labels) of the rows whose ID has a verdict (labels: 1 fraud, 0 not)."""
    if not feedback or len(ids) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    known = np.fromiter(feedback, dtype=np.int64, count=len(feedback))
    rows = np.flatnonzero(np.isin(ids, known) & (ids != MISSING_ID))
    labels = np.array([feedback[int(i)].label for i in ids[rows]], dtype=np.int64)
    return rows, labels


def evaluate_feedback(
    outcome: TrainOutcome,
    features: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray | None,
    feedback: dict[int, Feedback],
    topic: str = FEEDBACK_TOPIC,
) -> dict[str, Any]:
    """How the outcome's served model does on the reviewed rows among `features` (the raw rows
    the outcome was trained from, `labels` their dataset labels, `ids` their transaction IDs)."""
    rows, verdicts = reviewed_rows(ids if ids is not None else np.empty(0, np.int64), feedback)
    doc: dict[str, Any] = {"topic": topic, "verdicts": len(feedback), "reviewed_rows": len(rows)}
    if len(rows) == 0 or outcome.champion is None:
        return doc
    scores = outcome.champion.scores(outcome.preprocessing.transform(features[rows]))
    alert = scores >= outcome.threshold_value
    confirmed = verdicts == 1
    true_alerts = int(np.sum(alert & confirmed))
    labelled = np.asarray(labels) >= 0
    position = np.cumsum(labelled) - 1  # a dataset row's index among the labelled rows
    in_train = np.isin(position[rows[labelled[rows]]], outcome.split.train)
    doc.update(
        {
            "confirmed_fraud": int(confirmed.sum()),
            "false_positive": int((~confirmed).sum()),
            "alerts": int(alert.sum()),
            "true_alerts": true_alerts,
            "precision_on_reviewed_alerts": true_alerts / int(alert.sum()) if alert.any() else None,
            "recall_on_confirmed": true_alerts / int(confirmed.sum()) if confirmed.any() else None,
            "confirmed_share": float(confirmed.mean()),
            "pr_auc": ranking_metrics(scores, verdicts)["pr_auc"],
            "in_training_split": int(in_train.sum()),
            "threshold": outcome.threshold_value,
        }
    )
    return doc


def feedback_line(doc: dict[str, Any] | None) -> str | None:
    """One line for the CLI (None when no reviewed row was in the data)."""
    if not doc or not doc.get("reviewed_rows"):
        return None
    precision = doc.get("precision_on_reviewed_alerts")
    shown = "-" if precision is None else f"{precision:.4f}"
    return (
        f"feedback: {doc['reviewed_rows']} reviewed transactions ({doc['confirmed_fraud']} "
        f"confirmed fraud, {doc['false_positive']} false positives); this version alerts on "
        f"{doc['alerts']} of them, precision on reviewed alerts {shown}"
    )


def report_lines(doc: dict[str, Any] | None) -> list[str]:
    """The report's section on analysts' feedback."""
    if not doc:
        return []
    lines = ["## Analysts' feedback", ""]
    if not doc.get("reviewed_rows"):
        lines += [
            f"{doc.get('verdicts', 0)} verdicts on `{doc.get('topic')}`; none is about a "
            "transaction in this training data.",
            "",
        ]
        return lines

    def f(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines += [
        f"{doc['reviewed_rows']} transactions of the training data were reviewed by analysts "
        f"(`{doc['topic']}`, latest verdict per transaction): {doc['confirmed_fraud']} confirmed "
        f"fraud, {doc['false_positive']} false positives ({doc['in_training_split']} of them in "
        "the training split).",
        "",
        "| alerts on reviewed | true alerts | precision on reviewed alerts | recall on confirmed "
        "| PR-AUC on reviewed |",
        "|---|---|---|---|---|",
        f"| {doc['alerts']} | {doc['true_alerts']} | {f(doc['precision_on_reviewed_alerts'])} | "
        f"{f(doc['recall_on_confirmed'])} | {f(doc['pr_auc'])} |",
        "",
    ]
    return lines
