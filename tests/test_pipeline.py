"""`fraudstream run`: its label counting and summary, and the whole pipeline end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.process import free_port
from services.common.topics import ALERTS_TOPIC, SOURCE_TOPIC
from services.pipeline.labels import LabelCounts, count_labels
from services.pipeline.offsets import TopicMark, mark
from services.pipeline.summary import AlertTally, RunSummary, StageRate, tally_alerts

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def test_count_labels_in_both_layouts() -> None:
    small = count_labels(SHARED_DATA / "creditcard_small.csv")
    assert (small.rows, small.labelled, small.frauds) == (999, 999, 15)
    extended = count_labels(SHARED_DATA / "creditcard_extended.csv")
    assert extended.rows == 10 and extended.labelled == 9
    head = count_labels(SHARED_DATA / "creditcard_small.csv", first_rows=100)
    assert head.rows == 100


def test_topic_mark_difference() -> None:
    before = TopicMark("t", {0: 5, 1: 7})
    after = TopicMark("t", {0: 9, 1: 7, 2: 3})
    assert after.added_since(before) == 4 + 0 + 3


def test_summary_precision_recall() -> None:
    summary = RunSummary(
        records_in=1000,
        bad_lines=0,
        labels=LabelCounts(rows=1000, labelled=990, frauds=10),
        alerts=AlertTally(alerts=20, true_frauds=8, unlabelled=4),
        model_version="v1",
        model_line="model v1",
        report=Path("r.md"),
        stages=[StageRate("produce", 1000, 0.5)],
        metrics_port=9464,
    )
    assert summary.precision == pytest.approx(8 / 16)
    assert summary.recall == pytest.approx(0.8)
    assert summary.headline().startswith("records 1000 alerts 20 (frauds 8/10)")
    assert "produce 2,000 rec/s" in summary.lines()[1]


@pytest.mark.slow
def test_run_end_to_end(ksql_url: str, tmp_path: Path) -> None:
    """`fraudstream run --rows 50000 --exit` from a clean FRAUDSTREAM_HOME; the summary's
    figures are checked against what is on the topics."""
    source_before, alerts_before = mark(SOURCE_TOPIC), mark(ALERTS_TOPIC)
    env = {
        **os.environ,
        "FRAUDSTREAM_HOME": str(tmp_path / "home"),
        "MODELS_DIR": str(tmp_path / "models"),
        # not the default 9464: the own-stack tests run a pipeline beside this one
        "FRAUDSTREAM_METRICS_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "run", "--rows", "50000", "--exit", "--epochs", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    found = re.match(r"records (\d+) alerts (\d+) \(frauds (\d+)/(\d+)\)", last)
    assert found, last
    records, alerts, caught, frauds = map(int, found.groups())
    assert records == 50000 == mark(SOURCE_TOPIC).added_since(source_before)
    tally = tally_alerts(alerts_before)
    assert alerts > 0 and tally.alerts == alerts and tally.true_frauds == caught
    assert (
        frauds == count_labels(tmp_path / "home" / "data" / "transactions-50000-seed42.csv").frauds
    )
    assert (tmp_path / "models" / "LATEST").exists()
