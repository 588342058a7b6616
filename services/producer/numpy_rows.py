"""The numpy path from a block's lines to its records: any layout, any line, every refusal named.

A Kaggle-layout block is first asked one question as a whole (`block_check`: is every row
plain?), which clean files answer "yes" at a fraction of the per-row checks' cost. Otherwise
the block is checked in bulk: comma counts first, then whole-array numpy passes over the
block's bytes that accept only plainly written numbers (`-?digits[.digits]`, as data sets and
`datagen` write them). Only the lines that finds anything else in (an exponent, quotes, spaces,
a bad value) are checked one by one by `check_line`, the authority, so every bad line is
reported with its line number and reason while clean files stay on the fast path.

`csv_source` sends here the blocks the compiled path (`_kaggle_records.c`) does not take, and
loads this module (and numpy) only for the first of them.
"""

from __future__ import annotations

import numpy as np

from services.producer.block_check import Workspace, plain_block_times
from services.producer.errors import CSV_ENCODING, LINE_TOO_LONG, Refusal
from services.producer.layout import USERS, iso_seconds_bytes, user_indices
from services.producer.rows import (
    TIME_LIMIT,
    BadLine,
    Batch,
    Layout,
    check_line,
    columns_fault,
    encoding_fault,
    times_view,
)

_USER_BYTES = np.asarray([u.encode() for u in USERS], dtype=object)
_KAGGLE_VALUE = b'%b,"%bZ","%b",%b'
"""The source value of a Kaggle row: Id, "Timestamp", "User", then the line as it is."""


class NumpyRows:
    """Records and refused lines of a file's blocks of lines, in numpy passes and, for the lines
    they cannot pass, `check_line`."""

    def __init__(self, layout: Layout, header_line: int, max_line_bytes: int) -> None:
        self.layout = layout
        self.max_line_bytes = max_line_bytes
        self._header_line = header_line
        """Line number of the header (0 without one): Kaggle `Id` = line number - this."""
        self._workspace = Workspace()

    def batch(
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
                    reasons[i] = columns_fault(layout, found + 1)
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
            batch.line_numbers = [i + first_line for i in good]
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
                    reasons[i] = encoding_fault(line) or Refusal(CSV_ENCODING, "NUL byte")
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
        view = times_view(times.astype(np.float64).tobytes())
        if self.layout is Layout.EXTENDED:
            return Batch(keys=keys, values=lines, times=view, bad=bad)
        stamps = iso_seconds_bytes(np.floor(times))
        users = _USER_BYTES[user_indices(ids)].tolist()
        # one C-level map of the format over the rows: half the time of a comprehension
        values = list(map(_KAGGLE_VALUE.__mod__, zip(keys, stamps, users, lines, strict=True)))
        return Batch(keys=keys, values=values, times=view, bad=bad)


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
