"""Synthetic transactions shaped like the Kaggle credit-card data set, streamed to disk.

The real data cannot be downloaded here, so tests, benchmarks and demos use rows made from its
published facts (../shared/data/README.md): `Time` over two days with a day/night rhythm,
PCA components V1..V28 with the published variances and heavy tails, log-normal `Amount` with the
published mean and median, and about 0.172 % frauds shifted mostly along V14, V12, V10, V17, V4,
V11 and V3. Frauds get a random severity, so some sit among normal rows: detection is learnable,
not trivial.

Rows are made in chunks with numpy and written chunk by chunk, so memory stays flat however many
rows are asked for, and a seed fixes every byte of the output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from services.common.topics import EXTENDED_COLUMNS, KAGGLE_COLUMNS
from services.producer.layout import iso_timestamps, user_for_ids

if TYPE_CHECKING:
    import pandas as pd

SECONDS = 172_792
"""Last `Time` of the real data set: two days of transactions."""
V_VARIANCES = np.array(
    [3.836, 2.727, 2.299, 2.005, 1.905, 1.775, 1.530, 1.426, 1.207, 1.186, 1.042, 0.998, 0.991,
     0.919, 0.838, 0.768, 0.721, 0.703, 0.663, 0.594, 0.540, 0.527, 0.390, 0.367, 0.272, 0.233,
     0.163, 0.109]
)  # fmt: skip
V_STD = np.sqrt(V_VARIANCES)
FRAUD_RATIO = 0.00172
AMOUNT_MEDIAN, AMOUNT_MEAN, AMOUNT_MAX = 22.00, 88.35, 25_691.16

FRAUD_SHIFT_SD: dict[int, float] = {
    14: -5.5, 12: -5.0, 10: -4.5, 17: -5.0, 4: 3.5, 11: 3.5, 3: -4.0,
    16: -2.5, 7: -2.5, 2: 2.0, 9: -2.0, 18: -1.5, 1: -1.5, 5: -1.0,
}  # fmt: skip
"""Mean shift of a fraud of severity 1, in standard deviations of each component (1-based).
The order follows how strongly the real frauds differ: V14, V12, V10, V17, V4, V11, V3 first."""
_SHIFT = np.zeros(28)
for _component, _sd in FRAUD_SHIFT_SD.items():
    _SHIFT[_component - 1] = _sd * V_STD[_component - 1]

_T_DF = 5.0
"""Student-t degrees of freedom of the V noise: heavy tails with a finite fourth moment, so the
sample variances settle close to the published ones."""
_OUTLIER_P, _OUTLIER_LOW, _OUTLIER_HIGH = 1e-4, 5.0, 15.0
"""A few values blown up 5-15x on top: the real set has V5 at -113.7 and V7 at 120.6."""
_OUTLIER_MEAN_SQUARE = (_OUTLIER_HIGH**3 - _OUTLIER_LOW**3) / (3 * (_OUTLIER_HIGH - _OUTLIER_LOW))
_NOISE_SCALE = 1.0 / math.sqrt(
    (_T_DF / (_T_DF - 2.0)) * (1.0 + _OUTLIER_P * (_OUTLIER_MEAN_SQUARE - 1.0))
)

CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class GenResult:
    rows: int
    frauds: int
    path: Path


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


def _heavy_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance heavy-tailed noise [n, 28]."""
    noise = rng.standard_t(_T_DF, size=(n, 28))
    blown = rng.random((n, 28)) < _OUTLIER_P
    if blown.any():
        noise[blown] *= rng.uniform(_OUTLIER_LOW, _OUTLIER_HIGH, size=int(blown.sum()))
    return noise * _NOISE_SCALE


def _normal_amounts(rng: np.random.Generator, n: int) -> np.ndarray:
    sigma = math.sqrt(2.0 * math.log(AMOUNT_MEAN / AMOUNT_MEDIAN))
    return rng.lognormal(math.log(AMOUNT_MEDIAN), sigma, n)


def _fraud_amounts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Frauds: 40 % small probes (under 2.00) and 60 % log-normal, which gives the published
    fraud median 9.25 and mean 122.21."""
    small = rng.random(n) < 0.4
    return np.where(small, rng.uniform(0.0, 2.0, n), rng.lognormal(3.869, 1.70, n))


def _fraud_rows(rng: np.random.Generator, k: int) -> np.ndarray:
    """V values of k frauds: wider noise plus the fraud direction times a random severity.

    Severity ~ Gamma(2, 0.35) (mean 0.7): about one fraud in five has a severity under 0.3 and
    hides among the normal rows.
    """
    severity = rng.gamma(2.0, 0.35, size=(k, 1))
    jitter = 1.0 + 0.25 * rng.standard_normal((k, 28))
    return _heavy_noise(rng, k) * V_STD * 1.3 + severity * _SHIFT * jitter


def generate_chunks(
    rows: int, seed: int = 0, fraud_ratio: float = FRAUD_RATIO, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (time [n], v [n, 28], amount [n], label int8 [n]) chunk by chunk.

    The number of frauds is exactly round(rows * fraud_ratio); each chunk draws its share from
    a hypergeometric law, so they are spread at random over the file.
    """
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
        v = _heavy_noise(rng, n) * V_STD
        amount = _normal_amounts(rng, n)
        if k:
            v[fraud_at] = _fraud_rows(rng, k)
            amount[fraud_at] = _fraud_amounts(rng, k)
        amount = np.round(np.clip(amount, 0.0, AMOUNT_MAX), 2)
        yield times, v, amount, labels


def generate_frame(rows: int, seed: int = 0, fraud_ratio: float = FRAUD_RATIO) -> pd.DataFrame:
    """All rows as a pandas DataFrame in the Kaggle columns (for notebooks and tests)."""
    import pandas as pd

    parts: list[pd.DataFrame] = []
    for times, v, amount, labels in generate_chunks(rows, seed, fraud_ratio):
        block = np.column_stack([times, v, amount])
        frame = pd.DataFrame(block, columns=list(KAGGLE_COLUMNS[:-1]))
        frame["Class"] = labels.astype(np.int64)
        parts.append(frame)
    if not parts:
        return pd.DataFrame(columns=list(KAGGLE_COLUMNS))
    return pd.concat(parts, ignore_index=True)


_NUMBERS_FMT = "%d," + "%.6f," * 28 + "%.2f"


def _format_chunk(
    first_id: int,
    times: np.ndarray,
    v: np.ndarray,
    amount: np.ndarray,
    labels: np.ndarray,
    extended: bool,
) -> str:
    """CSV text of one chunk; `Class` quoted, as in the Kaggle file and the demo's."""
    numbers = np.column_stack([times, v, amount]).tolist()
    tails = ('"0"', '"1"')
    lines = [
        f"{_NUMBERS_FMT % tuple(row)},{tails[label]}"
        for row, label in zip(numbers, labels.tolist(), strict=True)
    ]
    if extended:
        ids = np.arange(first_id, first_id + len(lines), dtype=np.int64)
        stamps = iso_timestamps(times).tolist()
        users = user_for_ids(ids).tolist()
        lines = [
            f'{i},"{ts}","{user}",{line}'
            for i, ts, user, line in zip(ids.tolist(), stamps, users, lines, strict=True)
        ]
    return "\n".join(lines) + "\n" if lines else ""


def header(extended: bool) -> str:
    """The quoted Kaggle header; the extended layout has none, like creditcard_extended.csv."""
    return "" if extended else ",".join(f'"{c}"' for c in KAGGLE_COLUMNS) + "\n"


def write_csv(
    path: Path,
    rows: int,
    seed: int = 0,
    fraud_ratio: float = FRAUD_RATIO,
    extended: bool = False,
    progress: Callable[[int], None] | None = None,
) -> GenResult:
    """Write `rows` transactions to `path` chunk by chunk; `progress(n)` after each chunk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frauds = 0
    written = 0
    with path.open("w", encoding="ascii", newline="") as out:
        out.write(header(extended))
        for times, v, amount, labels in generate_chunks(rows, seed, fraud_ratio):
            _write(out, _format_chunk(written + 1, times, v, amount, labels, extended))
            frauds += int(labels.sum())
            written += len(labels)
            if progress is not None:
                progress(len(labels))
    return GenResult(rows=written, frauds=frauds, path=path)


def _write(out: TextIO, text: str) -> None:
    out.write(text)


COLUMNS = {False: KAGGLE_COLUMNS, True: EXTENDED_COLUMNS}
