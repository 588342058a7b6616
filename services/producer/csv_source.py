"""Reading transaction CSVs in either layout, block by block, into ready-to-send records.

A block of lines is checked in bulk: comma counts first, then pandas' C parser for the numbers.
Only when that finds something wrong are the lines of the block checked one by one, so every bad
line is reported with its line number and reason while clean files stay on the fast path.

Each good line becomes the DELIMITED value of `creditcardfraud_source`
(`Id,Timestamp,User,Time,V1..V28,Amount,Class`, 34 fields), keyed by `Id`:
- extended layout (`Id,Timestamp,User,...`, the demo's creditcard_extended.csv): the line as is;
- Kaggle layout (`Time,V1..V28,Amount,Class`): `Id` = row number (1 = first data row),
  `Timestamp` = BASE_TIME + `Time` seconds in ISO-8601 UTC, `User` from the user pool.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from services.common.errors import FraudstreamError
from services.common.topics import EXTENDED_COLUMNS, KAGGLE_COLUMNS
from services.producer.layout import USERS, iso_seconds_bytes, user_indices

BLOCK_BYTES = 2 << 20
"""Lines are read and checked about this many bytes at a time."""
TIME_LIMIT = 2**31
"""`Time` is an INT column of the source stream: its magnitude must stay below this."""


class Layout(Enum):
    KAGGLE = "kaggle"
    EXTENDED = "extended"

    @property
    def columns(self) -> tuple[str, ...]:
        return KAGGLE_COLUMNS if self is Layout.KAGGLE else EXTENDED_COLUMNS

    @property
    def fields(self) -> int:
        return len(self.columns)

    @property
    def first_number(self) -> int:
        """Index of `Time`, the first of the 30 numeric columns."""
        return 0 if self is Layout.KAGGLE else 3


@dataclass(frozen=True)
class BadLine:
    """A line that cannot become a record: where it is, what it holds, why it was refused."""

    line: int
    raw: bytes
    reason: str


@dataclass
class Batch:
    """The records of one block, in file order, and the lines refused in it."""

    keys: list[bytes]
    values: list[bytes]
    times: np.ndarray
    """`Time` of every record (float64), for replay at the original pace."""
    bad: list[BadLine] = field(default_factory=list)
    bytes_read: int = 0
    last_line: int = 0
    """File line number of the last line of the block."""

    line_numbers: np.ndarray | None = None
    """File line number of every record; None when the block's lines are all records, which
    then run from `last_line - len + 1` to `last_line`."""

    def __len__(self) -> int:
        return len(self.values)

    def line_of(self, record: int) -> int:
        """File line number of the record at index `record`."""
        if self.line_numbers is not None:
            return int(self.line_numbers[record])
        return self.last_line - len(self.values) + 1 + record


_USER_BYTES = np.asarray([u.encode() for u in USERS], dtype=object)
_EXPECTED_CLASS = ("", "0", "1")


def _unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].strip()
    return text


def check_line(raw: bytes, layout: Layout) -> tuple[str | None, int, float]:
    """The per-line rule: (reason or None, Id, Time). Used where the bulk check found a fault."""
    fields = raw.split(b",")
    if len(fields) != layout.fields:
        return f"expected {layout.fields} fields, found {len(fields)}", 0, 0.0
    row_id = 0
    if layout is Layout.EXTENDED:
        text = _unquote(fields[0])
        try:
            row_id = int(text)
        except ValueError:
            return f"non-numeric Id {text[:40]!r}", 0, 0.0
        if not -(2**63) <= row_id < 2**63:
            return "Id out of range (BIGINT)", 0, 0.0
    start = layout.first_number
    numbers: list[float] = []
    for name, raw_value in zip(layout.columns[start:-1], fields[start:-1], strict=True):
        text = _unquote(raw_value)
        if not text:
            return f"empty {name}", row_id, 0.0
        try:
            number = float(text)
        except ValueError:
            return f"non-numeric {name} {text[:40]!r}", row_id, 0.0
        if not math.isfinite(number):
            return f"non-finite {name} {text!r}", row_id, 0.0
        numbers.append(number)
    if abs(numbers[0]) >= TIME_LIMIT:
        return f"Time out of range (INT) {numbers[0]!r}", row_id, 0.0
    label = _unquote(fields[-1])
    if label not in _EXPECTED_CLASS:
        return f"bad Class {label[:40]!r} (expected 0, 1 or empty)", row_id, 0.0
    return None, row_id, numbers[0]


def _is_header(raw: bytes) -> bool:
    first = _unquote(raw.removeprefix(b"\xef\xbb\xbf").split(b",", 1)[0])
    return first in ("Time", "Id")


def detect_layout(path: Path) -> tuple[Layout, bool]:
    """(layout, has_header) from the header or, without one, the usual field count of the first
    lines; a file whose layout cannot be told is refused with a one-line error."""
    with path.open("rb") as stream:
        head = [line.rstrip(b"\r\n") for line in stream.readlines(256 * 1024)[:200]]
    head = [line for line in head if line.strip()]
    if not head:
        raise FraudstreamError(f"{path} is empty")
    has_header = _is_header(head[0])
    counts = Counter(line.count(b",") + 1 for line in (head[:1] if has_header else head))
    for count, _n in counts.most_common():
        for layout in Layout:
            if count == layout.fields:
                return layout, has_header
    raise FraudstreamError(
        f"{path}: neither the Kaggle layout (31 fields) nor the extended layout (34 fields)"
    )


class CsvSource:
    """A CSV file read block by block; iterate `batches()` for records ready to produce."""

    def __init__(self, path: Path, block_bytes: int = BLOCK_BYTES) -> None:
        if not path.is_file():
            raise FraudstreamError(f"no such file: {path}")
        self.path = path
        self.block_bytes = block_bytes
        try:
            self.layout, self.has_header = detect_layout(path)
            self.size = path.stat().st_size
        except OSError as exc:
            raise FraudstreamError(f"cannot read {path}: {exc.strerror or exc}") from exc
        self._header_line = 0
        """Line number of the header (0 without one): Kaggle `Id` = line number - this."""

    def batches(self) -> Iterator[Batch]:
        with self.path.open("rb") as stream:
            yield from self._read(stream)

    def _read(self, stream: BinaryIO) -> Iterator[Batch]:
        """Blocks of whole lines: one read, one split, no per-line Python work."""
        line_no = 0
        header_size = 0
        if self.has_header:
            while True:
                raw = stream.readline()
                line_no += 1
                header_size += len(raw)
                if not raw or raw.strip():
                    break
        self._header_line = line_no
        while True:
            data = stream.read(self.block_bytes)
            if not data:
                return
            if not data.endswith(b"\n"):
                data += stream.readline()
            size = len(data) + header_size
            header_size = 0
            if b"\r" in data:
                data = data.replace(b"\r\n", b"\n")
            lines = data.split(b"\n")
            if not lines[-1]:
                lines.pop()
            batch = self._batch(lines, line_no + 1, data.count(b","))
            line_no += len(lines)
            batch.bytes_read = size
            yield batch

    def _batch(self, lines: list[bytes], first_line: int, commas_seen: int) -> Batch:
        """Records and refused lines of one block; line i is file line first_line + i."""
        layout = self.layout
        commas = layout.fields - 1
        reasons: dict[int, str] = {}
        blank: set[int] = set()
        if commas_seen == commas * len(lines):
            candidates = list(range(len(lines)))  # a count fault would also fail the parse below
        else:
            candidates = []
            for i, line in enumerate(lines):
                found = line.count(b",")
                if found == commas:
                    candidates.append(i)
                elif not line.strip():
                    blank.add(i)  # blank lines are not records: skipped, not refused
                else:
                    reasons[i] = f"expected {layout.fields} fields, found {found + 1}"
        ids = np.zeros(len(lines), dtype=np.int64)
        times = np.zeros(len(lines), dtype=np.float64)
        for i in self._bulk_check(lines, candidates, ids, times):
            reason, ids[i], times[i] = check_line(lines[i], layout)
            if reason is not None:
                reasons[i] = reason
        if layout is Layout.KAGGLE:
            ids = np.arange(first_line, first_line + len(lines), dtype=np.int64) - self._header_line
        bad = [BadLine(first_line + i, lines[i], reasons[i]) for i in sorted(reasons)]
        if reasons or blank:
            good = [i for i in range(len(lines)) if i not in reasons and i not in blank]
            batch = self._records([lines[i] for i in good], ids[good], times[good], bad)
            batch.line_numbers = np.asarray(good, dtype=np.int64) + first_line
        else:
            batch = self._records(lines, ids, times, bad)
        batch.last_line = first_line + len(lines) - 1
        return batch

    def _bulk_check(
        self, lines: list[bytes], candidates: list[int], ids: np.ndarray, times: np.ndarray
    ) -> list[int]:
        """Parse the candidates with pandas' C parser; fill ids and times; return the lines that
        need the per-line check (all of them if the block did not parse cleanly)."""
        if not candidates:
            return []
        layout = self.layout
        first = layout.first_number
        numeric = list(range(first, first + 30))
        dtypes: dict[int, object] = {i: np.float64 for i in numeric}
        dtypes[layout.fields - 1] = str
        if layout is Layout.EXTENDED:
            dtypes.update({0: np.int64, 1: str, 2: str})
        text = b"\n".join(lines[i] for i in candidates) if len(candidates) < len(lines) else None
        try:
            frame = pd.read_csv(
                io.BytesIO(text if text is not None else b"\n".join(lines)),
                header=None,
                names=list(range(layout.fields)),
                dtype=dtypes,  # type: ignore[arg-type]
                keep_default_na=False,
                na_values=[""],
                skip_blank_lines=False,
                engine="c",
            )
        except (ValueError, pd.errors.ParserError, OverflowError):
            return candidates
        if len(frame) != len(candidates) or frame.shape[1] != layout.fields:
            return candidates
        values = frame[numeric].to_numpy(dtype=np.float64)
        labels = frame[layout.fields - 1]
        labelled_ok = (labels.isna() | labels.isin(["0", "1"])).to_numpy()
        fine = np.isfinite(values).all(axis=1) & labelled_ok & (np.abs(values[:, 0]) < TIME_LIMIT)
        where = np.asarray(candidates, dtype=np.int64)
        times[where] = values[:, 0]
        if layout is Layout.EXTENDED:
            ids[where] = frame[0].to_numpy(dtype=np.int64)
        return [candidates[j] for j in np.flatnonzero(~fine)]

    def _records(
        self, lines: list[bytes], ids: np.ndarray, times: np.ndarray, bad: list[BadLine]
    ) -> Batch:
        """DELIMITED values and keys of the good lines (already in file order)."""
        keys = [b"%d" % i for i in ids.tolist()]
        if self.layout is Layout.EXTENDED:
            return Batch(keys=keys, values=lines, times=times, bad=bad)
        stamps = iso_seconds_bytes(np.floor(times))
        users = _USER_BYTES[user_indices(ids)].tolist()
        values = [
            b'%b,"%bZ","%b",%b' % (key, stamp, user, line)
            for key, stamp, user, line in zip(keys, stamps, users, lines, strict=True)
        ]
        return Batch(keys=keys, values=values, times=times, bad=bad)
