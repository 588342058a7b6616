"""Compiled Avro decoding for flat records: the scorer's hot path.

fastavro decodes one record per call (about 17 µs for the 34-field transaction record), which
caps a Python scorer near 60,000 records/s before the model even runs. The scoring stream's
records are flat: every field is a primitive or a `["null", primitive]` union, exactly what
ksqlDB writes. For such a schema one numba-compiled loop walks every record of a batch (a union
index byte, then a fixed-width value or a zig-zag varint; a string is a varint length and that
many bytes) and writes each field into a typed column: a few nanoseconds per field, no Python
object per record (`services.common.avro_flat.walk_records`).

Correctness rests on two checks made for every record: no read crosses the record's own end,
and the walk ends exactly at that end. A record that fails either (corrupt, truncated, an
unexpected union branch) is reported as not decoded, and the caller falls back to fastavro for
it, which also produces the precise error message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.avro_flat import (
    FLOAT_KINDS,
    KIND_BOOLEAN,
    KIND_VARINT,
    KINDS,
    encode_records,
    slots_of,
    walk_records,
)

PAD = 16
"""Zero bytes callers append to the joined buffer (kept for the framing reads in decode.py)."""


@dataclass(frozen=True)
class FieldPlan:
    """How to read one field: its primitive type and where null sits in its union (if any)."""

    name: str
    type: str
    null_branch: int | None
    """None: not a union; 0 or 1: the union branch index that is null."""


def plan_schema(schema: Any) -> list[FieldPlan] | None:
    """A plan for a flat record schema, or None when the schema needs the general decoder."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    plans: list[FieldPlan] = []
    for field in schema.get("fields", []):
        plan = _plan_field(field.get("name"), field.get("type"))
        if plan is None:
            return None
        plans.append(plan)
    return plans


def _primitive(typ: Any) -> str | None:
    if isinstance(typ, dict) and "logicalType" not in typ:
        typ = typ.get("type")
    return typ if isinstance(typ, str) and typ in KINDS else None


def _plan_field(name: Any, typ: Any) -> FieldPlan | None:
    if not isinstance(name, str):
        return None
    if isinstance(typ, list):
        if len(typ) != 2 or "null" not in typ:
            return None
        null_branch = typ.index("null")
        primitive = _primitive(typ[1 - null_branch])
        return None if primitive is None else FieldPlan(name, primitive, null_branch)
    primitive = _primitive(typ)
    return None if primitive is None else FieldPlan(name, primitive, None)


@dataclass
class Column:
    """One decoded field over the batch: values (numeric) or byte spans (string/bytes)."""

    plan: FieldPlan
    present: np.ndarray
    """bool [n]: False where the value is null."""
    values: np.ndarray | None = None
    """numeric values (float64 / int64 / bool), garbage where not present."""
    starts: np.ndarray | None = None
    lengths: np.ndarray | None = None


class ColumnarBatch:
    """The decoded columns of a batch, plus which records decoded cleanly."""

    def __init__(self, buf: np.ndarray, columns: dict[str, Column], ok: np.ndarray) -> None:
        self._buf = buf
        self.columns = columns
        self.ok = ok
        """bool [n]: the record was decoded by the fast path (others need fastavro)."""

    @property
    def buffer(self) -> np.ndarray:
        """The bytes the string columns' spans point into."""
        return self._buf

    def numeric(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(values as float64, present) of a numeric field, or None if not numeric/absent."""
        col = self.columns.get(name)
        if col is None or col.values is None:
            return None
        return col.values.astype(np.float64, copy=False), col.present

    def record(self, i: int, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """Record i as fastavro would return it, or only `fields` of it (the few rows that
        alert need five fields, not 34)."""
        names = self.columns if fields is None else [f for f in fields if f in self.columns]
        out: dict[str, Any] = {}
        for name in names:
            col = self.columns[name]
            if not col.present[i]:
                out[name] = None
            elif col.values is not None:
                out[name] = col.values[i].item()
            else:
                assert col.starts is not None and col.lengths is not None
                start = int(col.starts[i])
                raw = self._buf[start : start + int(col.lengths[i])].tobytes()
                out[name] = raw.decode() if col.plan.type == "string" else raw
        return out


def decode_columns(bodies: Sequence[bytes | memoryview], plans: list[FieldPlan]) -> ColumnarBatch:
    """Decode Avro bodies (no wire-format header) of one flat schema."""
    n = len(bodies)
    lengths = np.fromiter((len(b) for b in bodies), dtype=np.int64, count=n)
    ends = np.cumsum(lengths)
    buf = np.frombuffer(b"".join(bodies) + b"\x00" * PAD, dtype=np.uint8)
    return decode_columns_at(buf, ends - lengths, ends, plans)


def decode_columns_at(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, plans: list[FieldPlan]
) -> ColumnarBatch:
    """Decode the bodies found at buf[starts[i]:ends[i]]."""
    n = len(starts)
    kinds = np.array([KINDS[p.type] for p in plans], dtype=np.int8)
    nulls = np.array([-1 if p.null_branch is None else p.null_branch for p in plans], np.int8)
    slots, (n_floats, n_ints, n_spans) = slots_of(kinds.tolist())
    floats = np.empty((n_floats, n), dtype=np.float64)
    ints = np.empty((n_ints, n), dtype=np.int64)
    spans = np.empty((n_spans, 2, n), dtype=np.int64)
    present = np.empty((len(plans), n), dtype=np.bool_)
    ok = np.empty(n, dtype=np.bool_)
    walk_records(
        buf,
        starts.astype(np.int64, copy=False),
        ends.astype(np.int64, copy=False),
        kinds,
        nulls,
        slots,
        floats,
        ints,
        spans,
        present,
        ok,
    )
    columns: dict[str, Column] = {}
    for j, plan in enumerate(plans):
        kind, slot = int(kinds[j]), int(slots[j])
        if kind == KIND_BOOLEAN:
            columns[plan.name] = Column(plan, present[j], values=floats[slot] == 1.0)
        elif kind in FLOAT_KINDS:
            columns[plan.name] = Column(plan, present[j], values=floats[slot])
        elif kind == KIND_VARINT:
            columns[plan.name] = Column(plan, present[j], values=ints[slot])
        else:
            columns[plan.name] = Column(
                plan, present[j], starts=spans[slot, 0], lengths=spans[slot, 1]
            )
    return ColumnarBatch(buf, columns, ok)


def warm_up() -> None:
    """Load (or compile, the first time) the decoding and alert-encoding kernels now rather
    than in the first batch."""
    plans = [FieldPlan("x", "double", 0)]
    batch = decode_columns([b"\x02" + bytes(8)], plans)
    column = batch.columns["x"]
    assert column.values is not None
    encode_records(
        np.zeros(5, np.uint8),
        batch.buffer,
        np.array([KINDS["double"]], np.int8),
        np.zeros(1, np.int64),
        column.values.reshape(1, 1),
        np.zeros((0, 1), np.int64),
        np.zeros((0, 2, 1), np.int64),
        column.present.reshape(1, 1),
    )
