"""The copula data family: published statistics, exact fraud count, seeded, a different process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.common.synthetic_families import FAMILIES, FRAUD_MEAN, chunks_for, copula_chunks
from services.common.synthetic_transactions import AMOUNT_MEDIAN, V_STD
from services.producer.datagen import write_csv
from services.trainer.synthetic import generated_arrays


@pytest.fixture(scope="module")
def copula() -> tuple[np.ndarray, np.ndarray]:
    return generated_arrays(60_000, seed=4, fraud_ratio=0.01, family="copula")


def test_margins_follow_the_published_statistics(copula: tuple[np.ndarray, ...]) -> None:
    x, y = copula
    normal = x[y == 0]
    # published mean 0 and variance (t3 tails make the sample std noisy: a band)
    assert np.all(np.abs(normal[:, 1:29].mean(axis=0)) < 0.05 * V_STD)
    std = normal[:, 1:29].std(axis=0)
    assert np.all((std > 0.75 * V_STD) & (std < 1.3 * V_STD))
    assert abs(np.median(normal[:, 29]) - AMOUNT_MEDIAN) < 2.0
    # Amount's published correlation with V2 is -0.53 (ranks: robust to the tails)
    ranks = np.argsort(np.argsort(normal, axis=0), axis=0)
    assert np.corrcoef(ranks[:, 2], ranks[:, 29])[0, 1] < -0.3
    # frauds lean the published way along the strongest columns (V14, V12, V10, V17)
    for j in (14, 12, 10, 17):
        assert np.sign(np.median(x[y == 1, j])) == np.sign(FRAUD_MEAN[j - 1])


def test_exact_fraud_count_and_seeded() -> None:
    a = [c for c in copula_chunks(70_000, seed=3, fraud_ratio=0.004)]
    b = [c for c in copula_chunks(70_000, seed=3, fraud_ratio=0.004)]
    assert sum(int(c[3].sum()) for c in a) == 280
    for ca, cb in zip(a, b, strict=True):
        for pa, pb in zip(ca, cb, strict=True):
            np.testing.assert_array_equal(pa, pb)
    other = next(iter(copula_chunks(1_000, seed=4)))
    assert not np.array_equal(other[1], a[0][1][:1_000])


def test_a_different_process_than_latent() -> None:
    latent, _ = generated_arrays(20_000, seed=1, family="latent")
    cop, _ = generated_arrays(20_000, seed=1, family="copula")
    assert not np.allclose(latent[:, 1:29], cop[:, 1:29])
    # the copula's V1 is long-tailed to the left (published min -56, max 2.4)
    v1 = cop[:, 1]
    assert abs(np.percentile(v1, 0.5)) > 1.5 * abs(np.percentile(v1, 99.5))
    assert set(FAMILIES) >= {"latent", "copula"}
    with pytest.raises(ValueError, match="known"):
        chunks_for("nope")


def test_cli_writes_a_family_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "c.csv"
    result = runner.invoke(
        app, ["datagen", "--rows", "2000", "--out", str(out), "--family", "copula", "--seed", "2"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"wrote 2000 rows (3 frauds) to {out}"
    same = tmp_path / "d.csv"
    write_csv(same, 2000, seed=2, family="copula")
    assert same.read_bytes() == out.read_bytes()
    bad = runner.invoke(app, ["datagen", "--rows", "5", "--out", str(out), "--family", "nope"])
    assert bad.exit_code != 0
