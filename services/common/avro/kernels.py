"""Compiled Avro codecs for flat records: the one place hot paths turn bytes into columns and
columns into bytes.

The pipeline's Avro records are flat, in ksqlDB's style: every field a primitive or a
`["null", primitive]` union. Python codecs (fastavro) make a dict and a Python object per field
per record, tens of microseconds for the 34-field transaction. These numba-compiled loops walk
the Avro binary encoding record by record, field by field, straight into typed numpy columns
(and back): a few nanoseconds per field, no Python object per record, and no GIL held while
they run.

A column set is laid out by field *kind*, each kind in its own 2-D array indexed by a per-field
slot: `floats[slot, row]` (double, float, boolean), `ints[slot, row]` (int, long) and
`spans[slot, 0 | 1, row]` (start and length of string/bytes values in a byte buffer), plus
`present[field, row]`.

`walk_features` is the scorer's shortcut: it checks each value's wire-format header and writes
the numeric fields a model needs straight into one float32 matrix, with no column per field;
both walkers read fields with the same `_read_branch` / `_read_value`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from services.common.avro.kinds import (  # noqa: F401 - re-exported: the codecs' kinds
    FLOAT_KINDS,
    KIND_BOOLEAN,
    KIND_BYTES,
    KIND_DOUBLE,
    KIND_FLOAT,
    KIND_STRING,
    KIND_VARINT,
    KINDS,
    SPAN_KINDS,
)


def slots_of(kinds: Sequence[int]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Each field's slot in its kind's array, and how many float, int and span slots."""
    slots = np.zeros(len(kinds), dtype=np.int64)
    counts = [0, 0, 0]
    for j, kind in enumerate(kinds):
        group = 0 if kind in FLOAT_KINDS else 1 if kind == KIND_VARINT else 2
        slots[j] = counts[group]
        counts[group] += 1
    return slots, (counts[0], counts[1], counts[2])


def split_records(out: np.ndarray, bounds: np.ndarray) -> list[bytes]:
    """The encoded records as bytes objects (what a Kafka producer takes)."""
    raw = out.tobytes()
    edges = bounds.tolist()
    # slices made by C-level map calls: no Python frame per record (~2x the list comprehension)
    return list(map(raw.__getitem__, map(slice, edges[:-1], edges[1:])))


@numba.njit(cache=True, nogil=True)
def walk_records(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    kinds: np.ndarray,
    null_branch: np.ndarray,
    slots: np.ndarray,
    floats: np.ndarray,
    ints: np.ndarray,
    spans: np.ndarray,
    present: np.ndarray,
    ok: np.ndarray,
) -> None:  # pragma: no cover - compiled; tested through its callers
    """Decode the records buf[starts[i]:ends[i]] into the columns.

    `null_branch[j]` is -1 for a plain field, else the union index that is null. ok[i] is False
    as soon as record i breaks a rule (a union index other than 0/1, a read past its end, a
    malformed varint, a negative length, a string that is not UTF-8) or when the walk does not
    end exactly at its end; the caller decodes such records another way (and learns the precise
    error there)."""
    for i in range(starts.size):
        pos, end = starts[i], ends[i]
        for j in range(kinds.size):
            kind, slot = kinds[j], slots[j]
            pos, here = _read_branch(buf, pos, end, null_branch[j])
            if pos < 0:
                break
            present[j, i] = here
            if not here:
                continue
            if kind == KIND_DOUBLE:  # most fields: read in place, no dispatch
                if pos + 8 > end:
                    pos = -1
                    break
                floats[slot, i] = _little_endian_float(buf, pos, 8)
                pos += 8
                continue
            pos, number, integer = _read_value(buf, pos, end, kind)
            if pos < 0:
                break
            if kind == KIND_VARINT:
                ints[slot, i] = integer
            elif kind in SPAN_KINDS:
                spans[slot, 0, i] = pos - integer
                spans[slot, 1, i] = integer
            else:
                floats[slot, i] = number
        ok[i] = pos == end


@numba.njit(cache=True, nogil=True)
def walk_features(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    header: np.ndarray,
    kinds: np.ndarray,
    null_branch: np.ndarray,
    feature_column: np.ndarray,
    features: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled; tested through its callers
    """The scorer's one pass: for each framed value buf[starts[i]:ends[i]], check it begins
    with `header` (magic byte and writer schema id), walk its Avro body as `walk_records` would,
    and write the numeric fields with feature_column[j] >= 0 straight into features[i, column]
    as float32 (through float64, as the column path converts them).

    Returns ok[i]: the value is framed with `header`, its body decodes cleanly and every feature
    is present and finite. Nothing else is decided here: the caller sends the other values down
    the general path, which finds the reason."""
    ok = np.zeros(starts.size, dtype=np.bool_)
    width = header.size
    for i in range(starts.size):
        pos, end = starts[i], ends[i]
        if end - pos < width:
            continue
        framed = True
        for k in range(width):
            framed = framed and buf[pos + k] == header[k]
        if not framed:
            continue
        pos += width
        for j in range(kinds.size):
            column = feature_column[j]
            pos, here = _read_branch(buf, pos, end, null_branch[j])
            if pos < 0 or (column >= 0 and not here):
                pos = -1
                break
            if not here:
                continue
            kind = kinds[j]
            if kind == KIND_DOUBLE:  # most fields: read in place, no dispatch
                if pos + 8 > end:
                    pos = -1
                    break
                number = _little_endian_float(buf, pos, 8)
                pos += 8
            else:
                pos, number, integer = _read_value(buf, pos, end, kind)
            # A malformed value (pos -1) also just continues: the next _read_branch passes -1 on
            # and the record ends not ok. Breaking here instead measured 2.5x slower (numba
            # 0.6x: the loop no longer compiles as tightly).
            if pos < 0 or column < 0:
                continue
            if kind == KIND_VARINT:
                number = np.float64(integer)
            if not np.isfinite(number):
                pos = -1
                break
            features[i, column] = np.float32(number)
        ok[i] = pos == end
    return ok


@numba.njit(cache=True, nogil=True, inline="always")
def _read_branch(  # pragma: no cover - compiled
    buf: np.ndarray, pos: int, end: int, null_branch: int
) -> tuple[int, bool]:
    """(position after a field's union index, whether the value is there); position -1 when
    the index is not 0 or 1. A plain field (null_branch -1) is always there."""
    if pos < 0:  # the previous value was malformed (walk_features carries -1 on)
        return -1, False
    if null_branch < 0:
        return pos, True
    if pos >= end or (buf[pos] != 0 and buf[pos] != 2):
        return -1, False
    return pos + 1, buf[pos] != 2 * null_branch


@numba.njit(cache=True, nogil=True, inline="always")
def _read_value(  # pragma: no cover - compiled
    buf: np.ndarray, pos: int, end: int, kind: int
) -> tuple[int, float, int]:
    """One value of `kind` at pos: (next position or -1 when malformed, the number for the
    float kinds and boolean, the integer for varints or the length for string/bytes, which end
    at the next position)."""
    if kind in (KIND_DOUBLE, KIND_FLOAT):
        width = 8 if kind == KIND_DOUBLE else 4
        if pos + width > end:
            return -1, 0.0, 0
        number = _little_endian_float(buf, pos, width)
        return pos + width, number, 0
    if kind == KIND_BOOLEAN:
        if pos >= end or buf[pos] > 1:
            return -1, 0.0, 0
        return pos + 1, np.float64(buf[pos]), 0
    value = np.uint64(0)
    shift = np.uint64(0)
    done = False
    while pos < end and shift < 70:
        byte = buf[pos]
        pos += 1
        value |= np.uint64(byte & 0x7F) << shift
        shift += np.uint64(7)
        if byte < 0x80:
            done = True
            break
    if not done:
        return -1, 0.0, 0
    signed = int(np.int64(value >> np.uint64(1)) ^ -np.int64(value & np.uint64(1)))
    if kind == KIND_VARINT:
        return pos, 0.0, signed
    if signed < 0 or signed > end - pos:
        return -1, 0.0, 0
    if kind == KIND_STRING and not _utf8(buf, pos, pos + signed):
        return -1, 0.0, 0
    return pos + signed, 0.0, signed


@numba.njit(cache=True, nogil=True, inline="always")
def _little_endian_float(buf: np.ndarray, pos: int, width: int) -> float:  # pragma: no cover
    """The IEEE double (width 8) or float (4) stored little-endian at buf[pos:]."""
    bits = np.uint64(0)
    for k in range(width):
        bits |= np.uint64(buf[pos + k]) << np.uint64(8 * k)
    # np.uint64(...) around the accumulator: numba only views a value it knows as a numpy scalar.
    if width == 8:
        return np.uint64(bits).view(np.float64)
    return np.float64(np.uint32(bits).view(np.float32))


@numba.njit(cache=True, nogil=True, inline="always")
def _utf8(buf: np.ndarray, start: int, end: int) -> bool:  # pragma: no cover - compiled
    """Well-formed UTF-8 (Unicode's table 3-7: no overlongs, surrogates or code points past
    U+10FFFF), the rule Python's strict decoder applies; ASCII costs one compare a byte."""
    p = start
    while p < end:
        c = buf[p]
        if c < 0x80:
            p += 1
            continue
        if c < 0xC2 or c > 0xF4:
            return False
        if c < 0xE0:
            n, low, high = 1, 0x80, 0xBF
        elif c < 0xF0:
            n = 2
            low = 0xA0 if c == 0xE0 else 0x80
            high = 0x9F if c == 0xED else 0xBF
        else:
            n = 3
            low = 0x90 if c == 0xF0 else 0x80
            high = 0x8F if c == 0xF4 else 0xBF
        if p + n >= end:  # the sequence runs past the string
            return False
        if buf[p + 1] < low or buf[p + 1] > high:
            return False
        for k in range(2, n + 1):
            if buf[p + k] & 0xC0 != 0x80:
                return False
        p += n + 1
    return True


@numba.njit(cache=True, nogil=True)
def _varint_size(z: np.uint64) -> int:  # pragma: no cover - compiled
    size = 1
    while z >= 0x80:
        z >>= np.uint64(7)
        size += 1
    return size


@numba.njit(cache=True, nogil=True)
def _zigzag(v: np.int64) -> np.uint64:  # pragma: no cover - compiled
    return np.uint64((v << np.int64(1)) ^ (v >> np.int64(63)))


@numba.njit(cache=True, nogil=True)
def encode_records(
    header: np.ndarray,
    src: np.ndarray,
    tail: np.ndarray,
    kinds: np.ndarray,
    slots: np.ndarray,
    floats: np.ndarray,
    ints: np.ndarray,
    spans: np.ndarray,
    present: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled; tested through callers
    """Encode every row as `header` then each field as a null-first union (0x00 for null,
    0x02 and the value otherwise), the bytes fastavro writes for ksqlDB-style schemas.

    String/bytes values are copied from `src` at their spans; a span that starts at or past the
    end of `src` is in `tail`, as if appended to it (a constant such as the model version then
    costs no copy of a whole batch buffer). Returns the joined records and
    their bounds (records[i] = out[bounds[i]:bounds[i + 1]])."""
    n = present.shape[1]
    bounds = np.empty(n + 1, dtype=np.int64)
    bounds[0] = 0
    for i in range(n):  # first pass: sizes
        size = header.size
        for j in range(kinds.size):
            size += 1
            if not present[j, i]:
                continue
            kind, slot = kinds[j], slots[j]
            if kind == KIND_DOUBLE:
                size += 8
            elif kind == KIND_FLOAT:
                size += 4
            elif kind == KIND_BOOLEAN:
                size += 1
            elif kind == KIND_VARINT:
                size += _varint_size(_zigzag(ints[slot, i]))
            else:
                length = spans[slot, 1, i]
                size += _varint_size(_zigzag(length)) + length
        bounds[i + 1] = bounds[i] + size
    out = np.empty(bounds[n], dtype=np.uint8)
    scratch = np.zeros(1, dtype=np.float64)
    double_bits = scratch.view(np.uint64)
    scratch32 = np.zeros(1, dtype=np.float32)
    float_bits = scratch32.view(np.uint32)
    for i in range(n):  # second pass: bytes
        pos = bounds[i]
        out[pos : pos + header.size] = header
        pos += header.size
        for j in range(kinds.size):
            if not present[j, i]:
                out[pos] = 0
                pos += 1
                continue
            out[pos] = 2
            pos += 1
            kind, slot = kinds[j], slots[j]
            if kind in (KIND_DOUBLE, KIND_FLOAT):
                if kind == KIND_DOUBLE:
                    scratch[0] = floats[slot, i]
                    bits = double_bits[0]
                    width = 8
                else:
                    scratch32[0] = np.float32(floats[slot, i])
                    bits = np.uint64(float_bits[0])
                    width = 4
                for k in range(width):
                    out[pos + k] = np.uint8((bits >> np.uint64(8 * k)) & np.uint64(0xFF))
                pos += width
            elif kind == KIND_BOOLEAN:
                out[pos] = 1 if floats[slot, i] != 0 else 0
                pos += 1
            else:
                if kind == KIND_VARINT:
                    z = _zigzag(ints[slot, i])
                else:
                    length = spans[slot, 1, i]
                    z = _zigzag(length)
                while z >= 0x80:
                    out[pos] = np.uint8((z & np.uint64(0x7F)) | np.uint64(0x80))
                    z >>= np.uint64(7)
                    pos += 1
                out[pos] = np.uint8(z)
                pos += 1
                if kind in SPAN_KINDS:
                    start = spans[slot, 0, i]
                    if start >= src.size:
                        start -= src.size
                        out[pos : pos + length] = tail[start : start + length]
                    else:
                        out[pos : pos + length] = src[start : start + length]
                    pos += length
    return out, bounds
