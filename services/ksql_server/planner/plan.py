"""Logical planning of a SELECT: resolve the source, type every expression, decide the key.

The result (`QueryPlan`) is what the runtime executes: a source with its deserializers' column
lists, a compiled batch function (filter + projection), and which projected columns form the
sink's key (from the source key or PARTITION BY) and which its value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError, UnsupportedError
from services.ksql_server.expressions import (
    Compiled,
    ExpressionCompiler,
    Scope,
    build_batch_function,
)
from services.ksql_server.metastore import DataSource, MetaStore
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.naming import expr_text, natural_name
from services.ksql_server.types import ColumnDef, SqlType

PSEUDO_COLUMNS: list[ColumnDef] = [
    ("ROWTIME", T.BIGINT),
    ("ROWPARTITION", T.INTEGER),
    ("ROWOFFSET", T.BIGINT),
]


@dataclass
class QueryPlan:
    source: DataSource
    select: A.Select
    output: list[ColumnDef]  # every projected column, in order
    key_indexes: list[int]  # positions in `output` forming the sink key
    value_indexes: list[int]
    batch: Callable[..., list[tuple[Any, tuple[Any, ...]]]]
    partition_by: bool = False
    keyless_partition: bool = False
    row_columns: list[ColumnDef] = field(default_factory=list)
    key_batch: Callable[..., list[tuple[Any, tuple[Any, ...]]]] | None = None
    """PARTITION BY only: the key expressions alone, for null-valued records."""
    key_value_dependent: list[bool] = field(default_factory=list)
    """PARTITION BY only: whether each key expression reads a value column (then it is null
    for a null-valued record, as in ksqlDB)."""
    join: Any = None
    """A join's `planner.join.JoinPlan` (then `source` is the joined schema)."""
    stateful: Any = None
    """A stateful query's own plan (planner/aggregate.py, …): the runtime runs the operator
    registered for its type (runtime/stateful.py) instead of `batch`."""

    @property
    def key_columns(self) -> list[ColumnDef]:
        return [self.output[i] for i in self.key_indexes]

    @property
    def value_columns(self) -> list[ColumnDef]:
        return [self.output[i] for i in self.value_indexes]


def _implicit_sink_casts(
    items: list[tuple[str, A.Expr, Compiled]],
    select: A.Select,
    metastore: MetaStore,
    sink_name: str | None,
    compiler: ExpressionCompiler,
) -> list[tuple[str, A.Expr, Compiled]]:
    """Into an existing sink, each select item takes its column's type where ksqlDB casts
    implicitly (ksqlDB matches them by position, and leaves a `*` projection alone)."""
    sink = metastore.get(sink_name) if sink_name else None
    if sink is None or any(item.expr is None for item in select.items):
        return items
    types = [t for _, t in sink.columns]
    return [
        (n, e, compiler.implicit_cast(c, types[i]) if i < len(types) else c)
        for i, (n, e, c) in enumerate(items)
    ]


def source_scope(source: DataSource, alias: str | None) -> Scope:
    """Row layout the runtime builds from a record: keys, values, then pseudo columns."""
    from services.ksql_server.planner.windowing import source_columns

    return Scope(source_columns(source) + PSEUDO_COLUMNS, [source.name, alias or ""])


SYSTEM_COLUMNS = ("ROWTIME", "ROWPARTITION", "ROWOFFSET", "WINDOWSTART", "WINDOWEND")
"""ksqlDB's system columns: a persistent query may read them but not name a column after them."""


def check_reserved_select(select: A.Select) -> None:
    """ksqlDB's analyzer (before any join, GROUP BY or window rule): a persistent query's
    projection may not produce a column named like a system column, whether by alias
    (`l.ROWTIME AS ROWTIME`) or by selecting it bare (`SELECT ROWTIME`, `WINDOWSTART`). In a
    join an unaliased qualified column is named `<source>_<column>` (`S.ROWTIME` → `S_ROWTIME`),
    which is no system column."""
    for item in select.items:
        if item.expr is None:
            continue
        qualified = isinstance(item.expr, A.ColumnRef) and item.expr.source is not None
        if select.joins and qualified and item.alias is None:
            continue
        name = item.alias or natural_name(item.expr)
        if name is not None and name.upper() in SYSTEM_COLUMNS:
            raise KsqlError(
                f"Reserved column name in select: `{name.upper()}`. "
                "Please remove or alias the column."
            )


def plan_select(
    select: A.Select,
    metastore: MetaStore,
    persistent: bool,
    sink_name: str | None = None,
    new_planner: bool = False,
    into_existing: bool = False,
) -> QueryPlan:
    """The plan of a SELECT; `into_existing`: INSERT INTO `sink_name`, whose column types the
    projection takes where ksqlDB casts implicitly."""
    if persistent:
        check_reserved_select(select)
    if select.joins and not select.unsupported:
        from services.ksql_server.planner.join import plan_join

        return plan_join(select, metastore, persistent, sink_name, new_planner).plan
    if select.unsupported:  # parsed but not run (SELECT DISTINCT)
        raise UnsupportedError(select.unsupported)
    source = metastore.get(select.source.name)
    if source is None:
        raise KsqlError(
            f"Exception while preparing statement: {select.source.name} does not exist."
        )
    scope = source_scope(source, select.source.alias)
    from services.ksql_server.planner import aggregate as G

    if G.is_aggregate_query(select):
        return _aggregate_plan(select, source, scope, sink_name, persistent)
    if select.window is not None or select.emit_final:  # windows: aggregations only
        raise UnsupportedError("WINDOW" if select.window is not None else "EMIT FINAL")
    compiler = ExpressionCompiler(scope)
    if persistent:
        scope.clause = "PARTITION BY"
        for e in select.partition_by:
            compiler.compile(e)
        scope.clause = "SELECT"

    items: list[tuple[str, A.Expr, Compiled]] = []
    used: set[str] = set()
    generated = 0
    star_partition = (
        persistent
        and bool(select.partition_by)
        and not (
            len(select.partition_by) == 1
            and isinstance(select.partition_by[0], A.Literal)
            and select.partition_by[0].value is None
        )
    )
    for item in select.items:
        if item.expr is None:
            if item.star_source and item.star_source not in (source.name, select.source.alias):
                raise KsqlError(f"'{item.star_source}' is not a valid stream/table name or alias.")
            if star_partition:
                # PARTITION BY with `*`: the partitioning expressions become the key (first),
                # then the value columns, then the old key columns.
                part_cols = {e.name for e in select.partition_by if isinstance(e, A.ColumnRef)}
                for e in select.partition_by:
                    name = natural_name(e)
                    if name is None:
                        name = f"KSQL_COL_{generated}"
                        generated += 1
                    scope.clause = "PARTITION BY"
                    items.append((name, e, compiler.compile(e)))
                    scope.clause = "SELECT"
                star_cols = [
                    c for c in source.value_columns + source.key_columns if c[0] not in part_cols
                ]
            else:  # a push query shows a windowed source's bounds (a sink has them in its key)
                star_cols = source.columns if persistent else scope.columns[: -len(PSEUDO_COLUMNS)]
            for name, _typ in star_cols:
                ref = A.ColumnRef(name)
                items.append((name, ref, compiler.compile(ref)))
            continue
        compiled = compiler.compile_clause(item.expr, "SELECT")
        name = item.alias or natural_name(item.expr)
        if name is None:
            while f"KSQL_COL_{generated}" in used or any(
                f"KSQL_COL_{generated}" == c for c, _ in source.columns
            ):
                generated += 1
            name = f"KSQL_COL_{generated}"
            generated += 1
        items.append((name, item.expr, compiled))
    if into_existing:
        items = _implicit_sink_casts(items, select, metastore, sink_name, compiler)
    for name, _, _ in items:
        if name in used:
            raise KsqlError(
                f"Duplicate value columns found in schema: `{name}` "
                if persistent
                else f"Duplicate column name: {name}"
            )
        used.add(name)
    for name, _, c in items:
        if c.type is None:
            raise KsqlError(
                f"Can't infer a type of null. Please explicitly cast it to a required type, "
                f"e.g. CAST(null AS VARCHAR). (column {name})"
            )

    where = None
    if select.where is not None:
        where = compiler.compile_clause(select.where, "WHERE")

    output: list[ColumnDef] = [(n, c.type or T.STRING) for n, _, c in items]
    key_idx: list[int] = []
    keyless_partition = False
    if persistent:
        key_idx, keyless_partition = _sink_key(
            select, source, items, compiler, sink_name, new_planner
        )
    value_idx = [i for i in range(len(items)) if i not in key_idx]
    if persistent and not value_idx:
        raise KsqlError("The projection contains no value columns.")
    batch = build_batch_function(
        compiler, where, [c for _, _, c in items], [n for n, _, _ in items]
    )
    plan = QueryPlan(
        source,
        select,
        output,
        key_idx,
        value_idx,
        batch,
        partition_by=bool(select.partition_by) and not keyless_partition,
        keyless_partition=keyless_partition,
        row_columns=list(scope.columns),
    )
    if persistent and source.kind == "TABLE":
        from services.ksql_server.planner.table import plan_table_query

        plan.stateful = plan_table_query(plan)
    if plan.partition_by:
        key_names = {n for n, _ in source.key_columns}
        plan.key_batch = build_batch_function(
            compiler, None, [items[i][2] for i in key_idx], [items[i][0] for i in key_idx]
        )
        plan.key_value_dependent = [bool(_column_names(items[i][1]) - key_names) for i in key_idx]
    return plan


def _aggregate_plan(
    select: A.Select, source: DataSource, scope: Scope, sink_name: str | None, persistent: bool
) -> QueryPlan:
    """A GROUP BY query: planner/aggregate.py plans it, the runtime's operator runs it."""
    from services.ksql_server.planner.aggregate import plan_aggregation
    from services.ksql_server.planner.windowing import check_window_bounds, check_windowed

    check_window_bounds(select, source.window is not None, persistent)
    agg, output, key_idx, value_idx = plan_aggregation(select, source, scope, sink_name, persistent)
    check_windowed(agg, select.emit_final, source.value_format.name)
    return QueryPlan(
        source,
        select,
        output,
        key_idx,
        value_idx,
        agg.post,
        row_columns=list(scope.columns),
        stateful=agg,
    )


def _column_names(e: A.Expr) -> set[str]:
    """Every column an expression reads."""
    import dataclasses

    if isinstance(e, A.ColumnRef):
        return {e.name, e.source or ""} - {""}
    out: set[str] = set()
    if not dataclasses.is_dataclass(e):
        return out
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        vals = v if isinstance(v, tuple) else (v,)
        for x in vals:
            if isinstance(x, A.Expr):
                out |= _column_names(x)
            elif isinstance(x, tuple):
                for y in x:
                    if isinstance(y, A.Expr):
                        out |= _column_names(y)
    return out


def check_pull_columns(select: A.Select) -> None:
    """ksqlDB's pull queries refuse ROWPARTITION/ROWOFFSET."""
    banned = ("ROWPARTITION", "ROWOFFSET")
    for clause, exprs in (
        ("SELECT", [i.expr for i in select.items if i.expr is not None]),
        ("WHERE", [select.where] if select.where is not None else []),
    ):
        used = set()
        for e in exprs:
            used |= _column_names(e)
        bad = [c for c in banned if c in used]
        if bad:
            raise KsqlError(
                f"Pull queries don't support the following columns in {clause} clauses: "
                + ", ".join(f"`{c}`" for c in bad)
            )


def _sink_key(
    select: A.Select,
    source: DataSource,
    items: list[tuple[str, A.Expr, Compiled]],
    compiler: ExpressionCompiler,
    sink_name: str | None,
    new_planner: bool = False,
) -> tuple[list[int], bool]:
    """Which projected columns become the sink key, with ksqlDB's projection rules."""
    sink = sink_name or "OUTPUT"
    if select.partition_by:
        exprs = select.partition_by
        nulls = [e for e in exprs if isinstance(e, A.Literal) and e.value is None]
        if nulls and len(exprs) > 1:
            raise KsqlError("Cannot PARTITION BY multiple columns including NULL")
        if nulls:
            return [], True
        key_idx: list[int] = []
        missing: list[A.Expr] = []
        compiler.scope.clause = "PARTITION BY"
        for e in exprs:
            compiled = compiler.compile(e)
            if compiled.type is None:
                raise KsqlError("Can't partition by a NULL")
            match = [i for i, (_n, ie, _c) in enumerate(items) if ie == e or _same_col(ie, e)]
            if not match:
                missing.append(e)
                continue
            key_idx.append(match[0])
        compiler.scope.clause = "SELECT"
        if missing:
            shown = [expr_text(qualify(e, source.name)) for e in exprs]
            if len(exprs) == 1:
                what = f"partitioning expression {shown[0]}"
            else:
                what = "partitioning expressions " + ", ".join(shown[:-1]) + " and " + shown[-1]
            raise KsqlError(
                f"Key missing from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.\n"
                f"The query used to build `{sink}` must include the {what} in its projection "
                f"(eg, SELECT {', '.join(shown)}...)."
            )
        for i in key_idx:
            kname = items[i][0]
            dup = [j for j, (_n, ie, _c) in enumerate(items) if j != i and ie == items[i][1]]
            if dup:
                names_text = " and ".join(items[j][0] for j in sorted([i, *dup]))
                raise KsqlError(
                    f"The projection contains a key column (`{kname}`) more than once, aliased "
                    f"as: {names_text}.\nEach key column must only be in the projection once. If "
                    "you intended to copy the key into the value, then consider using the AS_VALUE "
                    "function to indicate which key reference should be copied."
                )
        return key_idx, False
    key_idx = []
    missing_keys = [
        k
        for k, _ in source.key_columns
        if not any(_same_col(ie, A.ColumnRef(k)) for _n, ie, _c in items)
    ]
    if missing_keys and new_planner:
        # ksqlDB's new planner drops a key column missing_keys from the projection (keyless sink)
        return [], False
    if missing_keys:
        names = [k for k, _ in source.key_columns]
        if len(names) == 1:
            what, eg = f"key column {names[0]}", names[0]
        else:
            what = "key columns " + ", ".join(names[:-1]) + " and " + names[-1]
            eg = ", ".join(names)
        raise KsqlError(
            "Key missing_keys from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.\n"
            f"The query used to build `{sink}` must include the {what} in its projection "
            f"(eg, SELECT {eg}...)."
        )
    for kname, _ in source.key_columns:
        ref = A.ColumnRef(kname)
        match = [i for i, (_n, ie, _c) in enumerate(items) if _same_col(ie, ref)]
        if len(match) > 1:
            names_text = " and ".join(f"{items[i][0]}" for i in match)
            raise KsqlError(
                f"The projection contains a key column (`{kname}`) more than once, aliased as: "
                f"{names_text}.\nEach key column must only be in the projection once. If you "
                "intended to copy the key into the value, then consider using the AS_VALUE "
                "function to indicate which key reference should be copied."
            )
        key_idx.append(match[0])
    return sorted(key_idx) if new_planner else key_idx, False


def qualify(e: A.Expr, source: str) -> A.Expr:
    """The expression with every column reference qualified by the source name (for messages)."""
    return A.transform(
        e, lambda x: A.ColumnRef(x.name, x.source or source) if isinstance(x, A.ColumnRef) else None
    )


def _same_col(a: A.Expr, b: A.Expr) -> bool:
    return isinstance(a, A.ColumnRef) and isinstance(b, A.ColumnRef) and a.name == b.name


def column_types_text(columns: list[ColumnDef]) -> list[str]:
    return [str(t) for _, t in columns]


__all__ = ["PSEUDO_COLUMNS", "QueryPlan", "SqlType", "plan_select", "source_scope"]
