"""Feature drift: the live stream against the data the live model was trained on (PSI per feature).

The newest `sample` records of the scoring topic are read (read-committed, assigned, nothing
committed), decoded with the shared decoder and turned into the model's features by the same
rule as the scorer (`extract_features`). Each feature's population stability index is taken
against the decile edges and proportions the trainer kept in `models/<version>/feature_stats.json`
(`FeatureStats.drift`, services/model_registry/feature_stats.py); a PSI above its PSI_FLAG
(0.2, the usual "significant shift" rule) is flagged. A version trained before feature
statistics existed has no drift view.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import TopicPartition

from services.common.avro.codec import AvroDecoder
from services.common.avro.features import extract_features
from services.common.avro.schemas import registry_client
from services.common.avro.wire import WireFormatError
from services.common.kafka import make_consumer, quiet_logging, watermarks
from services.console.config import ConsoleConfig
from services.console.models import load_stats

CACHE_S = 10.0


def read_newest(topic: str, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """The newest `count` committed records of `topic`, decoded (undecodable ones skipped)."""
    consumer = make_consumer("fraudstream-console-drift", **quiet_logging())
    try:
        marks = watermarks(consumer, topic, timeout=5)
        if not marks:
            return []
        share = max(1, count // len(marks))
        assignment, ends = [], {}
        for p, (low, high) in marks.items():
            if high > low:
                assignment.append(TopicPartition(topic, p, max(low, high - share)))
                ends[p] = high
        if not assignment:
            return []
        consumer.assign(assignment)
        decoder = AvroDecoder(registry_client())
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is not None:
                    continue
                p, offset = msg.partition() or 0, msg.offset() or 0
                if offset + 1 >= ends.get(p, 0):
                    ends.pop(p, None)
                try:
                    records.append(decoder.decode(msg.value()))
                except WireFormatError:
                    continue
        return records
    finally:
        consumer.close()


def psi_rows(stats: Any, features: np.ndarray) -> list[dict[str, Any]]:
    """PSI per feature of `features` (raw float32 [n, 30]) against a version's FeatureStats,
    highest first, flagged above PSI_FLAG."""
    from services.model_registry.feature_stats import PSI_FLAG

    rows = []
    for name, value in stats.drift(features).items():
        finite = bool(np.isfinite(value))
        rows.append(
            {
                "feature": name,
                "psi": round(float(value), 4) if finite else None,
                "flagged": finite and value > PSI_FLAG,
            }
        )
    rows.sort(key=lambda row: -(row["psi"] if row["psi"] is not None else -1.0))
    return rows


@dataclass
class DriftView:
    config: ConsoleConfig
    _cache: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    def report(self, version: str) -> dict[str, Any]:
        """{version, sample, features: [{feature, psi, flagged}], note}; cached CACHE_S."""
        now = time.monotonic()
        cached = self._cache.get(version)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        result = self._compute(version)
        self._cache = {version: (now, result)}
        return result

    def _compute(self, version: str) -> dict[str, Any]:
        stats = load_stats(self.config.models_path, version)
        base: dict[str, Any] = {"version": version, "sample": 0, "features": []}
        if stats is None:
            return {**base, "note": f"model {version} has no feature statistics"}
        records = read_newest(self.config.scoring_topic, self.config.drift_sample)
        batch = extract_features(records)
        base["sample"] = len(batch.features)
        if not len(batch.features):
            return {**base, "note": "no live records to compare yet"}
        base["features"] = psi_rows(stats, batch.features)
        return base
