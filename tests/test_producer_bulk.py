"""The producer's bulk check against its per-line rule: on clean and on mangled blocks, a line
becomes a record exactly when `check_line` accepts it, with the same Id and Time (the bulk
check may only hand lines on, never accept one the rule refuses)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from services.producer.csv_source import CsvSource, Layout, _plain_rows, check_line
from services.producer.datagen import write_csv

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
MANGLES = [
    b"e", b"E5", b"+", b"-", b"--", b".", b"..", b" ", b'"', b"x", b"", b",", b"inf", b"nan",
    b"1" * 400, b"\xff", b"1_0", b"0x1", b"9" * 12, b"-.5", b"5.", b"\xc3\xa9",
]  # fmt: skip


def _mangle(line: bytes, rng: random.Random) -> bytes:
    fields = line.split(b",")
    i = rng.randrange(len(fields))
    how = rng.randrange(3)
    piece = rng.choice(MANGLES)
    if how == 0:
        fields[i] = piece
    elif how == 1:
        at = rng.randrange(len(fields[i]) + 1)
        fields[i] = fields[i][:at] + piece + fields[i][at:]
    else:
        fields[i] = b'"' + fields[i] + b'"'
    return b",".join(fields)


def _reference(lines: list[bytes], layout: Layout) -> list[tuple[int, float] | None]:
    out: list[tuple[int, float] | None] = []
    for line in lines:
        refusal, row_id, time = check_line(line, layout)
        out.append(None if refusal is not None else (row_id, time))
    return out


@pytest.mark.parametrize("extended", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bulk_check_agrees_with_the_line_rule(tmp_path: Path, extended: bool, seed: int) -> None:
    clean = tmp_path / "clean.csv"
    write_csv(clean, 3000, seed=seed, extended=extended)
    rng = random.Random(seed)
    raw = clean.read_bytes().split(b"\n")
    header = [] if extended else raw[:1]
    body = [line for line in (raw if extended else raw[1:]) if line]
    body = [_mangle(line, rng) if rng.random() < 0.2 else line for line in body]
    path = tmp_path / "mangled.csv"
    path.write_bytes(b"\n".join(header + body) + b"\n")
    source = CsvSource(path, block_bytes=64 * 1024)
    layout = source.layout
    expected = _reference(body, layout)
    got: list[tuple[int, float] | None] = [None] * len(body)
    first = 2 if header else 1
    for batch in source.batches():
        for k in range(len(batch)):
            line = batch.line_of(k) - first
            row_id = int(batch.keys[k]) if layout is Layout.EXTENDED else 0
            got[line] = (row_id, float(batch.times[k]))
    # blank lines (a mangle to ",,…" is not blank) and the header are not records
    if layout is Layout.KAGGLE:
        expected = [None if e is None else (0, e[1]) for e in expected]
    assert got == expected
    assert 0 < sum(e is None for e in expected) < len(body)


def test_shared_samples_take_the_fast_path() -> None:
    """The real data set's rows are nearly all plain numbers: at most 1 % of the shared samples'
    lines need the per-line rule (the Kaggle file writes a few tiny values with an exponent),
    which is what keeps `produce` near the bare loop."""
    for name in ("creditcard_small.csv", "creditcard_extended.csv"):
        path = SHARED_DATA / name
        if not path.exists():
            pytest.skip(f"{path} not present")
        source = CsvSource(path)
        lines = path.read_bytes().splitlines()[1 if source.has_header else 0 :]
        text = b"\n".join(line for line in lines if line.strip())
        checked = _plain_rows(text, source.layout)
        assert checked is not None, name
        assert (~checked[0]).sum() <= 0.01 * len(checked[0]), name
