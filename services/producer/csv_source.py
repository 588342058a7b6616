"""Reading transaction CSVs in either layout, block by block, into ready-to-send records.

A Kaggle-layout block is first asked one question as a whole (`block_check`: is every row
plain?), which clean files answer "yes" at a fraction of the per-row checks' cost. Otherwise
the block is checked in bulk: comma counts first, then whole-array numpy passes over the
block's bytes that accept only plainly written numbers (`-?digits[.digits]`, as data sets and
`datagen` write them). Only the lines that finds anything else in (an exponent, quotes, spaces, a
bad value) are checked one by one by `check_line`, the authority, so every bad line is reported
with its line number and reason while clean files stay on the fast path. No pandas: it took
most of the replay's CPU and half a second of every `produce`'s start-up.

No line is ever held whole beyond `max_line_bytes`: a longer one (a corrupt file, a file without
newlines) is read past in bounded chunks and refused with its first `LONG_LINE_KEEP_BYTES` bytes
and its length, so one such line costs the replay one dead letter, not its memory or its run.

Each good line becomes the DELIMITED value of `creditcardfraud_source`
(`Id,Timestamp,User,Time,V1..V28,Amount,Class`, 34 fields), keyed by `Id`:
- extended layout (`Id,Timestamp,User,...`, the demo's creditcard_extended.csv): the line as is;
- Kaggle layout (`Time,V1..V28,Amount,Class`): `Id` = row number (1 = first data row),
  `Timestamp` = BASE_TIME + `Time` seconds in ISO-8601 UTC, `User` from the user pool.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import BinaryIO

import numpy as np

from services.common.topics import EXTENDED_COLUMNS, KAGGLE_COLUMNS
from services.producer.block_check import Workspace, plain_block_times
from services.producer.errors import (
    CSV_COLUMNS,
    CSV_ENCODING,
    CSV_VALUE,
    LINE_TOO_LONG,
    CsvFileError,
    ProducerError,
    Refusal,
)
from services.producer.layout import BASE_SECONDS, USERS, iso_seconds_bytes, user_indices
from services.producer.limits import DEFAULT_MAX_LINE_BYTES, LONG_LINE_KEEP_BYTES

try:
    from services.producer import _kaggle_records
except ImportError:  # built without a C compiler: the numpy path below gives the same records
    _kaggle_records = None  # type: ignore[assignment]

BLOCK_BYTES = 512 << 10
"""Lines are read and checked about this many bytes at a time (smaller than the 2 MiB it was:
the check's numpy temporaries then stay in the cache and the allocator's heap, 10-20 % less
CPU a record)."""
SKIP_CHUNK_BYTES = 1 << 20
"""The rest of a long line is read past this many bytes at a time."""
HEAD_LINES = 200
"""Layout detection looks at up to this many lines (each read with a bounded readline)."""
HEAD_LINE_BYTES = 64 * 1024
"""Lines longer than this are skipped by layout detection (no real header or row is)."""
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


_USER_NAMES = tuple(u.encode() for u in USERS)
_USER_BYTES = np.asarray(_USER_NAMES, dtype=object)
_EXPECTED_CLASS = ("", "0", "1")
_KAGGLE_VALUE = b'%b,"%bZ","%b",%b'
"""The source value of a Kaggle row: Id, "Timestamp", "User", then the line as it is."""


def _unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].strip()
    return text


def _encoding_fault(raw: bytes) -> Refusal | None:
    """A NUL byte or invalid UTF-8: the DELIMITED value must be text KSQL can decode."""
    nul = raw.find(b"\0")
    if nul >= 0:
        return Refusal(CSV_ENCODING, f"NUL byte at byte {nul + 1}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Refusal(CSV_ENCODING, f"invalid UTF-8 at byte {exc.start + 1}")
    return None


def _columns_fault(layout: Layout, found: int) -> Refusal:
    return Refusal(CSV_COLUMNS, f"expected {layout.fields} fields, found {found}")


def check_line(raw: bytes, layout: Layout) -> tuple[Refusal | None, int, float]:
    """The per-line rule: (refusal or None, Id, Time). Used where the bulk check found a fault."""
    fault = _encoding_fault(raw)
    if fault is not None:
        return fault, 0, 0.0
    fields = raw.split(b",")
    if len(fields) != layout.fields:
        return _columns_fault(layout, len(fields)), 0, 0.0
    row_id = 0
    if layout is Layout.EXTENDED:
        text = _unquote(fields[0])
        try:
            row_id = int(text)
        except ValueError:
            return Refusal(CSV_VALUE, f"non-numeric Id {text[:40]!r}"), 0, 0.0
        if not -(2**63) <= row_id < 2**63:
            return Refusal(CSV_VALUE, "Id out of range (BIGINT)"), 0, 0.0
    start = layout.first_number
    numbers: list[float] = []
    for name, raw_value in zip(layout.columns[start:-1], fields[start:-1], strict=True):
        text = _unquote(raw_value)
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
    label = _unquote(fields[-1])
    if label not in _EXPECTED_CLASS:
        return Refusal(CSV_VALUE, f"bad Class {label[:40]!r} (expected 0, 1 or empty)"), row_id, 0.0
    return None, row_id, numbers[0]


def _is_header(raw: bytes) -> bool:
    first = _unquote(raw.removeprefix(b"\xef\xbb\xbf").split(b",", 1)[0])
    return first in ("Time", "Id")


def detect_layout(path: Path) -> tuple[Layout, bool]:
    """(layout, has_header) from the header or, without one, the usual field count of the first
    lines; a file whose layout cannot be told is refused with a one-line error."""
    with path.open("rb") as stream:
        head, skipped = _head_lines(stream)
    if head and head[0].startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CsvFileError(f"{path} is UTF-16 text: convert it to UTF-8 first")
    if not head:
        if skipped:
            raise CsvFileError(
                f"{path} is not a transactions CSV: no line among its first {HEAD_LINES} is "
                f"shorter than {HEAD_LINE_BYTES} bytes"
            )
        raise CsvFileError(f"{path} is empty")
    has_header = _is_header(head[0]) and not skipped
    counts = Counter(line.count(b",") + 1 for line in (head[:1] if has_header else head))
    for count, _n in counts.most_common():
        for layout in Layout:
            if count == layout.fields:
                return layout, has_header
    raise CsvFileError(
        f"{path}: neither the Kaggle layout (31 fields) nor the extended layout (34 fields)"
    )


def _head_lines(stream: BinaryIO) -> tuple[list[bytes], int]:
    """(the non-blank lines among the first HEAD_LINES, how many were too long to look at)
    before the first short line, all read with bounded memory."""
    head: list[bytes] = []
    skipped = 0
    for _ in range(HEAD_LINES):
        raw = stream.readline(HEAD_LINE_BYTES)
        if not raw:
            break
        if not raw.endswith(b"\n") and len(raw) == HEAD_LINE_BYTES:
            _skip_rest_of_line(stream)  # a line this long is no header and no row
            skipped += 0 if head else 1
            continue
        line = raw.rstrip(b"\r\n")
        if line.strip():
            head.append(line)
    return head, skipped


def _skip_rest_of_line(stream: BinaryIO) -> tuple[int, bytes]:
    """Read past the rest of the current line in bounded chunks: (bytes read, the last two)."""
    skipped = 0
    last_two = b""
    while True:
        chunk = stream.readline(SKIP_CHUNK_BYTES)
        skipped += len(chunk)
        last_two = (last_two + chunk[-2:])[-2:]
        if not chunk or chunk.endswith(b"\n"):
            return skipped, last_two


def _line_end_size(line_end: bytes) -> int:
    """Bytes of the line end (\\r\\n, \\n or none) that `line_end` finishes with."""
    if line_end.endswith(b"\r\n"):
        return 2
    return 1 if line_end.endswith(b"\n") else 0


@dataclass
class _Block:
    """Whole lines read at once, and the lines among them cut short for being too long."""

    data: bytes
    size: int
    """Bytes of the file this block covers (the long lines' skipped parts included)."""
    long_tail: tuple[bytes, int] | None = None
    """(first bytes, length) of an over-long line that ends the block, not part of `data`."""


class CsvSource:
    """A CSV file read block by block; iterate `batches()` for records ready to produce."""

    def __init__(
        self,
        path: Path,
        block_bytes: int = BLOCK_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        if not path.is_file():
            raise CsvFileError(f"no such file: {path}")
        if max_line_bytes < 1:
            raise ProducerError("--max-line-bytes must be at least 1", code="bad_option")
        self.path = path
        self.block_bytes = block_bytes
        self.max_line_bytes = max_line_bytes
        try:
            self.layout, self.has_header = detect_layout(path)
            self.size = path.stat().st_size
        except OSError as exc:
            raise CsvFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
        self._workspace = Workspace()
        self._header_line = 0
        """Line number of the header (0 without one): Kaggle `Id` = line number - this."""

    def batches(self) -> Iterator[Batch]:
        try:
            with self.path.open("rb") as stream:
                yield from self._read(stream)
        except OSError as exc:
            raise CsvFileError(f"cannot read {self.path}: {exc.strerror or exc}") from exc

    def _read(self, stream: BinaryIO) -> Iterator[Batch]:
        """Blocks of whole lines: one read, one split, no per-line Python work."""
        line_no = 0
        header_size = 0
        if self.has_header:
            while True:
                raw = stream.readline(HEAD_LINE_BYTES)
                line_no += 1
                header_size += len(raw)
                if not raw or raw.strip():
                    break
        self._header_line = line_no
        while True:
            block = self._next_block(stream)
            if block is None:
                return
            data = block.data
            if b"\r" in data:
                data = data.replace(b"\r\n", b"\n")
            batch = None if block.long_tail else self._compiled_batch(data, line_no + 1)
            if batch is None:
                batch = self._split_batch(data, block.long_tail, line_no + 1)
            line_no = batch.last_line
            batch.bytes_read = block.size + header_size
            header_size = 0
            yield batch

    def _compiled_batch(self, data: bytes, first_line: int) -> Batch | None:
        """The block's records from the compiled fast path (`_kaggle_records.c`): a Kaggle-layout
        block of whole lines, every one plain; None for any other block, or when the path was not
        built. It does in two passes what `_split_batch` does in a dozen numpy passes and a few
        Python objects a row, and checks the rows without holding the GIL."""
        if _kaggle_records is None or self.layout is not Layout.KAGGLE:
            return None
        if not data.endswith(b"\n"):
            return None  # the file's last line, without its newline
        rows = _kaggle_records.count_rows(data)
        ids = self._kaggle_ids(first_line, rows)
        times = np.empty(rows, dtype=np.float64)
        user_of_row = user_indices(ids).astype(np.uint8)
        records = _kaggle_records.records(
            data, rows, _USER_NAMES, user_of_row, int(ids[0]), BASE_SECONDS, self.max_line_bytes,
            times,
        )  # fmt: skip
        if records is None:
            return None
        keys, values = records
        return Batch(keys=keys, values=values, times=times, last_line=first_line + rows - 1)

    def _split_batch(
        self, data: bytes, long_tail: tuple[bytes, int] | None, first_line: int
    ) -> Batch:
        """The block's records and refused lines, line by line where needed (`_batch`)."""
        lines = data.split(b"\n")
        if not lines[-1]:
            lines.pop()
        long_lines = self._cut_long_lines(lines)
        if long_tail is not None:
            long_lines[len(lines)] = long_tail[1]
            lines.append(long_tail[0])
        has_nul = b"\0" in data
        whole = data if not long_lines and long_tail is None else None
        return self._batch(lines, first_line, whole, long_lines, has_nul)

    def _next_block(self, stream: BinaryIO) -> _Block | None:
        """About `block_bytes` of whole lines; a last line longer than `max_line_bytes` is not
        kept whole but read past, its first bytes and length returned beside the block."""
        data = stream.read(self.block_bytes)
        if not data:
            return None
        if data.endswith(b"\n"):
            return _Block(data, len(data))
        start = data.rfind(b"\n") + 1
        # room for the longest allowed line, its \r\n, and one byte more to see it is longer
        rest = stream.readline(max(self.max_line_bytes + 3 - (len(data) - start), 1))
        line = data[start:] + rest
        complete = not rest or rest.endswith(b"\n")
        if complete and len(line) - _line_end_size(line) <= self.max_line_bytes:
            return _Block(data + rest, len(data) + len(rest))
        read, last_two = len(line), line[-2:]
        if not complete:
            skipped, skipped_end = _skip_rest_of_line(stream)
            read, last_two = read + skipped, (last_two + skipped_end)[-2:]
        length = read - _line_end_size(last_two)
        return _Block(data[:start], start + read, (line[:LONG_LINE_KEEP_BYTES], length))

    def _cut_long_lines(self, lines: list[bytes]) -> dict[int, int]:
        """Lines of a block that are over the limit, cut to their first bytes in place;
        returns their original lengths by index (usually none: one C-speed pass finds that)."""
        if max(map(len, lines), default=0) <= self.max_line_bytes:
            return {}
        long_lines: dict[int, int] = {}
        for i, line in enumerate(lines):
            if len(line) > self.max_line_bytes:
                long_lines[i] = len(line)
                lines[i] = line[:LONG_LINE_KEEP_BYTES]
        return long_lines

    def _batch(
        self,
        lines: list[bytes],
        first_line: int,
        data: bytes | None,
        long_lines: dict[int, int],
        has_nul: bool = False,
    ) -> Batch:
        """Records and refused lines of one block; line i is file line first_line + i.
        `data` is the block's text (the lines, each ended by a newline) when it is at hand;
        `long_lines` (index: length) are already cut short and refused for their length;
        `has_nul` says the block holds a NUL byte somewhere."""
        layout = self.layout
        if data is not None and not long_lines and not has_nul and layout is Layout.KAGGLE:
            lengths = np.fromiter(map(len, lines), np.int64, len(lines))
            times = plain_block_times(data, lengths, self._workspace)
            if times is not None:  # every line plain: no per-line work at all
                batch = self._records(lines, self._kaggle_ids(first_line, len(lines)), times, [])
                batch.last_line = first_line + len(lines) - 1
                return batch
        commas = layout.fields - 1
        reasons = self._refused_unparsed(lines, long_lines, has_nul)
        blank: set[int] = set()
        block = None
        if data is not None and not reasons and layout is Layout.KAGGLE:
            block = _plain_block(data, len(lines))  # None unless every line has its fields
        if block is not None or (
            data is not None and not reasons and data.count(b",") == commas * len(lines)
        ):
            candidates = list(range(len(lines)))  # a count fault would also fail the parse below
        else:
            candidates = []
            for i, line in enumerate(lines):
                found = line.count(b",")
                if i in reasons:
                    continue
                if found == commas:
                    candidates.append(i)
                elif not line.strip():
                    blank.add(i)  # blank lines are not records: skipped, not refused
                else:
                    reasons[i] = _columns_fault(layout, found + 1)
        ids = np.zeros(len(lines), dtype=np.int64)
        times = np.zeros(len(lines), dtype=np.float64)
        for i in self._bulk_check(lines, candidates, ids, times, block):
            reason, ids[i], times[i] = check_line(lines[i], layout)
            if reason is not None:
                reasons[i] = reason
        if layout is Layout.KAGGLE:
            ids = self._kaggle_ids(first_line, len(lines))
        bad = [
            BadLine(
                first_line + i, lines[i], reasons[i].text, long_lines.get(i, -1), reasons[i].code
            )
            for i in sorted(reasons)
        ]
        if reasons or blank:
            good = [i for i in range(len(lines)) if i not in reasons and i not in blank]
            batch = self._records([lines[i] for i in good], ids[good], times[good], bad)
            batch.line_numbers = np.asarray(good, dtype=np.int64) + first_line
        else:
            batch = self._records(lines, ids, times, bad)
        batch.last_line = first_line + len(lines) - 1
        return batch

    def _kaggle_ids(self, first_line: int, count: int) -> np.ndarray:
        """Kaggle `Id`s of `count` lines from file line `first_line`: the data row number."""
        return np.arange(first_line, first_line + count, dtype=np.int64) - self._header_line

    def _refused_unparsed(
        self, lines: list[bytes], long_lines: dict[int, int], has_nul: bool
    ) -> dict[int, Refusal]:
        """Refusals of the lines refused before any parsing: too long, or holding NUL bytes
        (which pandas' parser would not reliably report)."""
        reasons = {
            i: Refusal(
                LINE_TOO_LONG,
                f"line of {length} bytes is over the limit of {self.max_line_bytes} bytes",
            )
            for i, length in long_lines.items()
        }
        if has_nul:
            for i, line in enumerate(lines):
                if i not in reasons and b"\0" in line:
                    reasons[i] = _encoding_fault(line) or Refusal(CSV_ENCODING, "NUL byte")
        return reasons

    def _bulk_check(
        self,
        lines: list[bytes],
        candidates: list[int],
        ids: np.ndarray,
        times: np.ndarray,
        block: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[int]:
        """Check the candidates in bulk (`_plain_rows`); fill ids and times; return the lines
        that need the per-line check (all of them if the block's fields do not line up).
        `block` is `_plain_block`'s answer for the whole block, when it has one."""
        if block is not None:
            fine, times[:] = block
            return np.flatnonzero(~fine).tolist()  # type: ignore[no-any-return]
        if not candidates:
            return []
        text = b"\n".join(lines[i] for i in candidates) if len(candidates) < len(lines) else None
        checked = _plain_rows(text if text is not None else b"\n".join(lines), self.layout)
        if checked is None:
            return candidates
        fine, row_ids, row_times = checked
        where = np.asarray(candidates, dtype=np.int64)
        times[where] = row_times
        if row_ids is not None:
            ids[where] = row_ids
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
        # one C-level map of the format over the rows: half the time of a comprehension
        values = list(map(_KAGGLE_VALUE.__mod__, zip(keys, stamps, users, lines, strict=True)))
        return Batch(keys=keys, values=values, times=times, bad=bad)


MAX_PLAIN_NUMBER = 40
"""Longest number the bulk check accepts (40 digits stay far below float64's overflow, which a
long enough digit string reaches: check_line refuses those as non-finite)."""
MAX_PLAIN_ID = 18
"""Longest Id the bulk check accepts (18 digits always fit a BIGINT)."""
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[ord("0") : ord("9") + 1] = True
_PLAIN = _DIGIT.copy()
_PLAIN[[ord("."), ord("-"), ord(",")]] = True
"""Bytes of the plain numbers of a row (and the commas between them)."""
_SEPARATOR = np.zeros(256, dtype=bool)
_SEPARATOR[[ord(","), ord("\n")]] = True
_COMMA, _NEWLINE, _DOT, _MINUS, _QUOTE = (ord(c) for c in ',\n.-"')


def _plain_block(data: bytes, rows: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows that are surely valid, their `Time`s) of a Kaggle-layout block of `rows` lines,
    each ended by a newline; None when its separators do not make `rows` rows of 31 fields
    (then `_plain_rows` and `check_line` take the block).

    `_plain_rows` costs more than producing a record; this looks at the block's non-digit
    bytes only (about 75 of a row's 270), in a few C-speed passes, and at a row at a time only
    for the rows it cannot pass. A row passes when each non-digit byte is a separator, a `.`
    between two digits and alone in its field, a `-` that starts a field and comes before a
    digit, or a quote of a `"0"`-like `Class`; every number is 1 to MAX_PLAIN_NUMBER bytes,
    `Class` is plain and `Time` within INT: whatever passes, `check_line` passes too, with the
    same Time. Rows that do not pass are not refused here, only handed to `check_line` (a
    value written with an exponent, say, as the real data set has a few)."""
    fields = Layout.KAGGLE.fields
    if rows == 0:
        return None
    if not data.endswith(b"\n"):
        data += b"\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    events = np.flatnonzero(~_digits(buf))
    kinds = buf[events]
    is_sep = (kinds == _COMMA) | (kinds == _NEWLINE)
    seps = events[np.flatnonzero(is_sep)]
    if len(seps) != rows * fields:
        return None
    ends = seps.reshape(rows, fields)
    row_ends = ends[:, -1]
    if not (buf[row_ends] == _NEWLINE).all():
        return None  # a row with more or fewer fields (the block holds `rows` newlines)
    lengths = _gaps(seps).reshape(rows, fields)
    lengths -= 1
    fine = _plain_class(buf, row_ends - lengths[:, -1], row_ends)
    numbers = lengths[:, :-1]
    if numbers.min() < 1 or numbers.max() > MAX_PLAIN_NUMBER:
        fine &= ((numbers >= 1) & (numbers <= MAX_PLAIN_NUMBER)).all(axis=1)
    odd = _odd_events(events, kinds, is_sep)
    quotes = np.flatnonzero(kinds == _QUOTE)
    if len(quotes) != 2 * np.count_nonzero(fine & (lengths[:, -1] >= 2)):
        # some quote is outside a passed Class field: those quotes are odd
        rows_of = np.searchsorted(row_ends, events[quotes])
        class_start = row_ends[rows_of] - lengths[rows_of, -1]
        odd = np.union1d(odd, quotes[events[quotes] < class_start])
    if len(odd):
        fine[np.searchsorted(row_ends, events[odd])] = False
    times = np.zeros(rows, dtype=np.float64)
    good = np.flatnonzero(fine)
    time_ends = ends[good, 0].tolist()
    time_starts = (ends[good, 0] - lengths[good, 0]).tolist()
    cells = [data[a:b] for a, b in zip(time_starts, time_ends, strict=True)]
    times[good] = np.fromiter(map(float, cells), np.float64, len(cells))
    fine &= np.abs(times) < TIME_LIMIT
    return fine, times


def _gaps(positions: np.ndarray) -> np.ndarray:
    """Distance of each position from the one before (the first: from -1); `np.diff` with
    `prepend` copies the array first, a third of this check's time."""
    gaps = np.empty_like(positions)
    gaps[0] = positions[0] + 1
    np.subtract(positions[1:], positions[:-1], out=gaps[1:])
    return gaps


def _odd_events(events: np.ndarray, kinds: np.ndarray, is_sep: np.ndarray) -> np.ndarray:
    """Indices of the non-digit bytes (at `events`, their values `kinds`) that no plain number
    allows where they are (quotes aside: `_plain_block` places those). The bytes between
    events are digits, so a `.` with a gap before and after it sits between digits, and two
    `.` with no event between are in one field."""
    is_dot = kinds == _DOT
    is_minus = kinds == _MINUS
    odd = ~(is_sep | is_dot | is_minus | (kinds == _QUOTE))  # a letter, a space, a '+', ...
    gaps = _gaps(events)  # gaps[j] > 1: a digit right before event j
    tight_after = np.empty(len(events), dtype=bool)
    tight_after[:-1] = gaps[1:] < 2
    tight_after[-1] = True  # (the last event is the block's final newline)
    odd |= is_dot & ((gaps < 2) | tight_after)
    odd[1:] |= is_dot[1:] & is_dot[:-1]
    sep_before = np.empty(len(events), dtype=bool)
    sep_before[1:] = is_sep[:-1] & (gaps[1:] == 1)
    sep_before[0] = events[0] == 0  # a sign at the very start of the block starts a field
    odd |= is_minus & (tight_after | ~sep_before)
    return np.flatnonzero(odd)


def _plain_rows(
    text: bytes, layout: Layout
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray] | None:
    """(rows that are surely valid, Ids (extended layout), Times) of newline-separated rows that
    each hold exactly the layout's commas; None when the fields do not line up that way.

    A row passes only if every number is plain (`-?D+(.D+)?`, at most MAX_PLAIN_NUMBER bytes),
    `Time` is within INT, `Class` is 0, 1 or empty (bare or quoted) and, in the extended layout,
    `Id` is a plain integer and the text decodes as UTF-8: whatever passes, `check_line` would
    pass too. Rows that do not pass are not refused here, only handed to `check_line`.
    """
    fields, first = layout.fields, layout.first_number
    buf = np.frombuffer(text + b"\n", dtype=np.uint8)
    seps = np.flatnonzero((buf == _COMMA) | (buf == _NEWLINE))
    rows = len(seps) // fields
    if len(seps) != rows * fields:
        return None
    ends = seps.reshape(rows, fields)
    kinds = buf[ends]
    if not ((kinds[:, :-1] == _COMMA).all() and (kinds[:, -1] == _NEWLINE).all()):
        return None
    starts = np.empty_like(ends)
    starts.flat[0] = 0
    starts.flat[1:] = seps[:-1] + 1
    if layout is Layout.EXTENDED:
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            return None
    last_number = first + 29
    fine = _plain_class(buf, starts[:, -1], ends[:, -1])
    if layout is Layout.KAGGLE and _all_plain(text, buf, starts[:, -1], fine):
        lengths = ends[:, : last_number + 1] - starts[:, : last_number + 1]
        fine &= ((lengths >= 1) & (lengths <= MAX_PLAIN_NUMBER)).all(axis=1)
    else:
        fine &= _plain_numbers(buf, starts, ends, first, last_number, MAX_PLAIN_NUMBER)
    row_times = _numbers_at(text, starts[:, first], ends[:, first], fine, np.float64)
    fine &= np.abs(row_times) < TIME_LIMIT
    row_ids = None
    if layout is Layout.EXTENDED:
        fine &= _plain_numbers(buf, starts, ends, 0, 0, MAX_PLAIN_ID, dots=False)
        row_ids = _numbers_at(text, starts[:, 0], ends[:, 0], fine, np.int64)
    return fine, row_ids, row_times


def _all_plain(
    text: bytes, buf: np.ndarray, class_starts: np.ndarray, class_fine: np.ndarray
) -> bool:
    """The common case of a Kaggle-layout block, in a few C-speed passes: every byte outside
    the `Class` fields is a digit, `.`, `-` or a separator, every `-` starts a field and is
    followed by a digit, every `.` sits between digits, and no field holds two. When this
    holds, only the fields' lengths remain to be checked; when not, `_plain_numbers` tells
    the rows apart."""
    if not class_fine.all():
        return False
    rest = text.translate(None, b"0123456789.-,\n")
    if rest.translate(None, b'"') or len(rest) != 2 * int((buf[class_starts] == _QUOTE).sum()):
        return False  # other bytes, or quotes outside `,"0"`-like Class fields
    minus = np.flatnonzero(buf == _MINUS)
    if len(minus):
        before = buf[minus - 1]
        starts_field = (before == _COMMA) | (before == _NEWLINE) | (minus == 0)
        if not (starts_field & _digits(buf[minus + 1])).all():
            return False
    dots = np.flatnonzero(buf == _DOT)
    if len(dots) and (dots[0] == 0 or not (_digits(buf[dots - 1]) & _digits(buf[dots + 1])).all()):
        return False
    return b".." not in text.translate(None, b"0123456789-")


def _digits(chars: np.ndarray) -> np.ndarray:
    """Which bytes are ASCII digits (uint8 arithmetic wraps the bytes below "0" past 9)."""
    return (chars - ord("0")) < 10  # type: ignore[no-any-return]


def _plain_numbers(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    first: int,
    last: int,
    longest: int,
    dots: bool = True,
) -> np.ndarray:
    """Per row: are fields `first`..`last` all plain numbers (integers if not `dots`)?"""
    lengths = ends[:, first : last + 1] - starts[:, first : last + 1]
    fine = ((lengths >= 1) & (lengths <= longest)).all(axis=1)
    # one pass marks the bytes of each row's span of fields: +1 at its start, -1 at its end
    marks = np.zeros(len(buf) + 1, dtype=np.int8)
    marks[starts[:, first]] += 1
    marks[ends[:, last]] -= 1
    inside = np.cumsum(marks[:-1], dtype=np.int8).astype(bool)
    allowed = _PLAIN if dots else _DIGIT_OR_SIGN
    odd = inside & ~allowed[buf]
    field_start = np.zeros(len(buf) + 1, dtype=bool)
    field_start[starts[:, first : last + 1].ravel()] = True
    minus = np.flatnonzero(inside & (buf == _MINUS))
    odd[minus[~(field_start[minus] & _DIGIT[buf[minus + 1]])]] = True
    if dots:
        dot = inside & (buf == _DOT)
        at = np.flatnonzero(dot)
        odd[at[~(_DIGIT[buf[at - 1]] & _DIGIT[buf[at + 1]])]] = True
        seen = np.concatenate(([0], np.cumsum(dot, dtype=np.int32)))
        per_field = seen[ends[:, first : last + 1]] - seen[starts[:, first : last + 1]]
        fine &= (per_field <= 1).all(axis=1)
    row_odd = np.concatenate(([0], np.cumsum(odd, dtype=np.int32)))
    fine &= row_odd[ends[:, last]] == row_odd[starts[:, first]]
    return fine  # type: ignore[no-any-return]


_DIGIT_OR_SIGN = _DIGIT.copy()
_DIGIT_OR_SIGN[_MINUS] = True


def _plain_class(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per row: is `Class` empty, 0 or 1, bare or in double quotes?"""
    length = ends - starts
    head = buf[starts]  # the separator itself where the field is empty
    mid = buf[np.minimum(starts + 1, len(buf) - 1)]
    tail = buf[np.minimum(starts + 2, len(buf) - 1)]
    zero_one = (head == ord("0")) | (head == ord("1"))
    quoted = (head == _QUOTE) & ((mid == ord("0")) | (mid == ord("1"))) & (tail == _QUOTE)
    return (  # type: ignore[no-any-return]
        (length == 0)
        | ((length == 1) & zero_one)
        | ((length == 2) & (head == _QUOTE) & (mid == _QUOTE))
        | ((length == 3) & quoted)
    )


def _numbers_at(
    text: bytes, starts: np.ndarray, ends: np.ndarray, fine: np.ndarray, dtype: type
) -> np.ndarray:
    """One column's values (0 where the row is not `fine`: its digits are not to be trusted)."""
    out: np.ndarray = np.zeros(len(starts), dtype=dtype)
    good = np.flatnonzero(fine)
    if len(good):
        cells = [text[a:b] for a, b in zip(starts[good].tolist(), ends[good].tolist(), strict=True)]
        out[good] = np.asarray(cells, dtype=np.bytes_).astype(dtype)
    return out
