"""The two things the console writes: analysts' verdicts and the alert budget.

Both go through their owners' one entry point (`services.common.feedback` for the
`fraud_feedback` record, `services.model_registry.budget.set_alert_budget` for the budget), so the
console never builds a record or a registry file itself.

A click must write exactly one verdict. The page disables the buttons while a request is in
flight and sends a random submission id with it; here a submission id already seen answers with
the first result and writes nothing, so a retried or doubled request cannot write twice.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.common.errors import FraudstreamError

MAX_SUBMISSIONS = 10_000
"""Submission ids remembered (oldest forgotten first)."""


class FeatureMissing(FraudstreamError):
    """The back end this needs is not installed (HTTP 501)."""

    default_code = "not_available"


@dataclass
class FeedbackDesk:
    topic: str
    _writer: Any = None
    _seen: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    verdicts: dict[int, dict[str, Any]] = field(default_factory=dict)
    """transaction ID -> the latest verdict written through this console"""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(
        self,
        submission: str,
        alert_id: Any,
        verdict: Any,
        analyst: Any,
        note: Any,
        model_version: Any = None,
        score: Any = None,
    ) -> tuple[dict[str, Any], bool]:
        """Write one verdict; (what was written, True) or (the earlier result, False) for a
        submission id already seen. FeedbackRejected (400) for bad input."""
        try:
            from services.common.feedback import FeedbackWriter, make_feedback
        except ImportError as exc:
            raise FeatureMissing("feedback needs services/common/feedback.py") from exc
        # one at a time: the check for a known submission and the write are one step
        with self._lock:
            earlier = self._seen.get(submission)
            if earlier is not None:
                return earlier, False
            feedback = make_feedback(
                alert_id,
                verdict,
                analyst,
                note or None,
                model_version=model_version,
                score=score,
            )
            if self._writer is None:
                self._writer = FeedbackWriter(self.topic)
            self._writer.write(feedback)
            result = feedback.to_record()
            self._seen[submission] = result
            while len(self._seen) > MAX_SUBMISSIONS:
                self._seen.popitem(last=False)
            self.verdicts[feedback.id] = result
            return result, True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def set_budget(version: str, per_10k: float, models_dir: Path) -> dict[str, Any]:
    """At most `per_10k` alerts per 10,000 transactions for `version`: a new version derived
    from it with that threshold, LATEST and announced when `version` was LATEST (the scorer
    applies it like a hot reload). BadBudget, NoValidationScores, VersionNotFound otherwise."""
    try:
        from services.model_registry.budget import set_alert_budget
    except ImportError as exc:
        raise FeatureMissing("alert budgets need services/model_registry/budget.py") from exc
    result = set_alert_budget(version, per_10k, models_dir=models_dir)
    return asdict(result) | {"summary": result.summary_line()}


def budget_available() -> bool:
    try:
        from services.model_registry import budget  # noqa: F401
    except ImportError:
        return False
    return True
