"""Column-wise fast paths: a batch of DELIMITED values → typed numpy columns → Avro records.

The pipeline's preprocessing query reads 34-field DELIMITED records and writes them back as
Avro records of nullable primitives. Done per record in Python that is ~70 Python objects made
and dropped per record; here a whole consumed batch is split, typed and encoded with numpy, and
the doubles never become Python floats.

Both halves are *fast paths with an exact fallback*: `delimited_columns` returns None for any
batch it cannot decode with certainty of matching the per-record parser (a quote inside a
field, a delimiter inside quotes, a newline, a wrong field count, a number outside the strict
`-?digits[.digits]` form, non-UTF-8 bytes, a tombstone …). The caller then runs the exact
per-record path on that batch, so errors reach the processing log with the same message.
`encode_avro` writes the bytes fastavro writes for the sink schema (null-first unions of
double/long/int/string), in the Confluent wire format.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.ksql_server.types import SqlType

NUMERIC = ("INTEGER", "BIGINT", "DOUBLE")
COLUMNAR_TYPES = (*NUMERIC, "STRING")
_MAX_NUMBER_WIDTH = 40  # wider numbers go the exact per-record way
_INT32 = (-(2**31), 2**31 - 1)
_QUOTE, _MINUS, _DOT, _ZERO, _NINE = (ord(c) for c in '"-.09')


@dataclass
class ColumnData:
    """One column of a batch: numbers in `values`, strings as [starts, ends) slices of the
    batch's buffer; `nulls` marks SQL NULLs (their `values` entries are meaningless)."""

    base: str
    nulls: np.ndarray
    values: np.ndarray | None = None
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None

    def take(self, mask: np.ndarray) -> ColumnData:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[mask]

        return ColumnData(
            self.base, self.nulls[mask], pick(self.values), pick(self.starts), pick(self.ends)
        )


@dataclass
class ColumnBatch:
    """A batch of records held column-wise; `buf` holds the bytes the string columns slice."""

    size: int
    buf: np.ndarray
    columns: list[ColumnData]

    def take(self, mask: np.ndarray) -> ColumnBatch:
        """The records where `mask` is true (a filter), in order."""
        return ColumnBatch(int(mask.sum()), self.buf, [c.take(mask) for c in self.columns])

    def column_values(self, index: int) -> list[Any]:
        """A column as Python values (None for NULL), as the per-record parser gives them."""
        col = self.columns[index]
        if col.base == "STRING":
            assert col.starts is not None and col.ends is not None
            raw = self.buf.tobytes()
            return [
                None if n else raw[s:e].decode("utf-8")
                for n, s, e in zip(
                    col.nulls.tolist(), col.starts.tolist(), col.ends.tolist(), strict=True
                )
            ]
        assert col.values is not None
        return [
            None if n else v for n, v in zip(col.nulls.tolist(), col.values.tolist(), strict=True)
        ]

    @staticmethod
    def from_rows(rows: Sequence[Sequence[Any]], types: Sequence[SqlType]) -> ColumnBatch:
        """Python rows → a ColumnBatch (tests and any row-shaped caller of `encode_avro`)."""
        pieces: list[bytes] = []
        offset = 0
        columns = []
        for j, typ in enumerate(types):
            vals = [r[j] for r in rows]
            nulls = np.array([v is None for v in vals], dtype=bool)
            if typ.base == "STRING":
                starts, ends = [], []
                for v in vals:
                    b = b"" if v is None else v.encode("utf-8")
                    pieces.append(b)
                    starts.append(offset)
                    offset += len(b)
                    ends.append(offset)
                columns.append(
                    ColumnData(
                        "STRING", nulls, None, np.array(starts, np.int64), np.array(ends, np.int64)
                    )
                )
            else:
                dtype = np.float64 if typ.base == "DOUBLE" else np.int64
                array = np.array([0 if v is None else v for v in vals], dtype=dtype)
                columns.append(ColumnData(typ.base, nulls, array))
        buf = np.frombuffer(b"".join(pieces) + bytes(_MAX_NUMBER_WIDTH + 1), dtype=np.uint8)
        return ColumnBatch(len(rows), buf, columns)


# ----------------------------------------------------------------------------- DELIMITED


def delimited_columns_decoder(
    types: Sequence[SqlType], delimiter: str
) -> Callable[[list[bytes | None]], ColumnBatch | None] | None:
    """A batch decoder for these column types, or None when the columns don't allow one."""
    if not types or any(t.base not in COLUMNAR_TYPES for t in types):
        return None
    delim = delimiter.encode("utf-8")
    if len(delim) != 1 or delim in (b'"', b"\n", b"\r", b"\0"):
        return None
    bases = [t.base for t in types]
    return lambda values: delimited_columns(values, bases, delim)


def delimited_columns(
    values: list[bytes | None], bases: Sequence[str], delim: bytes
) -> ColumnBatch | None:
    """Split and type a batch of DELIMITED values column-wise, or None to use the exact path.

    Accepted: every value present and non-empty, exactly len(bases) fields each, quotes only
    wrapping a whole field (`"text"`, stripped as the CSV parser strips them), UTF-8, numbers
    in the form `-?digits[.digits]` (float()/int() and numpy agree bit for bit there)."""
    n, size = len(bases), len(values)
    if not size or None in values:
        return None
    joined = delim.join(values)  # type: ignore[arg-type]
    if b"\n" in joined or b"\r" in joined:
        return None
    if not joined.isascii():
        try:
            joined.decode("utf-8")
        except UnicodeDecodeError:
            return None
    lens = np.fromiter(map(len, values), dtype=np.int64, count=size)  # type: ignore[arg-type]
    if not lens.all():
        return None
    # zero padding: the number parser reads up to _MAX_NUMBER_WIDTH bytes past a field
    buf = np.frombuffer(joined + bytes(_MAX_NUMBER_WIDTH + 1), dtype=np.uint8)
    pos = np.flatnonzero(buf[: len(joined)] == delim[0])
    if pos.size != size * n - 1:
        return None
    if size > 1:
        # the joining delimiters must be field n, 2n, … : every record has n fields
        bounds = np.cumsum(lens[:-1] + 1) - 1
        if not np.array_equal(pos[np.arange(1, size) * n - 1], bounds):
            return None
    starts = np.empty(size * n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = pos + 1
    ends = np.empty(size * n, dtype=np.int64)
    ends[:-1] = pos
    ends[-1] = len(joined)
    if not _strip_quotes(joined, buf, starts, ends):
        return None
    starts2, ends2 = starts.reshape(size, n), ends.reshape(size, n)
    return _typed_columns(buf, bases, starts2, ends2)


def _typed_columns(
    buf: np.ndarray, bases: Sequence[str], starts: np.ndarray, ends: np.ndarray
) -> ColumnBatch | None:
    """Columns from the (records x fields) field bounds; None when a number won't parse."""
    size = starts.shape[0]
    nulls = ends == starts
    numbers: dict[int, np.ndarray] = {}
    for kind in ("DOUBLE", "INTEGER", "BIGINT"):
        picked = [j for j, base in enumerate(bases) if base == kind]
        if not picked:
            continue
        # one pass over all columns of a kind, each column a contiguous block of `size`
        parsed = _parse_numbers(
            buf, kind, starts[:, picked].T.ravel(), (ends - starts)[:, picked].T.ravel()
        )
        if parsed is None:
            return None
        for block, j in enumerate(picked):
            numbers[j] = parsed[block * size : (block + 1) * size]
    columns = [
        ColumnData(base, nulls[:, j].copy(), numbers.get(j))
        if base != "STRING"
        else ColumnData(base, nulls[:, j].copy(), None, starts[:, j].copy(), ends[:, j].copy())
        for j, base in enumerate(bases)
    ]
    return ColumnBatch(size, buf, columns)


def _strip_quotes(joined: bytes, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> bool:
    """Strip the quotes of whole-field `"…"` fields in place; False when any other quote is
    present (then the CSV parser's rules apply: escaped quotes, delimiters inside quotes)."""
    quotes = joined.count(b'"')
    if not quotes:
        return True
    last = buf.size - 1
    wrapped = (
        (ends - starts >= 2)
        & (buf[np.minimum(starts, last)] == _QUOTE)
        & (buf[np.maximum(ends - 1, 0)] == _QUOTE)
    )
    if quotes != 2 * int(wrapped.sum()):
        return False
    starts[wrapped] += 1
    ends[wrapped] -= 1
    return True


_POW10 = np.array([10.0**k for k in range(23)])  # exact doubles up to 1e22
_EXACT = 2**53  # integers below it are exact doubles


def _parse_numbers(
    buf: np.ndarray, kind: str, starts: np.ndarray, widths: np.ndarray
) -> np.ndarray | None:
    """Numbers of the fields buf[starts:starts+widths] (0 for empty fields), or None when one
    is not of the form `-?digits[.digits]` (or an INTEGER/BIGINT is out of range).

    Digits are accumulated position by position into an int64 mantissa M with k fraction
    digits; when M < 2**53, M / 10**k in IEEE double arithmetic is the correctly rounded value
    (both operands exact, one rounding: Clinger's fast path), i.e. exactly what float() gives.
    Longer mantissas (rare) are converted with float() itself. `buf` must extend at least
    _MAX_NUMBER_WIDTH bytes past the last field (the reads run ahead without bounds checks)."""
    is_double = kind == "DOUBLE"
    count = widths.size
    width = int(widths.max()) if count else 0
    mantissa = np.zeros(count, dtype=np.int64)
    if width == 0:
        return mantissa.astype(np.float64) if is_double else mantissa
    if width > _MAX_NUMBER_WIDTH:
        return None
    widths = widths.astype(np.int8)
    n_digits = np.zeros(count, dtype=np.int8)
    n_dots = np.zeros(count, dtype=np.int8)
    fraction = np.zeros(count, dtype=np.int8)
    negative = np.zeros(count, dtype=bool)
    index = starts.copy()
    for p in range(width):
        ch = buf[index]
        index += 1
        inside = widths > p
        digit = ch - np.uint8(_ZERO)
        is_digit = (digit < 10) & inside
        mantissa = np.where(is_digit, mantissa * 10 + digit, mantissa)
        n_digits += is_digit
        if p == 0:
            negative = (ch == _MINUS) & inside
        if is_double:
            fraction += (n_dots > 0) & is_digit
            n_dots += (ch == _DOT) & inside
    # every character is a digit, the leading minus or the one dot; at least one digit
    if (
        not np.array_equal(n_digits + n_dots + negative, widths)
        or (n_dots > 1).any()
        or ((widths > 0) & (n_digits == 0)).any()
    ):
        return None
    if not is_double:
        if (n_digits > 18).any():
            return None
        values = np.where(negative, -mantissa, mantissa)
        if kind == "INTEGER" and (values.min() < _INT32[0] or values.max() > _INT32[1]):
            return None
        return values
    exact = (n_digits <= 18) & (mantissa < _EXACT)
    values = mantissa.astype(np.float64) / _POW10[np.minimum(fraction, 22)]
    values = np.where(negative, -values, values)
    if not exact.all():
        raw = buf.tobytes()
        for i in np.flatnonzero(~exact).tolist():
            values[i] = float(raw[starts[i] : starts[i] + widths[i]])
    return values


# ----------------------------------------------------------------------------- AVRO


def avro_columns_encoder(
    types: Sequence[SqlType], header: bytes
) -> Callable[[ColumnBatch, Sequence[int]], list[bytes]] | None:
    """An encoder for records of nullable primitives (null-first unions), or None."""
    if not types or any(t.base not in COLUMNAR_TYPES for t in types):
        return None
    bases = [t.base for t in types]

    def encode(batch: ColumnBatch, indexes: Sequence[int]) -> list[bytes]:
        for i, base in zip(indexes, bases, strict=True):
            if batch.columns[i].base != base:
                raise TypeError(f"column {i} is {batch.columns[i].base}, the schema has {base}")
        return encode_avro(batch, indexes, header)

    return encode


@dataclass
class _Block:
    """Encoded bytes of some adjacent fields, one row per record: `mat` holds them padded to a
    common width and `keep` (None: every byte) marks the bytes each record really has."""

    mat: np.ndarray
    keep: np.ndarray | None

    def records(self) -> list[bytes]:
        size, width = self.mat.shape
        if self.keep is None:
            raw = np.ascontiguousarray(self.mat).tobytes()
            return [raw[a : a + width] for a in range(0, size * width, width)]
        raw = self.mat[self.keep].tobytes()
        bounds = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(self.keep.sum(axis=1), out=bounds[1:])
        ends = bounds.tolist()
        return [raw[a:b] for a, b in itertools.pairwise(ends)]

    def joined(self, other: _Block) -> _Block:
        """Both blocks side by side (one join part per record instead of two)."""
        mat = np.concatenate([self.mat, other.mat], axis=1)
        if self.keep is None and other.keep is None:
            return _Block(mat, None)
        keep = np.concatenate([_keep_of(self), _keep_of(other)], axis=1)
        return _Block(mat, keep)


def _keep_of(block: _Block) -> np.ndarray:
    return np.ones(block.mat.shape, dtype=bool) if block.keep is None else block.keep


_MERGE_WIDTH = 64  # wider blocks with a `keep` mask are cheaper to join than to compact
_STRING_BLOCK_WIDTH = 64  # longer strings are sliced from the buffer record by record


def encode_avro(batch: ColumnBatch, indexes: Sequence[int], header: bytes) -> list[bytes]:
    """One Confluent-framed Avro record per row: `header` then, for each column in `indexes`,
    the union branch (0 null / 1 value, as zig-zag varints 0x00 / 0x02) and the value.

    Fields are encoded column-wise into blocks (numbers, varint prefixes) and string slices of
    the source buffer; each record is then one bytes.join of its parts."""
    size = batch.size
    if not size:
        return []
    head = np.frombuffer(header, dtype=np.uint8)
    parts: list[_Block | list[bytes]] = [_Block(np.tile(head, (size, 1)), None)]
    raw: bytes | None = None

    def add(block: _Block) -> None:
        last = parts[-1]
        mergeable = isinstance(last, _Block) and (
            (last.keep is None and block.keep is None)
            or last.mat.shape[1] + block.mat.shape[1] <= _MERGE_WIDTH
        )
        if mergeable:
            parts[-1] = last.joined(block)  # type: ignore[union-attr]
        else:
            parts.append(block)

    cols = [batch.columns[i] for i in indexes]
    j = 0
    while j < len(cols):
        col = cols[j]
        if col.base == "DOUBLE":
            k = j
            while k < len(cols) and cols[k].base == "DOUBLE":
                k += 1
            add(_doubles(cols[j:k]))
            j = k
            continue
        if col.base == "STRING":
            assert col.starts is not None and col.ends is not None
            lengths = np.where(col.nulls, 0, col.ends - col.starts)
            add(_prefixed_varint(lengths, col.nulls))
            longest = int(lengths.max())
            if longest <= _STRING_BLOCK_WIDTH:
                add(_string_block(batch.buf, col.starts, lengths, longest))
                j += 1
                continue
            if raw is None:
                raw = batch.buf.tobytes()
            parts.append(
                [raw[a : a + n] for a, n in zip(col.starts.tolist(), lengths.tolist(), strict=True)]
            )
        else:
            assert col.values is not None
            add(_prefixed_varint(col.values, col.nulls))
        j += 1
    lists = [p.records() if isinstance(p, _Block) else p for p in parts]
    if len(lists) == 1:
        return lists[0]
    return list(map(b"".join, zip(*lists, strict=True)))


def _string_block(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> _Block:
    """Short strings as a padded block (their UTF-8 bytes are the source buffer's)."""
    index = np.minimum(starts[:, None] + np.arange(width), buf.size - 1)
    return _Block(buf[index], np.arange(width) < lengths[:, None])


def _doubles(cols: Sequence[ColumnData]) -> _Block:
    """A run of double columns: 0x02 + 8 little-endian bytes each, or 0x00 for NULL."""
    size, k = cols[0].nulls.size, len(cols)
    mat = np.empty((size, k, 9), dtype=np.uint8)
    mat[:, :, 0] = 2
    values = np.stack([c.values for c in cols], axis=1)  # type: ignore[misc]
    mat[:, :, 1:] = values.astype("<f8").view(np.uint8).reshape(size, k, 8)
    nulls = np.stack([c.nulls for c in cols], axis=1)
    if not nulls.any():
        return _Block(mat.reshape(size, 9 * k), None)
    mat[:, :, 0][nulls] = 0
    keep = np.ones((size, k, 9), dtype=bool)
    keep[:, :, 1:] = ~nulls[:, :, None]
    return _Block(mat.reshape(size, 9 * k), keep.reshape(size, 9 * k))


def _prefixed_varint(values: np.ndarray, nulls: np.ndarray) -> _Block:
    """Union branch byte then Avro's long: zig-zag, base-128 little-endian varint."""
    v = values.astype(np.int64)
    z = ((v << 1) ^ (v >> 63)).view(np.uint64)
    size = v.size
    mat = np.zeros((size, 11), dtype=np.uint8)
    mat[:, 0] = np.where(nulls, 0, 2)
    count = np.ones(size, dtype=np.int64)
    rest = z.copy()
    width = 2
    for b in range(10):
        more = rest >= 0x80
        low = (rest & np.uint64(0x7F)) | (more.astype(np.uint64) << np.uint64(7))
        mat[:, b + 1] = low.astype(np.uint8)
        rest >>= np.uint64(7)
        if not more.any():
            break
        count += more
        width += 1
    lens = np.where(nulls, 1, 1 + count)
    keep = np.arange(width) < lens[:, None]
    return _Block(mat[:, :width], keep)


__all__ = [
    "ColumnBatch",
    "ColumnData",
    "avro_columns_encoder",
    "delimited_columns",
    "delimited_columns_decoder",
    "encode_avro",
]
