"""The trainer's branch of the error family.

`TrainerError` is the root of what training raises on purpose; `TrainingDataError` says the data
cannot support a run (the CLI adds where it read from). Both are `FraudstreamError`s, so the CLI
prints them as one line.
"""

from __future__ import annotations

from services.common.errors import FraudstreamError


class TrainerError(FraudstreamError):
    """Anything the trainer (ingest, fit, evaluation, watch loop) raises on purpose."""

    default_code = "trainer"


class TrainingDataError(TrainerError, ValueError):
    """The data cannot support a training run (too few rows, no normal rows, nothing usable)."""

    default_code = "training_data"
