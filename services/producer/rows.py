"""What a transactions CSV's lines become: the two layouts, the per-line rule, records, refusals.

`check_line` is the authority on a line: the faster checks (`services/producer/_kaggle_records.c`
and the numpy passes in `numpy_rows.py`) pass only lines it accepts, with the same `Time`, and
hand everything else to it, so every refused line is named with its line number and reason.
Kept apart from the reading (`csv_source.py`) and from numpy, which `produce` of a plain
Kaggle file then never loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from services.common.topics import EXTENDED_COLUMNS, KAGGLE_COLUMNS
from services.producer.errors import CSV_COLUMNS, CSV_ENCODING, CSV_VALUE, Refusal
from services.producer.limits import LONG_LINE_KEEP_BYTES

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
    """The line as it was in the file, or only its first bytes when it was too long to keep."""
    reason: str
    length: int = -1
    """Length of the whole line in bytes (line end excluded); -1 = len(raw)."""
    code: str = CSV_VALUE
    """The refusal's stable code (`services.producer.errors.LINE_CODES`): the DLQ header."""

    @property
    def size(self) -> int:
        return len(self.raw) if self.length < 0 else self.length

    @property
    def truncated(self) -> bool:
        return self.size > len(self.raw)

    def trimmed(self, keep: int = LONG_LINE_KEEP_BYTES) -> BadLine:
        """The same bad line holding at most `keep` bytes (for lists kept in memory)."""
        if len(self.raw) <= keep:
            return self
        return BadLine(self.line, self.raw[:keep], self.reason, self.size, self.code)


@dataclass
class Batch:
    """The records of one block, in file order, and the lines refused in it."""

    keys: list[bytes]
    values: list[bytes]
    times: memoryview[float]
    """`Time` of every record (float64, format "d"), for replay at the original pace: a view,
    so the compiled path hands its buffer over without numpy (`numpy.asarray` reads it as is)."""
    bad: list[BadLine] = field(default_factory=list)
    bytes_read: int = 0
    last_line: int = 0
    """File line number of the last line of the block."""

    line_numbers: list[int] | None = None
    """File line number of every record; None when the block's lines are all records, which
    then run from `last_line - len + 1` to `last_line`."""

    def __len__(self) -> int:
        return len(self.values)

    def line_of(self, record: int) -> int:
        """File line number of the record at index `record`."""
        if self.line_numbers is not None:
            return self.line_numbers[record]
        return self.last_line - len(self.values) + 1 + record


_EXPECTED_CLASS = ("", "0", "1")


def unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].strip()
    return text


def encoding_fault(raw: bytes) -> Refusal | None:
    """A NUL byte or invalid UTF-8: the DELIMITED value must be text KSQL can decode."""
    nul = raw.find(b"\0")
    if nul >= 0:
        return Refusal(CSV_ENCODING, f"NUL byte at byte {nul + 1}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Refusal(CSV_ENCODING, f"invalid UTF-8 at byte {exc.start + 1}")
    return None


def columns_fault(layout: Layout, found: int) -> Refusal:
    return Refusal(CSV_COLUMNS, f"expected {layout.fields} fields, found {found}")


def check_line(raw: bytes, layout: Layout) -> tuple[Refusal | None, int, float]:
    """The per-line rule: (refusal or None, Id, Time). Used where the bulk check found a fault."""
    fault = encoding_fault(raw)
    if fault is not None:
        return fault, 0, 0.0
    fields = raw.split(b",")
    if len(fields) != layout.fields:
        return columns_fault(layout, len(fields)), 0, 0.0
    row_id = 0
    if layout is Layout.EXTENDED:
        text = unquote(fields[0])
        try:
            row_id = int(text)
        except ValueError:
            return Refusal(CSV_VALUE, f"non-numeric Id {text[:40]!r}"), 0, 0.0
        if not -(2**63) <= row_id < 2**63:
            return Refusal(CSV_VALUE, "Id out of range (BIGINT)"), 0, 0.0
    start = layout.first_number
    numbers: list[float] = []
    for name, raw_value in zip(layout.columns[start:-1], fields[start:-1], strict=True):
        text = unquote(raw_value)
        if not text:
            return Refusal(CSV_VALUE, f"empty {name}"), row_id, 0.0
        try:
            number = float(text)
        except ValueError:
            return Refusal(CSV_VALUE, f"non-numeric {name} {text[:40]!r}"), row_id, 0.0
        if not math.isfinite(number):
            return Refusal(CSV_VALUE, f"non-finite {name} {text!r}"), row_id, 0.0
        numbers.append(number)
    if abs(numbers[0]) >= TIME_LIMIT:
        return Refusal(CSV_VALUE, f"Time out of range (INT) {numbers[0]!r}"), row_id, 0.0
    label = unquote(fields[-1])
    if label not in _EXPECTED_CLASS:
        return Refusal(CSV_VALUE, f"bad Class {label[:40]!r} (expected 0, 1 or empty)"), row_id, 0.0
    return None, row_id, numbers[0]


def times_view(raw: bytes) -> memoryview[float]:
    """`Batch.times` from the records' Times as float64 bytes (both paths make it this way)."""
    return memoryview(raw).cast("d")
