"""Data families for `fraudstream datagen --family`: a second generator, built by a different
process, so that model choice is not judged only on data the project made for its own model.

`latent` (the default, `services/common/synthetic_transactions.py`) puts normal rows on a
low-dimensional curved surface, which an autoencoder is built to learn. `copula` knows nothing
of that surface: it is a Gaussian copula fitted only to the credit-card data set's published
per-column statistics (../shared/data/README.md and the data set's `describe()` and per-class
means):

* normal rows: a correlation matrix that is the identity on V1..V28 (they are PCA components,
  uncorrelated over the whole set) plus `Amount`'s published correlations with V1, V2, V5, V6, V7
  and V20; each margin a two-piece Student-t (3 degrees of freedom) whose left/right scales follow
  the published min/max of the column (V1 is long-tailed to the left, V7 to the right), rescaled
  to the published variance; `Amount` log-normal with the published mean and median;
* frauds: their own copula, a one-factor correlation (loading 0.85) over the columns where the
  published fraud means differ most (V1-V18), Gaussian margins with the published fraud-class
  means and standard deviations, and fraud amounts as `datagen` makes them;
* camouflage: a fraud is drawn between a normal row and a fraud-copula row, at a position
  s ~ Beta(0.9, 1.6) (mean 0.36), so many frauds sit among normal rows; this sets how hard the
  family is (on 100,000 rows IsolationForest and the autoencoder both reach ROC-AUC near 0.9 but
  PR-AUC well below it, as on the real data);
* `Time` follows the same published day/night rhythm as `latent`.

The generator is streamed in chunks like `datagen`, with the same (time, v, amount, label)
chunks, so every writer of `datagen` serves both families and a seed fixes every byte.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from services.common import synthetic_transactions as datagen
from services.common.topics import KAGGLE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

Chunks = Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
ChunkGenerator = Callable[[int, int, float, int], Chunks]

V_MIN = np.array(
    [-56.41, -72.72, -48.33, -5.68, -113.74, -26.16, -43.56, -73.22, -13.43, -24.59, -4.80,
     -18.68, -5.79, -19.21, -4.50, -14.13, -25.16, -9.50, -7.21, -54.50, -34.83, -10.93, -44.81,
     -2.84, -10.30, -2.60, -22.57, -15.43]
)  # fmt: skip
V_MAX = np.array(
    [2.45, 22.06, 9.38, 16.88, 34.80, 73.30, 120.59, 20.01, 15.59, 23.75, 12.02, 7.85, 7.13,
     10.53, 8.88, 17.32, 9.25, 5.04, 5.59, 39.42, 27.20, 10.50, 22.53, 4.58, 7.52, 3.52, 31.61,
     33.85]
)  # fmt: skip
"""Published min and max of V1..V28 over the whole data set."""
FRAUD_MEAN = np.array(
    [-4.772, 3.624, -7.033, 4.542, -3.151, -1.398, -5.569, 0.571, -2.581, -5.677, 3.800, -6.259,
     -0.109, -6.972, -0.093, -4.140, -6.666, -2.246, 0.681, 0.372, 0.714, 0.014, -0.040, -0.105,
     0.041, 0.052, 0.171, 0.076]
)  # fmt: skip
FRAUD_STD = np.array(
    [6.78, 4.29, 7.11, 2.87, 5.37, 1.86, 7.21, 6.80, 2.50, 4.90, 2.68, 4.65, 1.10, 4.28, 1.05,
     3.87, 6.97, 2.90, 1.54, 1.35, 3.87, 1.49, 1.58, 0.52, 0.80, 0.47, 1.38, 0.55]
)  # fmt: skip
"""Published mean and standard deviation of V1..V28 among the 492 frauds."""
AMOUNT_CORRELATION = {1: -0.227, 2: -0.531, 5: -0.386, 6: 0.216, 7: 0.397, 20: 0.339}
"""Published Pearson correlation of Amount with V_j (1-based); the others are near 0."""
FRAUD_FACTOR_COLUMNS = (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 16, 17, 18)
FRAUD_LOADING = 0.85
CAMOUFLAGE = (0.9, 1.6)
"""Beta parameters of a fraud's position between a normal row (0) and a fraud-copula row (1)."""
T_DF = 3.0
_REFERENCE_ROWS = 200_000
_REFERENCE_SEED = 20150901


def _skew() -> np.ndarray:
    """log(right/left) tail ratio per column, bounded so no margin degenerates."""
    return np.clip(np.log(V_MAX / -V_MIN), -1.5, 1.5)


def _two_piece(z: np.ndarray) -> np.ndarray:
    """Two-piece Student-t margins of standard-normal copula values z [n, 28] (unscaled)."""
    from scipy.stats import norm, t

    raw = t.ppf(norm.cdf(z), T_DF)
    half = _skew() / 2.0
    return np.where(raw < 0, raw * np.exp(-half), raw * np.exp(half))


@functools.cache
def _normalisers() -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the unscaled margins (one fixed reference draw), to hit the published
    mean 0 and variance exactly in expectation."""
    z = np.random.default_rng(_REFERENCE_SEED).standard_normal((_REFERENCE_ROWS, datagen.N_V))
    raw = _two_piece(z)
    return raw.mean(axis=0), raw.std(axis=0)


@functools.cache
def _normal_cholesky() -> np.ndarray:
    """Cholesky factor of the normal-class copula correlation over (V1..V28, log Amount)."""
    corr = np.eye(datagen.N_V + 1)
    for j, r in AMOUNT_CORRELATION.items():
        corr[j - 1, -1] = corr[-1, j - 1] = r
    return np.linalg.cholesky(corr)


@functools.cache
def _fraud_cholesky() -> np.ndarray:
    """Cholesky factor of the fraud copula: one factor, signed by the published fraud means."""
    loading = np.zeros(datagen.N_V)
    for j in FRAUD_FACTOR_COLUMNS:
        loading[j - 1] = FRAUD_LOADING * np.sign(FRAUD_MEAN[j - 1])
    corr = np.outer(loading, loading)
    np.fill_diagonal(corr, 1.0)
    return np.linalg.cholesky(corr)


def _normal_rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    z = rng.standard_normal((n, datagen.N_V + 1)) @ _normal_cholesky().T
    mean, std = _normalisers()
    v = (_two_piece(z[:, :-1]) - mean) / std * datagen.V_STD
    amount = np.exp(np.log(datagen.AMOUNT_MEDIAN) + datagen._AMOUNT_SIGMA * z[:, -1])
    return v, amount


def _fraud_rows(rng: np.random.Generator, k: int) -> np.ndarray:
    z = rng.standard_normal((k, datagen.N_V)) @ _fraud_cholesky().T
    fraud = FRAUD_MEAN + FRAUD_STD * z
    normal, _ = _normal_rows(rng, k)
    position = rng.beta(*CAMOUFLAGE, size=(k, 1))
    return normal + position * (fraud - normal)


def copula_chunks(
    rows: int,
    seed: int = 0,
    fraud_ratio: float = datagen.FRAUD_RATIO,
    chunk_rows: int = datagen.CHUNK_ROWS,
) -> Chunks:
    """Yield (time [n], v [n, 28], amount [n], label int8 [n]) as `datagen.generate_chunks`
    does (exactly round(rows * fraud_ratio) frauds, spread at random)."""
    return datagen.chunks_from(_normal_rows, _fraud_rows, rows, seed, fraud_ratio, chunk_rows)


FAMILIES: dict[str, ChunkGenerator] = {
    "latent": datagen.generate_chunks,
    "copula": copula_chunks,
}
"""Every data family by name; `latent` is the default of every command."""
DEFAULT_FAMILY = "latent"


def chunks_for(family: str) -> ChunkGenerator:
    """The chunk generator of a family (ValueError naming the known ones otherwise)."""
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(
            f"unknown data family {family!r}; known: {', '.join(sorted(FAMILIES))}"
        ) from None


def generate_frame(
    rows: int, seed: int = 0, fraud_ratio: float = datagen.FRAUD_RATIO, family: str = "latent"
) -> pd.DataFrame:
    """All rows as a pandas DataFrame in the Kaggle columns (for notebooks and tests)."""
    import pandas as pd

    parts: list[pd.DataFrame] = []
    for times, v, amount, labels in chunks_for(family)(rows, seed, fraud_ratio, datagen.CHUNK_ROWS):
        block = np.column_stack([times, v, amount])
        frame = pd.DataFrame(block, columns=list(KAGGLE_COLUMNS[:-1]))
        frame["Class"] = labels.astype(np.int64)
        parts.append(frame)
    if not parts:
        return pd.DataFrame(columns=list(KAGGLE_COLUMNS))
    return pd.concat(parts, ignore_index=True)
