"""Synthetic transactions written as a CSV file, in the Kaggle or the extended layout.

The rows come from the transaction model in `services.common.synthetic_transactions` (how they
are shaped and why); this module only formats them, chunk by chunk, so memory stays flat however
many rows are asked for, and a seed fixes every byte of the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from services.common.synthetic_transactions import CHUNK_ROWS, FRAUD_RATIO
from services.common.topics import EXTENDED_COLUMNS, KAGGLE_COLUMNS
from services.producer.layout import iso_timestamps, user_for_ids, user_indices


@dataclass(frozen=True)
class GenResult:
    rows: int
    frauds: int
    path: Path
    user_indices: frozenset[int] = frozenset()
    """The pool indices (`layout.USERS`) of the users the rows name."""


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
    family: str = "latent",
) -> GenResult:
    """Write `rows` transactions of a data family (services/common/synthetic_families.py) to `path`
    chunk by chunk; `progress(n)` after each chunk."""
    from services.common.synthetic_families import chunks_for

    generate = chunks_for(family)
    path.parent.mkdir(parents=True, exist_ok=True)
    frauds = 0
    written = 0
    users: set[int] = set()
    with path.open("w", encoding="ascii", newline="") as out:
        out.write(header(extended))
        for times, v, amount, labels in generate(rows, seed, fraud_ratio, CHUNK_ROWS):
            _write(out, _format_chunk(written + 1, times, v, amount, labels, extended))
            ids = np.arange(written + 1, written + 1 + len(labels), dtype=np.int64)
            users.update(np.unique(user_indices(ids)).tolist())
            frauds += int(labels.sum())
            written += len(labels)
            if progress is not None:
                progress(len(labels))
    return GenResult(rows=written, frauds=frauds, path=path, user_indices=frozenset(users))


def _write(out: TextIO, text: str) -> None:
    out.write(text)


COLUMNS = {False: KAGGLE_COLUMNS, True: EXTENDED_COLUMNS}
