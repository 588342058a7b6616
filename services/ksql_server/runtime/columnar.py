"""The column-wise path of a persistent query: a consumed batch decoded into typed columns,
filtered with one mask, projected by picking columns, and encoded into sink records at once.

It serves the plain shape of the pipeline's preprocessing query — a projection of source
columns, at most a `col IS [NOT] NULL` filter, no key or one KAFKA STRING key copied unchanged
(its bytes pass through), no timestamp columns, a format pair with column-wise codecs
(DELIMITED → AVRO today). Anything else, and any batch the column-wise
decoder declines, runs the exact row path (`BatchProcessor.rows/evaluate/serialize`), so the
results, the processing log and the null semantics are those of the row path.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from services.common.avro.columns import ColumnBatch
from services.ksql_server.planner.plan import QueryPlan

_SECOND = operator.itemgetter(1)
_NULL_TEST = re.compile(r"^(\(*)\(r\[(\d+)\]\) is (not )?None(\)*)$")


ColumnarOutput = tuple[list[bytes], list[int], list[bytes | None]]
"""Sink values, their timestamps and their keys, in order."""


@dataclass
class ColumnarPlan:
    decode: Callable[[list[bytes | None]], ColumnBatch | None]
    encode: Callable[[ColumnBatch, Sequence[int]], list[bytes]]
    indexes: list[int]
    """the source value column of each sink value column"""
    null_test: tuple[int, bool] | None
    """WHERE `col IS NULL` (column, True) or `col IS NOT NULL` (column, False)"""
    pass_key: bool = False
    """the sink key is the source's KAFKA STRING key, copied as the bytes received"""

    @classmethod
    def build(
        cls,
        plan: QueryPlan,
        value_deser: Any,
        value_ser: Any,
        n_keys: int,
        has_timestamp_column: bool,
        string_key_passthrough: bool = False,
    ) -> ColumnarPlan | None:
        """The column-wise form of `plan`, or None when it has another shape.

        Rows are laid out keys first, then values, so with a key every value reference is
        shifted by `n_keys`. A key is only served when `string_key_passthrough` (KAFKA STRING in
        and out) and the sink key copies it unchanged."""
        decode = getattr(value_deser, "columns", None)
        encode = getattr(value_ser, "encode_columns", None)
        shape = getattr(plan.batch, "__columnar__", None)
        if decode is None or encode is None or shape is None:
            return None
        if has_timestamp_column or plan.partition_by:
            return None
        where, refs = shape
        key_refs = [refs[i] for i in plan.key_indexes]
        if n_keys and not (string_key_passthrough and n_keys == 1 and key_refs == [0]):
            return None
        if not n_keys and key_refs:
            return None
        n_values = len(plan.source.value_columns)
        value_refs = [refs[i] for i in plan.value_indexes]
        if any(ref is None or not n_keys <= ref < n_keys + n_values for ref in value_refs):
            return None
        null_test = None
        if where is not None or plan.select.where is not None:
            match = _NULL_TEST.match(where or "")
            if (
                match is None
                or len(match.group(1)) != len(match.group(4))
                or not n_keys <= int(match.group(2)) < n_keys + n_values
            ):
                return None
            null_test = (int(match.group(2)) - n_keys, match.group(3) is None)
        indexes = [ref - n_keys for ref in value_refs if ref is not None]
        return cls(decode, encode, indexes, null_test, pass_key=bool(n_keys))

    def run(self, messages: list[Any]) -> ColumnarOutput | None:
        """Sink values, timestamps and keys of a batch (error-free messages), or None when the
        column-wise decoder declines the batch (then the caller runs the row path)."""
        keys = self._keys(messages)
        if keys is None:
            return None
        # map over the C methods: no Python frame per record (this runs for every record)
        batch = self.decode(list(map(Message.value, messages)))
        if batch is None:
            return None
        timestamps: list[int] = list(map(_SECOND, map(Message.timestamp, messages)))
        if self.null_test is not None:
            column, keep_nulls = self.null_test
            present = batch.columns[column].present
            mask = ~present if keep_nulls else present
            if not mask.all():
                batch = batch.take(mask)
                kept = mask.tolist()
                timestamps = list(itertools.compress(timestamps, kept))
                keys = list(itertools.compress(keys, kept))
        return self.encode(batch, self.indexes), timestamps, keys

    def _keys(self, messages: list[Any]) -> list[bytes | None] | None:
        """The sink keys: none, or the source's STRING keys as received. A key that is not
        UTF-8 declines the batch, so the row path logs it exactly as it always does."""
        if not self.pass_key:
            return [None] * len(messages)
        keys: list[bytes | None] = list(map(Message.key, messages))
        if b"".join(filter(None, keys)).isascii():  # the usual case, checked in one C pass
            return keys
        try:
            for key in filter(None, keys):
                key.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return keys
