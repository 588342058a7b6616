"""The trainer's Python API, used by `fraudstream train` and by the data scientist's notebook.

    from services.trainer.api import train
    mv = train(max_records=100_000, epochs=10, from_beginning=True)
    mv.pr_auc, mv.threshold, mv.path       # the registered version
    mv                                      # in Jupyter: the report with its plots

`train_arrays` does the same from numpy arrays (e.g. a DataFrame read from CSV), without Kafka.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.common.feedback import Feedback
from services.common.topics import FEEDBACK_TOPIC, PREPROCESSED_TOPIC
from services.model_registry.budget import Scores, write_scores
from services.model_registry.feature_stats import FEATURE_STATS_FILE
from services.model_registry.registry import (
    REPORT_FILE,
    KerasLoadedModel,
    ModelRegistry,
)
from services.model_registry.scoring import CandidateLoadedModel
from services.trainer.core import TrainConfig, TrainOutcome, fit_and_evaluate
from services.trainer.errors import TrainingDataError
from services.trainer.evaluate import ThresholdRule
from services.trainer.feedback import evaluate_feedback, feedback_line, fetch_feedback
from services.trainer.ingest import Dataset, commit, ingest
from services.trainer.model import ModelConfig
from services.trainer.report import render_report, write_plots

DEFAULT_GROUP = "fraudstream-train"


@dataclass
class Hooks:
    """Optional progress callbacks (the CLI draws progress bars with them)."""

    on_ingest: Callable[[int, int], None] | None = None
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    on_stage: Callable[[str], None] | None = None


@dataclass
class ModelVersion:
    """A registered version as the notebook sees it."""

    version: str
    path: Path
    threshold: float
    rule: str
    metrics: dict[str, Any]
    latest: bool
    announced: bool
    outcome: TrainOutcome | None = field(default=None, repr=False)

    @property
    def champion(self) -> str:
        """The candidate this version serves (older versions: the autoencoder)."""
        return str(self.metrics.get("champion", {}).get("name", "autoencoder"))

    @property
    def roc_auc(self) -> float | None:
        value = self.metrics["test"][self.champion]["roc_auc"]
        return None if value is None else float(value)

    @property
    def pr_auc(self) -> float | None:
        value = self.metrics["test"][self.champion]["pr_auc"]
        return None if value is None else float(value)

    def summary_line(self) -> str:
        """The last line `fraudstream train` prints (DESIGN.md); the figures are the served
        champion's."""

        def f(v: float | None) -> str:
            return "nan" if v is None else f"{v:.4f}"

        return (
            f"model {self.version} roc_auc={f(self.roc_auc)} pr_auc={f(self.pr_auc)} "
            f"threshold={self.threshold:.6g}"
        )

    def champion_line(self) -> str:
        """Which candidate the version serves and why (printed before the summary line)."""
        reason = self.metrics.get("champion", {}).get("reason", "")
        return f"champion {self.champion}" + (f": {reason}" if reason else "")

    def feedback_line(self) -> str | None:
        """How the version does on analysts' verdicts (None: no reviewed row in its data)."""
        return feedback_line(self.metrics.get("feedback"))

    def report(self) -> str:
        return (self.path / REPORT_FILE).read_text()

    def load(self) -> KerasLoadedModel | CandidateLoadedModel:
        return ModelRegistry(self.path.parent).load(self.version)

    def _repr_markdown_(self) -> str:  # Jupyter renders the report (plots sit next to it)
        return self.report()


def make_config(
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    hidden: tuple[int, ...] | None = None,
    seed: int | None = None,
    alert_budget: float | None = None,
    target_precision: float | None = None,
    baselines: bool = True,
    model: str | None = None,
) -> TrainConfig:
    """A TrainConfig from the usual knobs (None keeps the default)."""
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "hidden": hidden,
            "seed": seed,
        }.items()
        if v is not None
    }
    return TrainConfig(
        model=dataclasses.replace(ModelConfig(), **overrides),
        rule=ThresholdRule.from_options(alert_budget, target_precision),
        baselines=baselines,
        forced_model=_forced(model, baselines),
    )


def _forced(model: str | None, baselines: bool) -> str | None:
    """`--model`: auto (None) or one candidate's name (ValueError otherwise)."""
    from services.trainer.candidates import NAMES

    if model in (None, "auto"):
        return None
    if model not in NAMES:
        raise ValueError(f"--model must be auto or one of {', '.join(NAMES)}: {model!r}")
    if model != "autoencoder" and not baselines:
        raise ValueError(f"--model {model} needs the candidates (drop --no-baselines)")
    return model


def register(
    outcome: TrainOutcome,
    registry: ModelRegistry,
    source: dict[str, Any] | None = None,
    promotion: dict[str, Any] | None = None,
    make_latest: bool = True,
    announce: bool = True,
    bootstrap: str | None = None,
    models_topic: str | None = None,
) -> ModelVersion:
    """Write the outcome as a version: files, plots, report; LATEST and the event if asked."""
    metrics = dict(outcome.metrics)
    if source:
        metrics["source"] = source
    if promotion:
        metrics["promotion"] = promotion

    def extra(folder: Path, version: str) -> None:
        if outcome.champion is not None:
            outcome.champion.write(folder)
        if outcome.feature_stats is not None:
            (folder / FEATURE_STATS_FILE).write_text(outcome.feature_stats.to_json())
        if outcome.validation_scores is not None and outcome.validation_labels is not None:
            served = outcome.test_scores[outcome.champion_name]
            write_scores(
                folder,
                Scores(
                    outcome.validation_scores,
                    outcome.validation_labels,
                    np.asarray(served, dtype=np.float64),
                    np.asarray(outcome.test_labels),
                ),
            )
        write_plots(outcome, folder)
        (folder / REPORT_FILE).write_text(render_report(version, metrics, outcome.threshold))

    kwargs: dict[str, Any] = {"models_topic": models_topic} if models_topic else {}
    version = registry.save_version(
        outcome.model,
        outcome.preprocessing,
        outcome.threshold,
        metrics,
        write_extra=extra,
        make_latest=make_latest,
        announce=announce,
        bootstrap=bootstrap,
        **kwargs,
    )
    return ModelVersion(
        version=version,
        path=registry.models_dir / version,
        threshold=outcome.threshold_value,
        rule=str(outcome.threshold["rule"]),
        metrics=registry.metrics(version),
        latest=make_latest,
        announced=announce,
        outcome=outcome,
    )


def train_arrays(
    features: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig | None = None,
    models_dir: Path | str | None = None,
    announce: bool = False,
    make_latest: bool = True,
    hooks: Hooks | None = None,
    bootstrap: str | None = None,
) -> ModelVersion:
    """Fit, evaluate and register from raw features [n, 30] (TIME, V1..V28, AMOUNT) + labels."""
    dataset = Dataset.from_arrays(features, labels, topic="(arrays)")
    return train_dataset(
        dataset, config, ModelRegistry(models_dir), announce, make_latest, hooks, bootstrap
    )


def train_dataset(
    dataset: Dataset,
    config: TrainConfig | None,
    registry: ModelRegistry,
    announce: bool = True,
    make_latest: bool = True,
    hooks: Hooks | None = None,
    bootstrap: str | None = None,
    models_topic: str | None = None,
    feedback: dict[int, Feedback] | None = None,
    feedback_topic: str = FEEDBACK_TOPIC,
) -> ModelVersion:
    """Fit, evaluate (on the test split, and on analysts' `feedback` when given) and register."""
    hooks = hooks or Hooks()
    outcome = fit_and_evaluate(
        dataset.features, dataset.labels, config, hooks.on_epoch, hooks.on_stage
    )
    if feedback is not None:
        outcome.metrics["feedback"] = evaluate_feedback(
            outcome, dataset.features, dataset.labels, dataset.ids, feedback, feedback_topic
        )
    if hooks.on_stage:
        hooks.on_stage("register version")
    return register(
        outcome,
        registry,
        source=dataset.summary(),
        make_latest=make_latest,
        announce=announce,
        bootstrap=bootstrap,
        models_topic=models_topic,
    )


def train(
    topic: str = PREPROCESSED_TOPIC,
    max_records: int | None = None,
    epochs: int | None = None,
    from_beginning: bool = False,
    group: str = DEFAULT_GROUP,
    config: TrainConfig | None = None,
    models_dir: Path | str | None = None,
    bootstrap: str | None = None,
    schema_registry_url: str | None = None,
    announce: bool = True,
    make_latest: bool = True,
    commit_offsets: bool = True,
    hooks: Hooks | None = None,
    models_topic: str | None = None,
    feedback_topic: str | None = FEEDBACK_TOPIC,
) -> ModelVersion:
    """Consume the labelled Avro stream, fit, evaluate, register; returns the version.

    Reads from the group's committed offsets (or the beginning) up to the end offsets of now,
    at most `max_records`; the offsets are committed only after the version is registered.
    The version is also evaluated on the analysts' verdicts of `feedback_topic` (None: not).
    """
    hooks = hooks or Hooks()
    config = config or TrainConfig()
    if epochs is not None:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, epochs=epochs))
    if hooks.on_stage:
        hooks.on_stage(f"read {topic}")
    dataset = ingest(
        topic,
        group,
        max_records=max_records,
        from_beginning=from_beginning,
        bootstrap=bootstrap,
        schema_registry_url=schema_registry_url,
        on_progress=hooks.on_ingest,
    )
    if len(dataset) == 0 and dataset.rejected:
        reasons = "; ".join(f"{n}x {r}" for r, n in dataset.rejected.most_common(3))
        raise TrainingDataError(
            f"no usable record among {dataset.consumed} read from {topic}: {reasons}"
        )
    feedback = fetch_feedback(feedback_topic, bootstrap, schema_registry_url)
    version = train_dataset(
        dataset,
        config,
        ModelRegistry(models_dir),
        announce=announce,
        make_latest=make_latest,
        hooks=hooks,
        bootstrap=bootstrap,
        models_topic=models_topic,
        feedback=feedback if feedback_topic is not None else None,
        feedback_topic=feedback_topic or FEEDBACK_TOPIC,
    )
    if commit_offsets:
        commit(dataset, group, bootstrap)
    return version
