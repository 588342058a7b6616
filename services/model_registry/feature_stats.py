"""What the training data looked like, per feature: `models/<version>/feature_stats.json`.

Two readers need it. The scorer's explanations put each top feature's value next to its
*normal range* (`low`/`high`: the 1st and 99th percentiles of the training split), so an analyst
sees "V14 = -9.1, normally -2.3 … 1.9". The console's drift view compares the live stream with
the training data by the population stability index per feature, over the training split's
decile bins (`edges`, 11 values from the minimum to the maximum, and `proportions`, the share of
training rows in each bin; PSI above 0.2 is the usual "the population has shifted" flag).

Values are taken as the model reads them before standardising, except that TIME, which only
grows along a stream, is the hour of day (0-24) as preprocessing turns it: a range of absolute
seconds from last week's training data would flag every new transaction. `display_values` is
that view, used for the statistics and for the VALUE of an explanation alike.

A version written before this file existed has none: `load_feature_stats` returns None and the
explanations carry null ranges.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common.topics import AVRO_FEATURE_FIELDS
from services.model_registry.preprocessing import TIME_COLUMN, hour_of_day

FEATURE_STATS_FILE = "feature_stats.json"
STATS_FORMAT = 1
LOW_QUANTILE, HIGH_QUANTILE = 0.01, 0.99
BINS = 10
"""Deciles of the training split."""
PSI_FLOOR = 1e-4
"""Proportions below this count as this in PSI (an empty bin would make it infinite)."""
PSI_FLAG = 0.2
"""PSI above this: the feature's population has shifted (the usual rule of thumb)."""
MAX_STATS_BYTES = 1 << 20


def display_values(features: np.ndarray) -> np.ndarray:
    """Raw features float [n, 30] as the statistics and explanations show them (float64):
    TIME as hour of day, everything else as received."""
    x = np.array(features, dtype=np.float64, copy=True)
    x[:, TIME_COLUMN] = hour_of_day(x[:, TIME_COLUMN])
    return x


@dataclass(frozen=True)
class FeatureStats:
    """Per feature (in the model's column order): normal range and decile bins."""

    names: tuple[str, ...]
    low: np.ndarray
    """float64 [30]: the 1st percentile of the training split"""
    high: np.ndarray
    """float64 [30]: the 99th percentile"""
    edges: tuple[np.ndarray, ...]
    """per feature, the bin edges (ascending, distinct; first = min, last = max)"""
    proportions: tuple[np.ndarray, ...]
    """per feature, the share of training rows in each bin (len(edges) - 1 values)"""
    rows: int

    @classmethod
    def fit(cls, features: np.ndarray) -> FeatureStats:
        """The statistics of raw training features [n, 30] (n >= 1)."""
        x = display_values(features)
        if len(x) == 0:
            raise ValueError("no rows to compute feature statistics on")
        low = np.quantile(x, LOW_QUANTILE, axis=0)
        high = np.quantile(x, HIGH_QUANTILE, axis=0)
        deciles = np.quantile(x, np.linspace(0.0, 1.0, BINS + 1), axis=0)
        edges, proportions = [], []
        for j in range(x.shape[1]):
            e = np.unique(deciles[:, j])
            if len(e) == 1:  # a constant column: one bin
                e = np.array([e[0], e[0]])
            edges.append(e)
            counts = bin_counts(e, x[:, j])
            proportions.append(counts / counts.sum())
        return cls(AVRO_FEATURE_FIELDS, low, high, tuple(edges), tuple(proportions), len(x))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATS_FORMAT,
            "rows": self.rows,
            "time": "hour of day (TIME mod 86400 / 3600)",
            "quantiles": {"low": LOW_QUANTILE, "high": HIGH_QUANTILE},
            "features": {
                name: {
                    "low": float(self.low[j]),
                    "high": float(self.high[j]),
                    "edges": [float(v) for v in self.edges[j]],
                    "proportions": [float(v) for v in self.proportions[j]],
                }
                for j, name in enumerate(self.names)
            },
        }

    @classmethod
    def from_dict(cls, doc: Any) -> FeatureStats:
        """Parse and check a feature_stats.json document (ValueError when malformed)."""
        if not isinstance(doc, dict) or doc.get("format") != STATS_FORMAT:
            raise ValueError(f"{FEATURE_STATS_FILE}: unknown format")
        features = doc.get("features")
        if not isinstance(features, dict) or set(features) != set(AVRO_FEATURE_FIELDS):
            raise ValueError(f"{FEATURE_STATS_FILE}: features differ from the model's")
        low, high, edges, proportions = [], [], [], []
        for name in AVRO_FEATURE_FIELDS:
            entry = features[name]
            e = _floats(entry.get("edges"), f"{name}.edges")
            p = _floats(entry.get("proportions"), f"{name}.proportions")
            if len(e) < 2 or len(p) != len(e) - 1 or np.any(np.diff(e) < 0):
                raise ValueError(f"{FEATURE_STATS_FILE}: {name} has malformed bins")
            low.append(_number(entry.get("low"), f"{name}.low"))
            high.append(_number(entry.get("high"), f"{name}.high"))
            edges.append(e)
            proportions.append(p)
        rows = doc.get("rows")
        return cls(
            AVRO_FEATURE_FIELDS,
            np.array(low),
            np.array(high),
            tuple(edges),
            tuple(proportions),
            int(rows) if isinstance(rows, int) else 0,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, raw: bytes | str) -> FeatureStats:
        if len(raw) > MAX_STATS_BYTES:
            raise ValueError(f"{FEATURE_STATS_FILE} is larger than {MAX_STATS_BYTES} bytes")
        return cls.from_dict(json.loads(raw))

    def drift(self, features: np.ndarray) -> dict[str, float]:
        """PSI per feature of raw live features [n, 30] against the training split (nan for
        no rows)."""
        x = display_values(features)
        return {
            name: psi(self.proportions[j], bin_counts(self.edges[j], x[:, j]))
            for j, name in enumerate(self.names)
        }


def _floats(value: Any, what: str) -> np.ndarray:
    if not isinstance(value, list) or len(value) > 4 * BINS:
        raise ValueError(f"{FEATURE_STATS_FILE}: {what} must be a short list")
    return np.array([_number(v, what) for v in value], dtype=np.float64)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{FEATURE_STATS_FILE}: {what} must be a finite number")
    return float(value)


def bin_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many `values` fall in each bin of `edges` (float64 counts, len(edges) - 1 bins).
    Bins are [e_i, e_i+1) except the last, which is closed; values below the first edge count
    in the first bin and above the last in the last (a live stream may leave the training
    range). NaNs are not counted."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    bins = len(edges) - 1
    index = np.clip(np.searchsorted(edges[1:-1], values, side="right"), 0, bins - 1)
    return np.bincount(index, minlength=bins).astype(np.float64)


def psi(
    expected_proportions: Sequence[float] | np.ndarray, actual_counts: Sequence[float] | np.ndarray
) -> float:
    """Population stability index sum((a - e) * ln(a / e)) of live bin counts against the
    training proportions (both floored at PSI_FLOOR); nan when there are no live rows.
    0 means the same population; above PSI_FLAG (0.2) it has shifted."""
    expected = np.asarray(expected_proportions, dtype=np.float64)
    counts = np.asarray(actual_counts, dtype=np.float64)
    if expected.shape != counts.shape:
        raise ValueError("expected proportions and actual counts need the same bins")
    total = counts.sum()
    if total <= 0:
        return float("nan")
    e = np.maximum(expected, PSI_FLOOR)
    a = np.maximum(counts / total, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def load_feature_stats(
    version: str = "latest", models_dir: Path | str | None = None
) -> FeatureStats | None:
    """The statistics of a registered version (verified against its manifest), or None when
    the version was written without them."""
    from services.model_registry.api import version_dir
    from services.model_registry.registry import ModelRegistry, UnverifiedVersion

    registry = ModelRegistry(models_dir)
    try:
        raw = registry.read_verified(version).get(FEATURE_STATS_FILE)
    except UnverifiedVersion:  # an old version has no manifest and no statistics either
        path = version_dir(registry.models_dir, registry.resolve(version)) / FEATURE_STATS_FILE
        raw = path.read_bytes() if path.is_file() else None
    return None if raw is None else FeatureStats.from_json(raw)


def write_feature_stats(folder: Path, features: np.ndarray) -> FeatureStats:
    """Compute the statistics of raw training features and write them into a staging folder."""
    stats = FeatureStats.fit(features)
    (folder / FEATURE_STATS_FILE).write_text(stats.to_json())
    return stats
