"""Reading transaction CSVs in either layout, block by block, into ready-to-send records.

Each block of whole lines takes one of two paths. A Kaggle-layout block goes first to the
compiled path (`_kaggle_records.c`): two passes over its bytes that answer "every row is plain,
here are the records" or "no". Every other block goes to the numpy path (`numpy_rows.py`), which
takes any layout and any line and names every refused line; it is loaded, with numpy, only for
the first block that needs it, so `produce` of a plain Kaggle file starts without numpy. No
pandas: it took most of the replay's CPU and half a second of every `produce`'s start-up.

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

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from services.producer.errors import CsvFileError, ProducerError
from services.producer.layout import BASE_SECONDS, USER_STEPS, USERS
from services.producer.limits import DEFAULT_MAX_LINE_BYTES, LONG_LINE_KEEP_BYTES
from services.producer.rows import Batch, Layout, times_view, unquote

if TYPE_CHECKING:
    from services.producer.numpy_rows import NumpyRows

try:
    from services.producer import _kaggle_records
except ImportError:  # built without a C compiler: the numpy path gives the same records
    _kaggle_records = None  # type: ignore[assignment]

BLOCK_BYTES = 512 << 10
"""Lines are read and checked about this many bytes at a time (smaller than the 2 MiB it was:
the numpy path's temporaries then stay in the cache and the allocator's heap, 10-20 % less
CPU a record)."""
SKIP_CHUNK_BYTES = 1 << 20
"""The rest of a long line is read past this many bytes at a time."""
HEAD_LINES = 200
"""Layout detection looks at up to this many lines (each read with a bounded readline)."""
HEAD_LINE_BYTES = 64 * 1024
"""Lines longer than this are skipped by layout detection (no real header or row is)."""
_USER_NAMES = tuple(u.encode() for u in USERS)


def _is_header(raw: bytes) -> bool:
    first = unquote(raw.removeprefix(b"\xef\xbb\xbf").split(b",", 1)[0])
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
        self._numpy_rows: NumpyRows | None = None
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
        """The block's records from the compiled path (`_kaggle_records.c`): a Kaggle-layout
        block of whole lines, every one plain; None for any other block, or when the path was not
        built. It does in two passes what the numpy path does in a dozen and a few Python
        objects a row, and checks the rows without holding the GIL."""
        if _kaggle_records is None or self.layout is not Layout.KAGGLE:
            return None
        if not data.endswith(b"\n"):
            return None  # the file's last line, without its newline
        first_id = first_line - self._header_line
        records = _kaggle_records.records(
            data, _USER_NAMES, USER_STEPS, first_id, BASE_SECONDS, self.max_line_bytes
        )
        if records is None:
            return None
        keys, values, times = records
        last_line = first_line + len(keys) - 1
        return Batch(keys=keys, values=values, times=times_view(times), last_line=last_line)

    def _split_batch(
        self, data: bytes, long_tail: tuple[bytes, int] | None, first_line: int
    ) -> Batch:
        """The block's records and refused lines from the numpy path (`NumpyRows.batch`)."""
        lines = data.split(b"\n")
        if not lines[-1]:
            lines.pop()
        long_lines = self._cut_long_lines(lines)
        if long_tail is not None:
            long_lines[len(lines)] = long_tail[1]
            lines.append(long_tail[0])
        has_nul = b"\0" in data
        whole = data if not long_lines and long_tail is None else None
        return self._numpy().batch(lines, first_line, whole, long_lines, has_nul)

    def _numpy(self) -> NumpyRows:
        """The numpy path, loaded (with numpy) for the first block that needs it."""
        if self._numpy_rows is None:
            from services.producer.numpy_rows import NumpyRows

            self._numpy_rows = NumpyRows(self.layout, self._header_line, self.max_line_bytes)
        return self._numpy_rows

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
