"""Tables at run time: materialising a table source, queries over tables, and reading tables.

- `SourceTable` materialises the query's source table in a state store (key columns → value
  columns) and turns each consumed row into a `Change` (key, old value row, new value row):
  an upsert, or a delete for a tombstone. Records with a null key are dropped (ksqlDB logs and
  skips them). Aggregations over tables (runtime/aggregate.py) and joins read their changes.
- `TableOperator` runs a CTAS (projection/filter) over a table: see planner/table.py.
- `TableView` is the read side other parts use (pull queries): `get`/`lookup` by key,
  `scan`/`entries` of every row (the latter two with each row's ROWTIME), over whichever store
  a query keeps; `find_view` finds the view of the query that writes a table. A source table's
  store keeps each row's record timestamp (`put(…, timestamp=)`) for that ROWTIME.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from services.ksql_server.formats.serdes import coercer
from services.ksql_server.metastore import DataSource
from services.ksql_server.planner.table import MaterializePlan, TableQueryPlan
from services.ksql_server.planner.windowing import key_width
from services.ksql_server.runtime.processor import BatchProcessor, OutRecord, ProcessingLog
from services.ksql_server.runtime.stateful import register_operator
from services.ksql_server.state import KeyValueStore, QueryStores
from services.ksql_server.types import ColumnDef, SqlType


@dataclass
class Change:
    """One update of a table: the key, the row before (None: absent) and after (None: deleted).
    Rows are full source rows (keys, values, ROWTIME, ROWPARTITION, ROWOFFSET)."""

    key: tuple[Any, ...]
    old: list[Any] | None
    new: list[Any] | None
    record: list[Any]
    """the consumed row (for the record's timestamp, partition and offset)"""


def reviver(columns: Sequence[ColumnDef]) -> Callable[[Any], Any]:
    """Values read back from a changelog (JSON) as the columns' engine values."""
    convert = [coercer(t) for _n, t in columns]

    def revive(values: Any) -> Any:
        return [None if v is None else c(v) for c, v in zip(convert, values, strict=False)]

    return revive


class SourceTable:
    """The query's source table in its store (see the module docstring)."""

    def __init__(self, source: DataSource, store: KeyValueStore, processor: BatchProcessor) -> None:
        self.source = source
        self.store = store
        self.processor = processor
        self.n_keys = key_width(source)  # a windowed table's key: its window too
        self.n_values = len(source.value_columns)
        store.revive = reviver(source.value_columns)

    def changes(self, rows: list[list[Any]]) -> Iterator[Change]:
        """Apply each row to the store, in order; yields what changed."""
        tombstones, null_keys = self.processor.tombstones, self.processor.null_keys
        n_keys, n_values = self.n_keys, self.n_values
        for row in rows:
            if id(row) in null_keys:
                continue
            key = tuple(row[:n_keys])
            old_values = self.store.get(key)
            meta = row[n_keys + n_values :]
            old = None if old_values is None else [*key, *old_values, *meta]
            if id(row) in tombstones:
                self.store.delete(key)
                yield Change(key, old, None, row)
                continue
            ts = meta[0] if meta else None  # the record's ROWTIME: the row's, for pull queries
            self.store.put(key, row[n_keys : n_keys + n_values], timestamp=ts)
            yield Change(key, old, row, row)


class TableOperator:
    """A persistent query projecting/filtering a table (planner/table.py)."""

    def __init__(
        self,
        spec: TableQueryPlan,
        processor: BatchProcessor,
        stores: QueryStores,
        plog: ProcessingLog,
        query_id: str,
    ) -> None:
        self.spec = spec
        self.processor = processor
        self.plan = processor.plan
        self.source = SourceTable(self.plan.source, stores.store(spec.store_name), processor)

    def _evaluate(self, row: list[Any] | None) -> tuple[Any, ...] | None:
        if row is None:
            return None
        out = self.plan.batch([row], self._log)
        return out[0][1] if out else None

    def _log(self, _row: Any, column: str, exc: BaseException) -> None:
        self.processor.plog(
            self.processor.query_id,
            "Project" if column != "WHERE" else "Filter",
            f"Error computing expression {column}: {exc}",
            None,
            code="expression",
        )

    def process(self, rows: list[list[Any]]) -> list[OutRecord]:
        results: list[tuple[Any, tuple[Any, ...] | None]] = []
        for change in self.source.changes(rows):
            new = self._evaluate(change.new)
            if new is None and self.spec.has_where and self._evaluate(change.old) is None:
                continue  # neither before nor after in the output: nothing to delete
            results.append((change.record, new))
        return self.processor.serialize(results)

    def view(self) -> TableView:
        """The output table: the source rows through the projection and the filter."""
        n_keys = len(self.plan.source.key_columns)
        key_idx = self.plan.key_indexes
        value_idx = self.plan.value_indexes

        def project(key: tuple[Any, ...], values: Any) -> tuple[Any, ...] | None:
            out = self._evaluate([*key, *values, None, None, None])
            return None if out is None else tuple(out[i] for i in value_idx)

        return TableView(
            self.source.store,
            self.plan.key_columns,
            self.plan.value_columns,
            project if (n_keys and key_idx) else None,
        )


class MaterializeOperator:
    """A source table kept in its store and nothing else (planner/table.py's MaterializePlan)."""

    def __init__(
        self,
        spec: MaterializePlan,
        processor: BatchProcessor,
        stores: QueryStores,
        plog: ProcessingLog,
        query_id: str,
    ) -> None:
        self.plan = processor.plan
        self.source = SourceTable(self.plan.source, stores.store(spec.store_name), processor)

    def process(self, rows: list[list[Any]]) -> list[OutRecord]:
        for _change in self.source.changes(rows):
            pass
        return []

    def view(self) -> TableView:
        src = self.plan.source
        return TableView(self.source.store, src.key_columns, src.value_columns)


Rowtime = Callable[[tuple[Any, ...], Any], int | None]
"""(key, stored entry) → the row's ROWTIME"""


class TableView:
    """Read access to a materialised table: `get(key)` and `scan()` return value columns
    (tuples), keys are tuples of the key columns; `lookup(key)` and `entries()` add each row's
    ROWTIME (the timestamp of the record that last updated it, as ksqlDB's pull queries show
    it). `project` turns a stored entry into the table's value row (None: the row is not in the
    table); without it the stored value is the row. `rowtime` reads the ROWTIME of a stored
    entry; without it, the timestamp the entry was put with (`KeyValueStore.timestamp`). Reads
    copy under the store's lock, so another thread may read while the query runs."""

    def __init__(
        self,
        store: KeyValueStore,
        key_columns: list[ColumnDef],
        value_columns: list[ColumnDef],
        project: Callable[[tuple[Any, ...], Any], tuple[Any, ...] | None] | None = None,
        rowtime: Rowtime | None = None,
    ) -> None:
        self.store = store
        self.key_columns = key_columns
        self.value_columns = value_columns
        self._project = project
        self._rowtime: Rowtime = rowtime or (lambda key, _stored: store.timestamp(key))
        self._complex_keys = any(t.base in _NESTED for _n, t in key_columns)

    def get(self, key: Sequence[Any]) -> tuple[Any, ...] | None:
        entry = self.lookup(key)
        return None if entry is None else entry[0]

    def scan(self) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
        return [(k, values) for k, values, _t in self.entries()]

    def lookup(self, key: Sequence[Any]) -> tuple[tuple[Any, ...], int | None] | None:
        """(value columns, ROWTIME) of `key`, None when the table has no such row."""
        k = tuple(key)
        stored = self.store.get(k)
        if stored is None:
            return None
        row = self._row(k, stored)
        return None if row is None else (row, self._rowtime(k, stored))

    def entries(self) -> list[tuple[tuple[Any, ...], tuple[Any, ...], int | None]]:
        """Every row as (key, value columns, ROWTIME), in the store's order."""
        out = []
        for k, stored in self.store.items():
            row = self._row(k, stored)
            if row is not None:
                key = self._engine_key(k) if self._complex_keys else k
                out.append((key, row, self._rowtime(k, stored)))
        return out

    def _engine_key(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        """A stored key as the engine's values: the store keeps ARRAY keys as tuples and
        STRUCT/MAP keys as tuples of (name, value) pairs, so that they hash."""
        types = [t for _n, t in self.key_columns]
        return tuple(_engine_value(v, t) for v, t in zip(key, types, strict=False))

    def _row(self, key: tuple[Any, ...], stored: Any) -> tuple[Any, ...] | None:
        if self._project is not None:
            return self._project(key, stored)
        return tuple(stored)


_NESTED = ("ARRAY", "MAP", "STRUCT")


def _engine_value(value: Any, typ: SqlType | None) -> Any:
    """One stored (hashable) key value back as the engine's value of type `typ`."""
    if value is None or typ is None or typ.base not in _NESTED:
        return value
    if typ.base == "ARRAY":
        return [_engine_value(v, typ.item) for v in value]
    if typ.base == "MAP":
        return {k: _engine_value(v, typ.item) for k, v in value}
    fields = dict(typ.fields or ())
    return {k: _engine_value(v, fields.get(k)) for k, v in value}


def find_view(queries: Any, table: str) -> TableView | None:
    """The view of the running query that writes `table` (None: not materialised here)."""
    for q in queries:
        operator = getattr(q, "operator", None)
        if q.sink.name == table and operator is not None and hasattr(operator, "view"):
            view: TableView = operator.view()
            return view
    return None


register_operator(TableQueryPlan, TableOperator)
register_operator(MaterializePlan, MaterializeOperator)

__all__ = [
    "Change",
    "MaterializeOperator",
    "SourceTable",
    "TableOperator",
    "TableView",
    "find_view",
    "reviver",
]
