"""The model registry's contract, shared by the trainer (writes versions) and the scorer (reads).

`models/<version>/` holds `model.keras`, `preprocessing.json`, `threshold.json`, `metrics.json`,
plots and `report.md`; `models/LATEST` names the current version (replaced atomically); each new
version is announced on `fraudstream_models` as a JSON event keyed by the model name.

This module fixes the names both sides use; `registry.py` implements them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

MODEL_NAME = "creditcardfraud-autoencoder"
LATEST_FILE = "LATEST"


@dataclass(frozen=True)
class ModelAnnouncement:
    """The JSON event on `fraudstream_models` (key: model name)."""

    model: str
    version: str
    path: str
    threshold: float
    created_at: str


class LoadedModel(Protocol):
    """A model version ready to score: preprocessing + Keras model + threshold."""

    version: str
    threshold: float

    def score(self, features: np.ndarray) -> np.ndarray:
        """Reconstruction error per row for raw features float32 [n, 30] (TIME, V1..V28,
        AMOUNT as in common.features); one compiled model call for the whole batch."""
        ...


def version_dir(models_dir: Path, version: str) -> Path:
    return models_dir / version
