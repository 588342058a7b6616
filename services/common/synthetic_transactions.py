"""Synthetic transactions shaped like the Kaggle credit-card data set, made in chunks.

The real data cannot be downloaded here, so tests, benchmarks and demos use rows made from its
published facts (../shared/data/README.md): `Time` over two days with a day/night rhythm,
PCA components V1..V28 with the published variances and heavy tails, log-normal `Amount` with the
published mean and median, and about 0.172 % frauds shifted mostly along V14, V12, V10, V17, V4,
V11 and V3.

The components are uncorrelated, as PCA outputs are, but not independent: in the real set they
are a rotation of features that all depend on a few hidden traits of a purchase (its size, the
kind of merchant, the channel), so normal rows lie close to a low-dimensional curved surface.
Here three latent traits drive fourteen signals (the traits themselves plus eleven piecewise-linear
"hinges" of them), whitened so that they are uncorrelated; each signal is paired with an
independent heavy-tailed one and every pair is rotated by 45 degrees into two components. The
first trait also sets `Amount`. A fraud breaks those dependencies (part of its signals come from
another purchase: it sits off the surface) and is also shifted along the published components by
a random severity, so some frauds sit among normal rows: detection is learnable, not trivial, and
a model that learns the joint structure sees more than one that looks at each component alone.

Rows are made in chunks with numpy, so memory stays flat however many rows are asked for, and a
seed fixes every value. The model lives in the shared layer because both the producer (which
writes it as CSV, `services/producer/datagen.py`) and the trainer (which trains on it directly,
`services/trainer/synthetic.py`) use it, and neither service may import the other.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

SECONDS = 172_792
"""Last `Time` of the real data set: two days of transactions."""
V_VARIANCES = np.array(
    [3.836, 2.727, 2.299, 2.005, 1.905, 1.775, 1.530, 1.426, 1.207, 1.186, 1.042, 0.998, 0.991,
     0.919, 0.838, 0.768, 0.721, 0.703, 0.663, 0.594, 0.540, 0.527, 0.390, 0.367, 0.272, 0.233,
     0.163, 0.109]
)  # fmt: skip
V_STD = np.sqrt(V_VARIANCES)
N_V = len(V_VARIANCES)
FRAUD_RATIO = 0.00172
AMOUNT_MEDIAN, AMOUNT_MEAN, AMOUNT_MAX = 22.00, 88.35, 25_691.16
_AMOUNT_SIGMA = math.sqrt(2.0 * math.log(AMOUNT_MEAN / AMOUNT_MEDIAN))

FRAUD_SHIFT_SD: dict[int, float] = {
    14: -5.5, 12: -5.0, 10: -4.5, 17: -5.0, 4: 3.5, 11: 3.5, 3: -4.0,
    16: -2.5, 7: -2.5, 2: 2.0, 9: -2.0, 18: -1.5, 1: -1.5, 5: -1.0,
}  # fmt: skip
"""Mean shift of a fraud of severity 1, in standard deviations of each component (1-based).
The order follows how strongly the real frauds differ: V14, V12, V10, V17, V4, V11, V3 first."""
_SHIFT = np.zeros(N_V)
for _component, _sd in FRAUD_SHIFT_SD.items():
    _SHIFT[_component - 1] = _sd * V_STD[_component - 1]

TRAITS = 3
"""Latent traits of a purchase; the first one is its (log) size and sets `Amount`."""
SIGNALS = N_V // 2
"""Structured signals: the traits plus SIGNALS - TRAITS hinges of them. Each is paired with one
independent heavy-tailed signal, which makes the N_V components."""
_STRUCTURE_SEED = 20130901
"""Fixes the hinges and the pairing; the same for every `seed`, like the bank's real PCA."""
_REFERENCE_ROWS = 400_000
"""Rows drawn once (fixed seed) to estimate the whitening of the structured signals."""
_EXTRA_NOISE_SHARE = 0.05
"""Share of each component's variance that is independent Student-t noise on top."""
_FRAUD_SWAP = (0.3, 0.9)
"""A fraud takes each structured signal from another purchase with a probability drawn
uniformly within this range: how far it sits off the surface normal rows lie near."""
_FRAUD_NOISE_WIDTH = 1.2
"""A fraud's components vary 1.2x as widely as a normal row's (before its shift)."""
_FRAUD_SEVERITY = (2.0, 0.45)
"""Gamma(shape, scale) severity of a fraud's shift (mean 0.9)."""

_T_DF = 5.0
"""Student-t degrees of freedom of the extra noise: heavy tails with a finite fourth moment."""
_OUTLIER_P, _OUTLIER_LOW, _OUTLIER_HIGH = 1e-4, 5.0, 15.0
"""A few values blown up 5-15x on top: the real set has V5 at -113.7 and V7 at 120.6."""
_OUTLIER_MEAN_SQUARE = (_OUTLIER_HIGH**3 - _OUTLIER_LOW**3) / (3 * (_OUTLIER_HIGH - _OUTLIER_LOW))
_NOISE_SCALE = 1.0 / math.sqrt(
    (_T_DF / (_T_DF - 2.0)) * (1.0 + _OUTLIER_P * (_OUTLIER_MEAN_SQUARE - 1.0))
)
_WIDE_P, _WIDE_SCALE = 0.05, 4.0
"""Independent signals: one value in twenty comes from a four times wider normal law. Its tails
are heavy (excess kurtosis 10.5) with every moment finite, so the sample kurtosis of each
component settles quickly and stays well above that of a normal law."""
_WIDE_NORM = 1.0 / math.sqrt(1.0 - _WIDE_P + _WIDE_P * _WIDE_SCALE**2)

CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class _Structure:
    """The fixed map from latent traits to the N_V components of a normal row."""

    hinge_directions: np.ndarray  # [TRAITS, SIGNALS - TRAITS], unit columns
    hinge_offsets: np.ndarray  # [SIGNALS - TRAITS]
    mean: np.ndarray  # [SIGNALS] of the raw signals
    whitening: np.ndarray  # [SIGNALS, SIGNALS], symmetric (ZCA)
    mixing: np.ndarray  # [2 * SIGNALS, N_V], orthogonal: 45-degree pairs, shuffled

    def signals(self, traits: np.ndarray) -> np.ndarray:
        """Whitened structured signals [n, SIGNALS] of rows with these traits [n, TRAITS]."""
        return (_raw_signals(traits, self.hinge_directions, self.hinge_offsets) - self.mean) @ (
            self.whitening
        )


def _raw_signals(traits: np.ndarray, directions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The traits themselves and hinges max(0, a . traits + c): a piecewise-linear surface."""
    return np.concatenate([traits, np.maximum(traits @ directions + offsets, 0.0)], axis=1)


@functools.cache
def _structure() -> _Structure:
    """Built once per process from a fixed seed, so every seed shares the same surface; the
    whitening is the stored estimate (`synthetic_whitening`), not re-estimated at each start."""
    from services.common.synthetic_whitening import MEAN, WHITENING

    directions, offsets, mixing = _surface()
    return _Structure(directions, offsets, np.array(MEAN), np.array(WHITENING), mixing)


def _surface() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hinge directions, hinge offsets, mixing) drawn from _STRUCTURE_SEED."""
    rng = np.random.default_rng(_STRUCTURE_SEED)
    directions = rng.standard_normal((TRAITS, SIGNALS - TRAITS))
    directions /= np.linalg.norm(directions, axis=0)
    offsets = rng.uniform(-1.0, 1.0, SIGNALS - TRAITS)
    mixing = np.zeros((2 * SIGNALS, N_V))
    half = math.sqrt(0.5)
    for j in range(SIGNALS):
        mixing[j, 2 * j], mixing[j, 2 * j + 1] = half, -half
        mixing[SIGNALS + j, 2 * j], mixing[SIGNALS + j, 2 * j + 1] = half, half
    return directions, offsets, mixing[:, rng.permutation(N_V)]


def reference_whitening() -> tuple[np.ndarray, np.ndarray]:
    """(mean [SIGNALS], ZCA whitening [SIGNALS, SIGNALS]) of the raw structured signals of
    _REFERENCE_ROWS rows: what `synthetic_whitening` stores (about 0.2 s of CPU to compute)."""
    directions, offsets, _ = _surface()
    reference = _raw_signals(
        np.random.default_rng(_STRUCTURE_SEED + 1).standard_normal((_REFERENCE_ROWS, TRAITS)),
        directions,
        offsets,
    )
    values, vectors = np.linalg.eigh(np.cov(reference, rowvar=False))
    return reference.mean(axis=0), vectors @ np.diag(values**-0.5) @ vectors.T


def _day_night_cdf() -> tuple[np.ndarray, np.ndarray]:
    """Cumulative share of transactions over the seconds 0..SECONDS.

    Activity is lowest around 4 a.m. (about a tenth of the evening peak) as in the real set,
    whose `Time` 0 falls at midnight.
    """
    seconds = np.arange(SECONDS + 1, dtype=np.float64)
    hour = (seconds / 3600.0) % 24.0
    intensity = 0.08 + 0.92 * (0.5 - 0.5 * np.cos(2 * np.pi * (hour - 4.0) / 24.0)) ** 1.5
    cdf = np.cumsum(intensity)
    cdf /= cdf[-1]
    return cdf, seconds


def _times(start: int, stop: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """Integer seconds for rows start..stop of `total`: each row its own quantile, so `Time`
    never falls from one chunk to the next and the whole file follows the rhythm."""
    cdf, seconds = _day_night_cdf()
    quantiles = (np.arange(start, stop) + rng.random(stop - start)) / total
    return np.floor(np.interp(quantiles, cdf, seconds))


def _heavy_noise(rng: np.random.Generator, n: int, width: int = N_V) -> np.ndarray:
    """Unit-variance Student-t noise [n, width] with rare blow-ups."""
    noise = rng.standard_t(_T_DF, size=(n, width))
    blown = rng.random((n, width)) < _OUTLIER_P
    if blown.any():
        noise[blown] *= rng.uniform(_OUTLIER_LOW, _OUTLIER_HIGH, size=int(blown.sum()))
    return noise * _NOISE_SCALE


def _wide_noise(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Unit-variance contaminated normal noise [n, width] (see _WIDE_P)."""
    scale = np.where(rng.random((n, width)) < _WIDE_P, _WIDE_SCALE, 1.0)
    return rng.standard_normal((n, width)) * scale * _WIDE_NORM


def _components(rng: np.random.Generator, signals: np.ndarray) -> np.ndarray:
    """V values [n, N_V] from whitened structured signals: pair each with an independent one,
    rotate the pairs, add a little Student-t noise and scale to the published variances."""
    n = len(signals)
    paired = np.concatenate([signals, _wide_noise(rng, n, SIGNALS)], axis=1)
    mixed = paired @ _structure().mixing
    extra = _heavy_noise(rng, n)
    return (
        math.sqrt(1.0 - _EXTRA_NOISE_SHARE) * mixed + math.sqrt(_EXTRA_NOISE_SHARE) * extra
    ) * V_STD


def _normal_rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(V [n, N_V], Amount [n]) of normal purchases: both follow from the same traits."""
    traits = rng.standard_normal((n, TRAITS))
    v = _components(rng, _structure().signals(traits))
    amount = np.exp(math.log(AMOUNT_MEDIAN) + _AMOUNT_SIGMA * traits[:, 0])
    return v, amount


def _fraud_amounts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Frauds: 40 % small probes (under 2.00) and 60 % log-normal, which gives the published
    fraud median 9.25 and mean 122.21; unrelated to the fraud's components."""
    small = rng.random(n) < 0.4
    return np.where(small, rng.uniform(0.0, 2.0, n), rng.lognormal(3.869, 1.70, n))


def _fraud_rows(rng: np.random.Generator, k: int) -> np.ndarray:
    """V values of k frauds: off the surface, wider, and shifted by a random severity.

    Each fraud takes a share (uniform in _FRAUD_SWAP) of its structured signals from another
    purchase's traits, so every component keeps its normal distribution while the combination is
    one no normal purchase makes. Severity ~ Gamma(2, 0.45) (mean 0.9): about one fraud in ten
    has a severity under 0.25, a shift that hides among the normal rows.
    """
    structure = _structure()
    own = structure.signals(rng.standard_normal((k, TRAITS)))
    other = structure.signals(rng.standard_normal((k, TRAITS)))
    share = rng.uniform(*_FRAUD_SWAP, size=(k, 1))
    signals = np.where(rng.random((k, SIGNALS)) < share, other, own)
    severity = rng.gamma(*_FRAUD_SEVERITY, size=(k, 1))
    jitter = 1.0 + 0.25 * rng.standard_normal((k, N_V))
    return _components(rng, signals) * _FRAUD_NOISE_WIDTH + severity * _SHIFT * jitter


def generate_chunks(
    rows: int, seed: int = 0, fraud_ratio: float = FRAUD_RATIO, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (time [n], v [n, 28], amount [n], label int8 [n]) chunk by chunk.

    The number of frauds is exactly round(rows * fraud_ratio); each chunk draws its share from
    a hypergeometric law, so they are spread at random over the file.
    """
    return chunks_from(_normal_rows, _fraud_rows, rows, seed, fraud_ratio, chunk_rows)


RowMaker = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
FraudMaker = Callable[[np.random.Generator, int], np.ndarray]


def chunks_from(
    normal_rows: RowMaker,
    fraud_rows: FraudMaker,
    rows: int,
    seed: int,
    fraud_ratio: float,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The chunk loop every data family shares: times, labels and amounts as here, V values
    (and normal amounts) from the family's row makers."""
    if rows < 0 or not 0.0 <= fraud_ratio <= 1.0:
        raise ValueError("rows must be >= 0 and fraud_ratio within [0, 1]")
    rng = np.random.default_rng(seed)
    frauds_left = round(rows * fraud_ratio)
    for start in range(0, rows, chunk_rows):
        stop = min(rows, start + chunk_rows)
        n = stop - start
        remaining = rows - start
        k = int(rng.hypergeometric(frauds_left, remaining - frauds_left, n)) if frauds_left else 0
        frauds_left -= k
        labels = np.zeros(n, dtype=np.int8)
        fraud_at = rng.choice(n, size=k, replace=False)
        labels[fraud_at] = 1
        times = _times(start, stop, rows, rng)
        v, amount = normal_rows(rng, n)
        if k:
            v[fraud_at] = fraud_rows(rng, k)
            amount[fraud_at] = _fraud_amounts(rng, k)
        amount = np.round(np.clip(amount, 0.0, AMOUNT_MAX), 2)
        yield times, v, amount, labels
