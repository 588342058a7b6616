"""Continuous training: retrain when enough new labelled records (or, with `feedback_min`,
enough new analysts' verdicts on `fraud_feedback`) arrived, promote on merit.

Each round trains a challenger on the most recent `window` rows (its test split is therefore the
most recent fifth of them) and scores the current champion (the version LATEST names) on exactly
those test rows. The challenger becomes LATEST and is announced only if its PR-AUC there is
higher; otherwise it is still registered, for the record, with the decision in its report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.feedback import feedback_count
from services.common.kafka import make_consumer, topic_partitions
from services.common.topics import FEEDBACK_TOPIC
from services.model_registry.registry import ModelRefused, ModelRegistry
from services.trainer.api import Hooks, ModelVersion, register
from services.trainer.core import TrainConfig, TrainOutcome, fit_and_evaluate
from services.trainer.evaluate import ranking_metrics
from services.trainer.feedback import evaluate_feedback, fetch_feedback
from services.trainer.ingest import MISSING_ID, Dataset, commit, ingest


def decide(
    outcome: TrainOutcome, features: np.ndarray, labels: np.ndarray, registry: ModelRegistry
) -> dict[str, Any]:
    """Champion vs challenger on the challenger's test rows (raw `features`, the same rows the
    outcome was trained from): promote only a strictly better PR-AUC."""
    test = outcome.split.test
    x_test, y_test = features[labels >= 0][test], labels[labels >= 0][test]
    challenger = {
        "version": "challenger",
        **ranking_metrics(outcome.test_scores[outcome.champion_name], y_test),
    }
    window = {"rows": len(test), "frauds": int(np.sum(y_test == 1))}
    try:
        champion_model = registry.load("latest")
    except ModelRefused as exc:  # none yet, or one that no scorer would load either
        return {
            "decision": "promoted",
            "reason": f"no usable champion registered yet ({exc.code})",
            "window": window,
            "challenger": challenger,
            "champion": None,
        }
    champion = {
        "version": champion_model.version,
        **ranking_metrics(champion_model.score(x_test).astype(np.float64), y_test),
    }
    c_pr, k_pr = _float_or_none(challenger["pr_auc"]), _float_or_none(champion["pr_auc"])
    if c_pr is None or k_pr is None:
        decision, reason = "kept champion", "the recent test window holds no fraud to compare on"
    elif c_pr > k_pr:
        decision = "promoted"
        reason = f"challenger PR-AUC {c_pr:.4f} > champion {champion['version']} {k_pr:.4f}"
    else:
        decision = "kept champion"
        reason = f"challenger PR-AUC {c_pr:.4f} <= champion {champion['version']} {k_pr:.4f}"
    return {
        "decision": decision,
        "reason": reason + f" on the same {window['rows']} most recent test rows",
        "window": window,
        "challenger": challenger,
        "champion": champion,
    }


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _append(buffer: Dataset | None, new: Dataset, window: int) -> Dataset:
    if buffer is None:
        merged = new
    else:
        merged = Dataset(
            features=np.concatenate([buffer.features, new.features]),
            labels=np.concatenate([buffer.labels, new.labels]),
            partitions=np.concatenate([buffer.partitions, new.partitions]),
            offsets=np.concatenate([buffer.offsets, new.offsets]),
            ids=None
            if buffer.ids is None and new.ids is None
            else np.concatenate([_ids(buffer), _ids(new)]),
            topic=new.topic,
            consumed=buffer.consumed + new.consumed,
            rejected=buffer.rejected + new.rejected,
            next_offsets=new.next_offsets,
            start_offsets=buffer.start_offsets,
            seconds=new.seconds,
        )
    if len(merged) > window:
        keep = np.argsort(merged.features[:, 0], kind="stable")[-window:]
        keep.sort()
        merged.features, merged.labels = merged.features[keep], merged.labels[keep]
        merged.partitions, merged.offsets = merged.partitions[keep], merged.offsets[keep]
        if merged.ids is not None:
            merged.ids = merged.ids[keep]
    return merged


def _ids(dataset: Dataset) -> np.ndarray:
    """The dataset's IDs (all MISSING_ID when it has none)."""
    if dataset.ids is not None:
        return dataset.ids
    return np.full(len(dataset), MISSING_ID, dtype=np.int64)


def new_records(topic: str, group: str, next_offsets: dict[int, int], bootstrap: str | None) -> int:
    """Records on the topic beyond what the last round read."""
    consumer = make_consumer(f"{group}-probe", bootstrap)
    try:
        total = 0
        for tp in topic_partitions(consumer, topic):
            high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            total += max(0, high - next_offsets.get(tp.partition, 0))
        return total
    finally:
        consumer.close()


@dataclass
class WatchOptions:
    every_records: int = 10_000
    interval_s: float | None = None
    window: int = 300_000
    max_rounds: int | None = None
    poll_s: float = 5.0
    feedback_topic: str | None = FEEDBACK_TOPIC
    """verdicts every round is also evaluated on (None: none)"""
    feedback_min: int | None = None
    """also start a round once this many new verdicts arrived since the last (None: never)"""


def _feedback_due(options: WatchOptions, seen: int, bootstrap: str | None) -> tuple[bool, int]:
    """(enough new verdicts for a round, verdict records on the topic now)."""
    if options.feedback_topic is None or options.feedback_min is None:
        return False, seen
    now = feedback_count(options.feedback_topic, bootstrap)
    return now - seen >= options.feedback_min, now


def watch(
    topic: str,
    group: str,
    config: TrainConfig,
    registry: ModelRegistry,
    options: WatchOptions,
    from_beginning: bool = False,
    bootstrap: str | None = None,
    schema_registry_url: str | None = None,
    hooks: Hooks | None = None,
    on_round: Callable[[ModelVersion], None] | None = None,
    models_topic: str | None = None,
) -> list[ModelVersion]:
    """Rounds until `max_rounds` (or forever): wait for data, train, decide, register."""
    hooks = hooks or Hooks()
    buffer: Dataset | None = None
    versions: list[ModelVersion] = []
    last_round = time.monotonic()
    first = True
    seen_feedback = 0
    while options.max_rounds is None or len(versions) < options.max_rounds:
        feedback_due, feedback_now = _feedback_due(options, seen_feedback, bootstrap)
        if not first:
            assert buffer is not None
            waiting = new_records(topic, group, buffer.next_offsets, bootstrap)
            due = options.interval_s is not None and time.monotonic() - last_round >= (
                options.interval_s
            )
            if waiting < options.every_records and not (due and waiting > 0) and not feedback_due:
                time.sleep(options.poll_s)
                continue
            trigger = "records" if waiting >= options.every_records or due else "feedback"
        else:
            trigger = "first round"
        seen_feedback = feedback_now
        new = ingest(
            topic,
            group,
            from_beginning=from_beginning and first,
            bootstrap=bootstrap,
            schema_registry_url=schema_registry_url,
            on_progress=hooks.on_ingest,
        )
        first = False
        last_round = time.monotonic()
        buffer = _append(buffer, new, options.window)
        commit(new, group, bootstrap)
        outcome = fit_and_evaluate(
            buffer.features, buffer.labels, config, hooks.on_epoch, hooks.on_stage
        )
        if options.feedback_topic is not None:
            verdicts = fetch_feedback(options.feedback_topic, bootstrap, schema_registry_url)
            outcome.metrics["feedback"] = {
                **evaluate_feedback(
                    outcome, buffer.features, buffer.labels, buffer.ids, verdicts,
                    options.feedback_topic,
                ),
                "round_trigger": trigger,
            }  # fmt: skip
        decision = decide(outcome, buffer.features, buffer.labels, registry)
        promote = decision["decision"] == "promoted"
        version = register(
            outcome,
            registry,
            source=buffer.summary(),
            promotion=decision,
            make_latest=promote,
            announce=promote,
            bootstrap=bootstrap,
            models_topic=models_topic,
        )
        versions.append(version)
        if on_round is not None:
            on_round(version)
    return versions
