"""Whole-block check of a Kaggle-layout block: every row plain, or hand the block on.

The replay's cost a record was mostly checking lines (`csv_source._plain_block` looks at each
non-digit byte's position: about 75 a row, 2 µs a record). Most blocks are entirely plain, so
this asks one yes/no question of the whole block with C-speed passes that build no position
lists: byte classes compared over the block, neighbour rules on shifted views, per-row counts
from bit-packed masks (popcount prefix sums), and one bit-parallel addition that finds a second
`.` in a field. Only when the answer is "no" does the block go to the row-by-row path, whose
verdict (`check_line`) stays the authority: whatever passes here, `check_line` passes too,
with the same `Time` (tests/test_producer_bulk.py checks both on generated blocks).

A row passes when it has 31 fields, the first 30 plain numbers (`-?D+(.D+)?`), no digit run
of 128 bytes or more (so every value is finite), `Class` empty, 0 or 1 (bare or in double
quotes) and `Time` a plain number of at most 9 integer digits (so within INT).
"""

from __future__ import annotations

import numpy as np

KAGGLE_FIELDS = 31
"""Fields of a Kaggle-layout row (`Time`, V1..V28, `Amount`, `Class`)."""
MAX_TIME_DIGITS = 9
"""`Time` with more integer digits goes to the row path (10**9 < 2**31: INT holds it)."""
_COMMA, _NEWLINE, _DOT, _MINUS, _QUOTE, _ZERO = (ord(c) for c in ',\n.-"0')
_ONE = np.uint64(1)
_ALL_ONES = np.uint64(2**64 - 1)


CHUNK_BYTES = 64 << 10
"""The byte passes run this many bytes at a time (a multiple of 64): their eight masks then
stay in the core's cache instead of streaming a whole block's worth through memory."""


class Workspace:
    """Boolean arrays the byte passes reuse from chunk to chunk and block to block: fresh
    arrays cost more than the passes that fill them (page faults), and reused ones stay in
    the cache."""

    def __init__(self) -> None:
        self._arrays = np.empty((8, CHUNK_BYTES + 1), dtype=bool)
        self._bytes = np.empty(CHUNK_BYTES + 1, dtype=np.uint8)

    def bytes(self, size: int) -> np.ndarray:
        """A uint8 row of `size` (at most CHUNK_BYTES + 1) entries."""
        return self._bytes[:size]

    def arrays(self, size: int) -> np.ndarray:
        """Eight boolean rows of `size` (at most CHUNK_BYTES + 1) entries."""
        return self._arrays[:, :size]


def plain_block_times(
    data: bytes, line_lengths: np.ndarray, workspace: Workspace | None = None
) -> np.ndarray | None:
    """`Time` of every row (float64) when every row of `data` passes; None when any does not.

    `data` is whole lines, each ended by a newline, and `line_lengths` their lengths without
    it (so `len(data) == line_lengths.sum() + len(line_lengths)`)."""
    rows = len(line_lengths)
    if rows == 0 or not data.endswith(b"\n") or len(data) != int(line_lengths.sum()) + rows:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    scanned = _scan(buf, workspace or Workspace())
    if scanned is None:
        return None
    digits, commas, dots, quotes = scanned
    ends = np.cumsum(line_lengths + 1) - 1  # the newline of each row
    starts = ends - line_lengths
    if not (commas.count_between(starts, ends) == KAGGLE_FIELDS - 1).all():
        return None
    if not _classes_fine(buf, ends, quotes):
        return None
    if (digits.words == _ALL_ONES).any() or _two_dots_in_a_field(digits, dots):
        return None
    return _times(data, buf, starts, commas, dots)


def _scan(buf: np.ndarray, workspace: Workspace) -> tuple[_BitMask, _BitMask, _BitMask, int] | None:
    """The byte passes, a chunk at a time: only plain bytes, and their neighbours fine
    (`_neighbours_fine`); returns the digits, commas and dots as bit masks and the number of
    quotes. Each chunk but the first starts one byte early, for the rules about neighbours."""
    if buf[0] in (_COMMA, _DOT):
        return None  # an empty first number, or a number that starts with its dot
    packed = np.zeros((3, len(buf) // 8 + 1), dtype=np.uint8)
    quotes = 0
    for start in range(0, len(buf), CHUNK_BYTES):
        lo = max(start - 1, 0)
        part = buf[lo : start + CHUNK_BYTES]
        digit, comma, dot, minus, quote, sep, tmp, _ = workspace.arrays(len(part))
        shifted = workspace.bytes(len(part))
        np.less(np.subtract(part, _ZERO, out=shifted), 10, out=digit)  # below "0" wraps past 9
        for mask, byte in ((comma, _COMMA), (dot, _DOT), (minus, _MINUS), (quote, _QUOTE)):
            np.equal(part, byte, out=mask)
        np.logical_or(np.equal(part, _NEWLINE, out=sep), comma, out=sep)
        np.logical_or(digit, sep, out=tmp)
        for mask in (dot, minus, quote):
            np.logical_or(tmp, mask, out=tmp)  # tmp: the bytes a plain row may hold
        if not tmp.all() or not _neighbours_fine(digit, comma, sep, dot, minus, tmp):
            return None
        quotes += int(np.count_nonzero(quote[start - lo :]))
        for row, mask in enumerate((digit, comma, dot)):
            bits = np.packbits(mask[start - lo :], bitorder="little")
            packed[row, start // 8 : start // 8 + len(bits)] = bits
    digits, commas, dots = (_BitMask(row) for row in packed)
    return digits, commas, dots, quotes


def _neighbours_fine(
    digit: np.ndarray,
    comma: np.ndarray,
    sep: np.ndarray,
    dot: np.ndarray,
    minus: np.ndarray,
    tmp: np.ndarray,
) -> bool:
    """From the second byte on: no empty number (a comma right after a separator), every `-`
    first in its field, every `.` right after a digit; and a digit right after each `-` and
    `.`. The block starts a row, so its first byte counts as coming after a separator.
    `tmp`: scratch."""
    out = tmp[:-1]
    if np.logical_and(comma[1:], sep[:-1], out=out).any():
        return False
    if np.greater(minus[1:], sep[:-1], out=out).any():
        return False
    if np.greater(dot[1:], digit[:-1], out=out).any():
        return False
    np.logical_or(minus, dot, out=tmp)
    return not np.greater(out, digit[1:], out=out).any()


def _classes_fine(buf: np.ndarray, ends: np.ndarray, quotes: int) -> bool:
    """Each row ends in `,` `,0` `,1` `,""` `,"0"` or `,"1"` (its `Class`), and those are the
    block's only quotes. Rows hold 30 non-empty numbers by now, so `ends - 4` is in the row."""
    b1, b2, b3, b4 = (buf[ends - k] for k in (1, 2, 3, 4))
    bare = (b1 == _COMMA) | (((b1 == _ZERO) | (b1 == _ZERO + 1)) & (b2 == _COMMA))
    empty_quoted = (b1 == _QUOTE) & (b2 == _QUOTE) & (b3 == _COMMA)
    quoted = (b1 == _QUOTE) & ((b2 == _ZERO) | (b2 == _ZERO + 1)) & (b3 == _QUOTE) & (b4 == _COMMA)
    if not (bare | empty_quoted | quoted).all():
        return False
    return quotes == 2 * int(np.count_nonzero(empty_quoted | quoted))


class _BitMask:
    """A boolean mask packed 64 bytes of the block to a word (bit i of word k: byte 64k+i),
    with the set bits before each word, for exact counts over any range at a few operations a
    row instead of a pass over the bytes."""

    def __init__(self, packed: np.ndarray) -> None:
        """`packed`: the mask as `np.packbits(mask, bitorder="little")` gives it."""
        padded = np.zeros((len(packed) // 8 + 2) * 8, dtype=np.uint8)  # a spare word at the end
        padded[: len(packed)] = packed
        self.words = padded.view("<u8")
        self.before = np.zeros(len(self.words) + 1, dtype=np.int64)
        np.cumsum(np.bitwise_count(self.words), out=self.before[1:])

    def count_before(self, positions: np.ndarray) -> np.ndarray:
        """Set bits at indices below each position."""
        word = positions >> 6
        below = (_ONE << (positions & 63).astype(np.uint64)) - _ONE
        return self.before[word] + np.bitwise_count(self.words[word] & below)  # type: ignore[no-any-return]

    def count_between(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return self.count_before(ends) - self.count_before(starts)

    def first_at_or_after(self, positions: np.ndarray) -> np.ndarray:
        """Index of the first set bit at or after each position, looking at most into the
        next word; -1 where there is none that near."""
        word = positions >> 6
        rest = self.words[word] >> (positions & 63).astype(np.uint64)
        found = _lowest_bit(rest) + positions
        after = self.words[np.minimum(word + 1, len(self.words) - 1)]
        found_next = _lowest_bit(after) + (word + 1) * 64
        return np.where(rest != 0, found, np.where(after != 0, found_next, -1))


def _lowest_bit(words: np.ndarray) -> np.ndarray:
    """Index of each word's lowest set bit (64 where none is set)."""
    lowest = words & (~words + _ONE)
    return np.bitwise_count(lowest - _ONE).astype(np.int64)  # type: ignore[no-any-return]


def _two_dots_in_a_field(digits: _BitMask, dots: _BitMask) -> bool:
    """Is some digit run both preceded and followed by a `.` (`1.2.3`)? A 1 added at the
    start of each run that follows a dot carries through the run to the byte after it, as in
    binary addition: a landing bit on a dot is a field with two. No word is all digits, so a
    carry crosses at most one word boundary (one that would cross two is answered "yes", which
    only sends the block to the row path)."""
    d, p = digits.words, dots.words
    seeds = p << _ONE
    seeds[1:] |= p[:-1] >> np.uint64(63)
    total = d + seeds
    carry = (total < d).astype(np.uint64)
    carried = total.copy()
    carried[1:] += carry[:-1]
    if (carried[1:] < total[1:]).any():
        return True  # a carry crossed a second word boundary: leave it to the row path
    return bool(((carried & ~d) & p).any())


def _times(
    data: bytes, buf: np.ndarray, starts: np.ndarray, commas: _BitMask, dots: _BitMask
) -> np.ndarray | None:
    """`Time` of each row: integers (the usual case) parsed here, up to MAX_TIME_DIGITS
    digits; one with a fraction is converted by `float` as `check_line` does."""
    ends = commas.first_at_or_after(starts)
    if (ends < 0).any():
        return None  # a `Time` of 64 bytes or more
    negative = buf[starts] == _MINUS
    first = starts + negative
    width = ends - first
    fraction = dots.count_between(first, ends) > 0
    integer_digits = np.where(fraction, 0, width)
    if integer_digits.max() > MAX_TIME_DIGITS:
        return None
    values = np.zeros(len(starts), dtype=np.int64)
    last = len(buf) - 1
    for k in range(int(integer_digits.max())):  # Horner's rule, a digit column at a time
        digit = buf[np.minimum(first + k, last)].astype(np.int64) - _ZERO
        values = np.where(k < integer_digits, values * 10 + digit, values)
    times = values.astype(np.float64)
    np.negative(times, out=times, where=negative)
    if fraction.any():
        where = np.flatnonzero(fraction)
        texts = [
            data[a:b] for a, b in zip(starts[where].tolist(), ends[where].tolist(), strict=True)
        ]
        times[where] = np.fromiter(map(float, texts), np.float64, len(texts))
        if not (np.abs(times[where]) < 2**31).all():
            return None
    return times
