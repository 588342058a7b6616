"""Feature preprocessing stored inside every model version.

The trainer fits it on the training split only; the scorer applies the very same parameters, read
back from `preprocessing.json`, so a row is transformed identically in training and production.

Columns are those of `services.common.avro.features` (TIME, V1..V28, AMOUNT):
- TIME (seconds since the first transaction of the data set) becomes the hour of the day,
  because the absolute offset only grows with the stream and would put every future row outside
  the training range;
- AMOUNT is heavy-tailed, so it is log1p-scaled (negatives clipped to 0) before standardising;
- every column is then standardised with the training split's mean and standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.avro.features import N_FEATURES

SECONDS_PER_DAY = 86_400.0
TIME_COLUMN = 0
AMOUNT_COLUMN = N_FEATURES - 1
MIN_STD = 1e-6
"""Standard deviations below this are treated as 1 (a constant column must not blow up)."""


def hour_of_day(seconds: np.ndarray) -> np.ndarray:
    """TIME (seconds since the first transaction) as hour of day: raw seconds only grow along
    a stream, the hour repeats (the model and the feature statistics both see it this way)."""
    return np.mod(seconds, SECONDS_PER_DAY) / 3600.0


def _transform_raw(features: np.ndarray) -> np.ndarray:
    """The parameter-free part: time of day in hours and log1p(amount), as float64."""
    x = np.array(features, dtype=np.float64, copy=True)
    if x.ndim != 2 or x.shape[1] != N_FEATURES:
        raise ValueError(f"expected features of shape [n, {N_FEATURES}], got {x.shape}")
    x[:, TIME_COLUMN] = hour_of_day(x[:, TIME_COLUMN])
    x[:, AMOUNT_COLUMN] = np.log1p(np.clip(x[:, AMOUNT_COLUMN], 0.0, None))
    return x


@dataclass(frozen=True)
class Preprocessing:
    """Per-column mean and scale applied after the fixed transforms above."""

    mean: np.ndarray
    scale: np.ndarray
    fitted_rows: int

    @classmethod
    def fit(cls, train_features: np.ndarray) -> Preprocessing:
        """Fit on the training split only (callers must not pass validation or test rows)."""
        x = _transform_raw(train_features)
        if len(x) == 0:
            raise ValueError("cannot fit preprocessing on zero rows")
        std = x.std(axis=0)
        scale = np.where(std < MIN_STD, 1.0, std)
        return cls(mean=x.mean(axis=0), scale=scale, fitted_rows=len(x))

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Raw float32 [n, 30] → model input float32 [n, 30]."""
        x = _transform_raw(features)
        x -= self.mean
        x /= self.scale
        return x.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": "TIME,V1..V28,AMOUNT",
            "time": "hour of day: (TIME mod 86400) / 3600",
            "amount": "log1p(max(AMOUNT, 0))",
            "then": "(x - mean) / scale, fitted on the training split only",
            "fitted_rows": self.fitted_rows,
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Preprocessing:
        mean = np.asarray(doc["mean"], dtype=np.float64)
        scale = np.asarray(doc["scale"], dtype=np.float64)
        if mean.shape != (N_FEATURES,) or scale.shape != (N_FEATURES,):
            raise ValueError("preprocessing parameters do not have 30 columns")
        return cls(mean=mean, scale=scale, fitted_rows=int(doc.get("fitted_rows", 0)))
