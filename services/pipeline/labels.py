"""Counting labels in a transactions CSV (either layout): `Class` is the last field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class LabelCounts:
    rows: int = 0
    labelled: int = 0
    frauds: int = 0


def count_labels(path: Path, first_rows: int | None = None) -> LabelCounts:
    """Rows, labelled rows and frauds among the first `first_rows` data rows (header skipped)."""
    counts = LabelCounts()
    with path.open("rb") as lines:
        for line in lines:
            if counts.rows == 0 and line[:1] == b'"' and b"Time" in line[:20]:
                continue  # the Kaggle header
            label = line.rstrip(b"\r\n").rsplit(b",", 1)[-1].strip(b'"')
            counts.rows += 1
            if label:
                counts.labelled += 1
                counts.frauds += label == b"1"
            if first_rows is not None and counts.rows >= first_rows:
                break
    return counts
