"""A batch of records held column-wise: the one form the compiled readers and writers share.

The Avro walker (`decoder`), the KSQL server's DELIMITED splitter and the column-wise Avro
encoders all hand batches over in this form, with one convention: each column has `present`
(False where the value is null), numbers in `values`, and string/bytes values as byte spans
(`starts`, `lengths`) of the batch's buffer. A column's `type` is its Avro primitive type name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPAN_TYPES = ("string", "bytes")


@dataclass
class Column:
    """One field over the batch: values (numeric) or byte spans (string/bytes)."""

    type: str
    """Avro primitive type: double, float, int, long, boolean, string, bytes."""
    present: np.ndarray
    """bool [n]: False where the value is null."""
    values: np.ndarray | None = None
    """numeric values (float64 / int64 / bool), meaningless where not present."""
    starts: np.ndarray | None = None
    lengths: np.ndarray | None = None

    def take(self, mask: np.ndarray) -> Column:
        """The rows where `mask` is true (or the rows `mask` indexes), in order."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[mask]

        return Column(
            self.type, self.present[mask], pick(self.values), pick(self.starts), pick(self.lengths)
        )

    def to_list(self, buf: np.ndarray) -> list[Any]:
        """The column as Python values (None for null), as fastavro would give them."""
        if self.values is not None:
            return [
                v if p else None
                for v, p in zip(self.values.tolist(), self.present.tolist(), strict=True)
            ]
        assert self.starts is not None and self.lengths is not None
        raw = buf.tobytes()
        text = self.type == "string"
        return [
            (raw[s : s + n].decode("utf-8") if text else raw[s : s + n]) if p else None
            for p, s, n in zip(
                self.present.tolist(), self.starts.tolist(), self.lengths.tolist(), strict=True
            )
        ]

    def value(self, buf: np.ndarray, i: int) -> Any:
        """Row i as a Python value (None for null)."""
        if not self.present[i]:
            return None
        if self.values is not None:
            return self.values[i].item()
        assert self.starts is not None and self.lengths is not None
        start = int(self.starts[i])
        raw = buf[start : start + int(self.lengths[i])].tobytes()
        return raw.decode("utf-8") if self.type == "string" else raw


@dataclass
class ColumnBatch:
    """The columns of a batch, the buffer their spans point into, and which rows are whole."""

    buf: np.ndarray
    columns: list[Column]
    names: Sequence[str] = ()
    """each column's field name (empty where the columns are known by position only)"""
    ok: np.ndarray = field(default_factory=lambda: np.ones(0, np.bool_))
    """bool [n]: the row was read completely (a walker reports False for a record it could
    not read, which is then read another way); left out: every row."""
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {name: j for j, name in enumerate(self.names)}
        if not self.ok.size and self.size:
            self.ok = np.ones(self.size, np.bool_)

    @property
    def size(self) -> int:
        return len(self.columns[0].present) if self.columns else 0

    def column(self, name: str) -> Column | None:
        j = self._index.get(name)
        return None if j is None else self.columns[j]

    def take(self, mask: np.ndarray) -> ColumnBatch:
        """The records where `mask` is true (a filter), in order."""
        columns = [c.take(mask) for c in self.columns]
        return ColumnBatch(self.buf, columns, self.names, self.ok[mask])

    def column_values(self, index: int) -> list[Any]:
        """Column `index` as Python values (None for null)."""
        return self.columns[index].to_list(self.buf)

    def numeric(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(values as float64, present) of a numeric field, or None if not numeric/absent."""
        col = self.column(name)
        if col is None or col.values is None:
            return None
        return col.values.astype(np.float64, copy=False), col.present

    def record(self, i: int, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """Record i as fastavro would return it, or only `fields` of it (the few rows that
        alert need five fields, not 34)."""
        names = self.names if fields is None else [f for f in fields if f in self._index]
        return {name: self.columns[self._index[name]].value(self.buf, i) for name in names}
