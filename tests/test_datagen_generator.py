"""`fraudstream datagen`: layout, determinism, statistics against the published facts, and a
baseline detector that must find the frauds learnable but not trivial."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.common.synthetic_families import generate_frame
from services.common.synthetic_transactions import (
    AMOUNT_MAX,
    CHUNK_ROWS,
    SECONDS,
    V_VARIANCES,
    _structure,
    generate_chunks,
    reference_whitening,
)
from services.common.topics import EXTENDED_COLUMNS, KAGGLE_COLUMNS, V_COLUMNS
from services.producer.datagen import write_csv
from services.producer.layout import BASE_TIME, USERS

STRONG = ["V14", "V12", "V10", "V17", "V4", "V11", "V3"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_frame(100_000, seed=7)


def test_kaggle_layout_has_quoted_header_and_quoted_class(tmp_path: Path) -> None:
    path = tmp_path / "k.csv"
    result = write_csv(path, 500, seed=1)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(f'"{c}"' for c in KAGGLE_COLUMNS)
    assert len(lines) == 501 and result.rows == 500
    rows = list(csv.reader(lines[1:]))
    assert all(len(r) == 31 for r in rows)
    assert all(line.endswith(('"0"', '"1"')) for line in lines[1:])
    assert result.frauds == sum(line.endswith('"1"') for line in lines[1:]) == round(500 * 0.00172)


def test_extended_layout_ids_timestamps_users(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    write_csv(path, 300, seed=1, extended=True)
    rows = list(csv.reader(path.read_text().splitlines()))
    assert len(rows) == 300 and all(len(r) == len(EXTENDED_COLUMNS) for r in rows)
    assert [int(r[0]) for r in rows] == list(range(1, 301))
    stamps = pd.to_datetime([r[1] for r in rows], utc=True, format="%Y-%m-%dT%H:%M:%SZ")
    seconds = [(s - BASE_TIME).total_seconds() for s in stamps]
    assert seconds == [float(r[3]) for r in rows]
    assert {r[2] for r in rows} <= set(USERS) and len({r[2] for r in rows}) > 10
    raw = path.read_text().splitlines()[0]
    assert raw.split(",")[1].startswith('"') and raw.split(",")[2].startswith('"')


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    write_csv(a, 2000, seed=3)
    write_csv(b, 2000, seed=3)
    write_csv(c, 2000, seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_the_stored_whitening_is_the_reference_rows_whitening() -> None:
    """datagen starts from the stored mean and whitening (`synthetic_whitening`); recomputed
    from the 400k reference rows they must agree: to the bit on the machine that wrote them,
    within float rounding on another BLAS (eigh's last bits may differ)."""
    mean, whitening = reference_whitening()
    stored = _structure()
    np.testing.assert_allclose(stored.mean, mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(stored.whitening, whitening, rtol=1e-10, atol=1e-12)
    # and it still whitens: the reference rows' signals come out uncorrelated, unit variance
    traits = np.random.default_rng(7).standard_normal((200_000, 3))
    assert np.allclose(np.cov(stored.signals(traits), rowvar=False), np.eye(len(mean)), atol=0.02)


def test_rows_are_made_chunk_by_chunk() -> None:
    sizes = [len(labels) for *_rest, labels in generate_chunks(2 * CHUNK_ROWS + 10, seed=0)]
    assert sizes == [CHUNK_ROWS, CHUNK_ROWS, 10]


def test_exact_fraud_count_and_ratio_option() -> None:
    total = sum(int(lab.sum()) for *_r, lab in generate_chunks(120_000, seed=2, fraud_ratio=0.01))
    assert total == 1200


def test_time_rises_over_two_days_with_day_night_rhythm(frame: pd.DataFrame) -> None:
    time = frame["Time"].to_numpy()
    assert np.all(np.diff(time) >= 0)
    assert time[0] >= 0 and time[-1] <= SECONDS and time[-1] > SECONDS - 600
    hour = (time % 86_400) // 3600
    night = np.isin(hour, [2, 3, 4, 5, 6]).mean() / 5
    evening = np.isin(hour, [14, 15, 16, 17, 18]).mean() / 5
    assert evening > 4 * night


def test_v_components_have_published_variances_and_heavy_tails(frame: pd.DataFrame) -> None:
    v = frame[list(V_COLUMNS)].to_numpy()
    ratio = v.var(axis=0) / V_VARIANCES
    assert np.all(np.abs(ratio - 1) < 0.12), ratio
    assert np.all(np.abs(v.mean(axis=0)) < 0.05 * np.sqrt(V_VARIANCES))
    excess_kurtosis = pd.DataFrame(v).kurt().to_numpy()
    assert np.all(excess_kurtosis > 1.0)
    assert np.abs(v / np.sqrt(V_VARIANCES)).max() > 15


def test_amount_has_published_mean_median_and_max(frame: pd.DataFrame) -> None:
    amount = frame["Amount"]
    assert abs(amount.mean() - 88.35) / 88.35 < 0.08
    assert abs(amount.median() - 22.0) / 22.0 < 0.08
    assert amount.min() >= 0 and amount.max() <= AMOUNT_MAX
    assert np.allclose(amount, amount.round(2))


def test_frauds_differ_most_in_the_published_components() -> None:
    data = generate_frame(100_000, seed=11, fraud_ratio=0.01)
    fraud, normal = data[data.Class == 1], data[data.Class == 0]
    gap = ((fraud[list(V_COLUMNS)].mean() - normal[list(V_COLUMNS)].mean()).abs()) / np.sqrt(
        V_VARIANCES
    )
    assert set(gap.nlargest(7).index) == set(STRONG)
    assert fraud["Amount"].median() < normal["Amount"].median()


def test_isolation_forest_finds_frauds_learnable_not_trivial(frame: pd.DataFrame) -> None:
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    features = frame.drop(columns=["Class"]).to_numpy()
    labels = frame["Class"].to_numpy()
    assert labels.sum() == 172
    forest = IsolationForest(n_estimators=100, random_state=0).fit(features)
    auc = roc_auc_score(labels, -forest.score_samples(features))
    assert 0.85 <= auc <= 0.99, auc


def test_cli_datagen_last_line(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "gen.csv"
    result = CliRunner().invoke(
        app, ["datagen", "--rows", "1000", "--out", str(out), "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"wrote 1000 rows (2 frauds) to {out}"
    assert len(out.read_text().splitlines()) == 1001
