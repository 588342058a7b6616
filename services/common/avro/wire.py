"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the Avro body.

Our services, Confluent's serializers, ksqlDB and the project's KSQL server all read and write
this framing, so records move freely between them. This module holds the header, the
rejections a value can earn before its body is read (each with one stable code and one text),
and the batch form the compiled readers work on: every value of a consumed batch joined into
one buffer, each value's header read with numpy, no per-record Python beyond a length.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.common.errors import RecordRejected

if TYPE_CHECKING:  # numpy is imported by the batch functions below: a record-at-a-time reader
    import numpy as np  # (`fraudstream alerts`) starts faster without it

MAGIC_BYTE = 0
HEADER = struct.Struct(">BI")
"""magic byte, writer schema id"""
PAD = 16
"""Zero bytes after a joined batch, so its buffer is never empty (a batch of tombstones still
has a byte for `frame_values` to read headers from)."""
_PAD_BYTES = b"\x00" * PAD


class WireFormatError(RecordRejected):
    """A value that cannot be read as an Avro record; the code says which rule it broke."""

    @classmethod
    def null_record(cls) -> WireFormatError:
        """A tombstone (no value at all)."""
        return cls("record is null", code="null_record")

    @classmethod
    def too_short(cls) -> WireFormatError:
        return cls("value too short for the Confluent wire format", code="framing")

    @classmethod
    def bad_magic(cls, magic: int) -> WireFormatError:
        return cls(f"unknown magic byte {magic}", code="magic_byte")

    @classmethod
    def unknown_schema(cls, schema_id: int) -> WireFormatError:
        return cls(f"unknown schema id {schema_id}", code="schema_id")

    @classmethod
    def bad_body(cls, schema_id: int, exc: Exception) -> WireFormatError:
        return cls(f"cannot decode Avro body with schema {schema_id}: {exc}", code="avro")

    @classmethod
    def not_record(cls, schema_id: int) -> WireFormatError:
        return cls(f"schema {schema_id} does not describe a record", code="avro")


def header_of(schema_id: int) -> bytes:
    """The prefix of every value written with this schema id."""
    return HEADER.pack(MAGIC_BYTE, schema_id)


def split_header(value: bytes | None) -> tuple[int, memoryview]:
    """Return (schema id, Avro body) or raise WireFormatError."""
    if value is None:
        raise WireFormatError.null_record()
    if len(value) < HEADER.size:
        raise WireFormatError.too_short()
    magic, schema_id = HEADER.unpack_from(value)
    if magic != MAGIC_BYTE:
        raise WireFormatError.bad_magic(magic)
    return schema_id, memoryview(value)[HEADER.size :]


def join_values(
    values: Sequence[bytes | memoryview | None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A consumed batch as one buffer: (every value joined, then PAD zero bytes; each value's
    length, -1 for a tombstone; where each starts; where each ends). A tombstone occupies no
    bytes (start == end)."""
    import numpy as np

    n = len(values)
    try:
        lengths = np.fromiter(map(len, values), np.int64, count=n)  # type: ignore[arg-type]
        present: Sequence[bytes | memoryview | None] = values
    except TypeError:  # a tombstone (None) in the batch
        lengths = np.fromiter((-1 if v is None else len(v) for v in values), np.int64, n)
        present = [v for v in values if v is not None]
    sizes = np.maximum(lengths, 0)
    ends = np.cumsum(sizes)
    # the padding joins in with the values: no second copy of the batch to append it
    buf = np.frombuffer(b"".join([*present, _PAD_BYTES]), dtype=np.uint8)  # type: ignore[list-item]
    return buf, lengths, ends - sizes, ends


@dataclass
class Framing:
    """A joined batch and every value's header, read at once."""

    buf: np.ndarray
    """every value joined, then PAD zero bytes"""
    lengths: np.ndarray
    """int64 [n]: each value's length, -1 for a tombstone (None)"""
    starts: np.ndarray
    ends: np.ndarray
    magic: np.ndarray
    """uint8 [n]: first byte (meaningless where not `framed`)"""
    schema_ids: np.ndarray
    """uint32 [n]: the big-endian id after the magic byte (likewise)"""

    @property
    def framed(self) -> np.ndarray:
        """Long enough to hold the header."""
        return self.lengths >= HEADER.size

    @property
    def good(self) -> np.ndarray:
        """Framed and with the Confluent magic byte."""
        return self.framed & (self.magic == MAGIC_BYTE)

    def rejected(self) -> list[tuple[int, WireFormatError]]:
        """(index, why) of every value whose header alone rules it out."""
        import numpy as np

        out = [
            (
                int(i),
                WireFormatError.null_record()
                if self.lengths[i] < 0
                else WireFormatError.too_short(),
            )
            for i in np.flatnonzero(~self.framed)
        ]
        out += [
            (int(i), WireFormatError.bad_magic(int(self.magic[i])))
            for i in np.flatnonzero(self.framed & ~self.good)
        ]
        return out

    def by_schema(self) -> list[tuple[int, np.ndarray]]:
        """(schema id, indices) of the good values, grouped by writer schema id."""
        import numpy as np

        good = self.good
        return [
            (int(schema_id), np.flatnonzero(good & (self.schema_ids == schema_id)))
            for schema_id in np.unique(self.schema_ids[good])
        ]


def frame_values(values: Sequence[bytes | None]) -> Framing:
    """Join a consumed batch and read every header at once."""
    import numpy as np

    buf, lengths, starts, ends = join_values(values)
    head = buf[np.clip(starts[:, None] + np.arange(HEADER.size), 0, len(buf) - 1)]
    schema_ids = (head[:, 1:].astype(np.uint32) << np.array([24, 16, 8, 0], np.uint32)).sum(
        axis=1, dtype=np.uint32
    )
    return Framing(buf, lengths, starts, ends, head[:, 0], schema_ids)
