"""Threshold by alert budget: a derived version published like any other, LATEST and announced
when it starts from LATEST; the budget's precision and recall in its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.model_registry.budget import (
    SCORES_FILE,
    BadBudget,
    NoValidationScores,
    Scores,
    budget_threshold,
    set_alert_budget,
    write_scores,
)
from services.model_registry.registry import ModelRegistry


def scores(seed: int = 0) -> Scores:
    rng = np.random.default_rng(seed)
    val_labels = (rng.random(20_000) < 0.01).astype(np.int64)
    test_labels = (rng.random(20_000) < 0.01).astype(np.int64)
    return Scores(
        rng.normal(size=20_000) + 3 * val_labels,
        val_labels,
        rng.normal(size=20_000) + 3 * test_labels,
        test_labels,
    )


def save(models_dir: Path, with_scores: bool = True, latest: bool = True) -> str:
    import keras

    from services.model_registry.preprocessing import Preprocessing

    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(30)])
    pre = Preprocessing.fit(np.random.default_rng(1).normal(size=(200, 30)))
    return ModelRegistry(models_dir).save_version(
        model,
        pre,
        {"threshold": 2.5, "rule": "best_f1", "error": {"clip": None}},
        {"test": {}},
        write_extra=(lambda f, _v: write_scores(f, scores())) if with_scores else None,
        make_latest=latest,
        announce=False,
    )


def test_budget_publishes_a_derived_latest_version(tmp_path: Path) -> None:
    base = save(tmp_path)
    result = set_alert_budget("latest", 15, models_dir=tmp_path, announce=False)
    registry = ModelRegistry(tmp_path)
    assert result.derived_from == base and result.version != base
    assert registry.latest() == result.version and result.latest and not result.announced
    assert registry.integrity(result.version) == "verified"
    expected = budget_threshold(scores().validation_scores, 15)
    assert result.threshold == expected == float(np.quantile(scores().validation_scores, 0.9985))
    assert abs(result.validation["alerts_per_10k"] - 15) < 1
    info = registry.threshold_info(result.version)
    assert info["rule"] == "alert_budget" and info["alert_budget_per_10k"] == 15
    assert info["previous"]["threshold"] == 2.5 and info["derived_from"] == base
    assert registry.load(result.version).threshold == expected
    # the report says what the budget buys on the test split
    test = scores()
    alert = test.test_scores >= expected
    precision = (alert & (test.test_labels == 1)).sum() / alert.sum()
    assert result.test["precision"] == pytest.approx(precision)
    report = (tmp_path / result.version / "report.md").read_text()
    assert "at most **15 alerts per 10,000" in report and f"{100 * precision:.1f} %" in report
    metrics = registry.metrics(result.version)
    assert metrics["alert_budget"]["test"]["recall"] == result.test["recall"]
    assert metrics["version"] == result.version
    # the base is untouched; the model files are the same bytes
    assert registry.threshold_info(base)["threshold"] == 2.5
    for name in ("model.keras", "preprocessing.json", SCORES_FILE):
        assert (tmp_path / base / name).read_bytes() == (
            tmp_path / result.version / name
        ).read_bytes()


def test_budget_on_an_older_version_leaves_latest_alone(tmp_path: Path) -> None:
    old = save(tmp_path)
    newer = save(tmp_path)
    result = set_alert_budget(old, 40, models_dir=tmp_path, announce=False)
    assert not result.latest and ModelRegistry(tmp_path).latest() == newer


@pytest.mark.parametrize("budget", [0, -1, 10_001, float("nan"), float("inf"), True, "5"])
def test_bad_budgets_are_client_errors_and_write_nothing(tmp_path: Path, budget: object) -> None:
    save(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(BadBudget) as err:
        set_alert_budget("latest", budget, models_dir=tmp_path, announce=False)  # type: ignore[arg-type]
    assert isinstance(err.value, ValueError)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_version_without_validation_scores_cannot_take_a_budget(tmp_path: Path) -> None:
    save(tmp_path, with_scores=False)
    with pytest.raises(NoValidationScores):
        set_alert_budget("latest", 10, models_dir=tmp_path, announce=False)


def test_scores_file_round_trips_and_rejects_garbage() -> None:
    s = scores()
    back = Scores.from_bytes(s.to_bytes())
    assert np.array_equal(back.validation_scores, s.validation_scores)
    from services.model_registry.errors import ModelRegistryError

    with pytest.raises(ModelRegistryError):
        Scores.from_bytes(b"not an npz")


@pytest.mark.slow
def test_cli_budget_announces_the_new_version(
    kafka_bootstrap: str, tmp_path: Path, topic_name: str
) -> None:
    from test_scorer_support import read_all
    from typer.testing import CliRunner

    from services.cli import app
    from services.model_registry.registry import announcement_from_json

    save(tmp_path)
    out = CliRunner().invoke(
        app,
        ["model", "threshold", "--budget", "25", "--models-dir", str(tmp_path),
         "--models-topic", topic_name],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    last = out.output.strip().splitlines()[-1]
    registry = ModelRegistry(tmp_path)
    version = registry.latest()
    assert version is not None and last.startswith(f"model {version} threshold=")
    assert "budget=25/10k precision=" in last
    events = [announcement_from_json(m.value()) for m in read_all(topic_name, kafka_bootstrap)]
    assert [(e.version, e.digest) for e in events] == [(version, registry.manifest_digest(version))]
    assert json.loads((tmp_path / version / "threshold.json").read_text())["rule"] == "alert_budget"
