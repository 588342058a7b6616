"""Planning a GROUP BY (and HAVING) query: split it into what runs before and after the store.

ksqlDB compiles an aggregation into three steps, and so does this planner:

1. *pre-aggregation*, over each source row: the WHERE filter, the GROUP BY expressions (the
   group key) and the arguments of every aggregate call (one generated batch function);
2. the *aggregation* itself, per group key, in a state store (runtime/aggregate.py): each
   aggregate's accumulator folds the arguments in (`add`), or takes an old table row out (`undo`);
3. *post-aggregation*, over the "aggregate row" (group key columns `KSQL_GRP_i`, aggregate
   results `KSQL_AGG_i`, WINDOWSTART/WINDOWEND): HAVING and the projection (another batch
   function). The SELECT and HAVING expressions are rewritten for it: a sub-expression equal to
   a GROUP BY expression becomes its `KSQL_GRP_i`, an aggregate call its `KSQL_AGG_i`; a column
   left over is ksqlDB's "Non-aggregate SELECT expression(s) not part of GROUP BY".

The GROUP BY expressions become the sink's key columns (in GROUP BY order), named by the
projection that selects them; each must be selected (ksqlDB's "must include the grouping
expression"). Kafka-free and pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.expressions import Compiled, ExpressionCompiler, Scope
from services.ksql_server.expressions import build_batch_function as _batch
from services.ksql_server.functions.aggregates import (
    AGGREGATES,
    AggregateFunction,
    is_aggregate,
    resolve_aggregate,
)
from services.ksql_server.metastore import DataSource
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.naming import expr_text, natural_name
from services.ksql_server.types import ColumnDef

GRP = "KSQL_GRP_"
AGG = "KSQL_AGG_"
WINDOW_COLUMNS: list[ColumnDef] = [("WINDOWSTART", T.BIGINT), ("WINDOWEND", T.BIGINT)]


def _load_aggregates() -> None:
    from services.ksql_server.functions import aggregates_basic  # noqa: F401 - registers


@dataclass
class AggregateCall:
    """One aggregate of the query: its bound function and where its arguments sit in the
    pre-aggregation output (after the group key)."""

    function: AggregateFunction
    arg_slots: list[int]
    text: str


@dataclass
class AggregationPlan:
    """What runtime/aggregate.py runs (see the module docstring)."""

    source: DataSource
    group_types: list[T.SqlType]
    calls: list[AggregateCall]
    pre: Callable[..., list[tuple[Any, tuple[Any, ...]]]]
    """source rows → (row, (group key…, aggregate arguments…)), WHERE applied"""
    post: Callable[..., list[tuple[Any, tuple[Any, ...]]]]
    """aggregate rows → (row, projected values), HAVING applied"""
    has_having: bool
    window: A.WindowSpec | None = None
    table_source: bool = False
    store_name: str = "Aggregate-Aggregate-Materialize"
    group_key_exprs: list[A.Expr] = field(default_factory=list)
    repartition: str | None = None
    """ksqlDB's name of the repartition topic the groups are read through (`Aggregate-GroupBy`),
    None when the group key is the source's key (or the source is a table: see
    `repartition_name`)"""


def unqualified(e: A.Expr) -> A.Expr:
    """`e` with every column reference's source qualifier dropped (for comparing)."""
    return A.transform(e, lambda x: A.ColumnRef(x.name) if isinstance(x, A.ColumnRef) else None)


def _aggregate_calls(e: A.Expr) -> list[A.Call]:
    found: list[A.Call] = []

    def visit(x: A.Expr) -> A.Expr | None:
        if isinstance(x, A.Call) and is_aggregate(x.name):
            found.append(x)
            return x
        return None

    A.transform(e, visit)
    return found


def is_aggregate_query(select: A.Select) -> bool:
    _load_aggregates()
    if select.group_by:
        return True
    exprs = [i.expr for i in select.items if i.expr is not None]
    return any(_aggregate_calls(e) for e in exprs)


def _columns(e: A.Expr) -> list[A.ColumnRef]:
    refs: list[A.ColumnRef] = []

    def visit(x: A.Expr) -> A.Expr | None:
        if isinstance(x, A.ColumnRef):
            refs.append(x)
        return None

    A.transform(e, visit)
    return refs


class _Builder:
    """The state of planning one aggregation (see plan_aggregation)."""

    def __init__(self, select: A.Select, source: DataSource, scope: Scope) -> None:
        self.select = select
        self.source = source
        self.compiler = ExpressionCompiler(scope)
        self.group: list[A.Expr] = [unqualified(e) for e in select.group_by]
        self.calls: list[A.Call] = []
        self.call_index: dict[A.Call, int] = {}

    def check_group_by(self) -> list[Compiled]:
        seen: list[A.Expr] = []
        compiled = []
        self.compiler.scope.clause = "GROUP BY"
        for raw, e in zip(self.select.group_by, self.group, strict=True):
            inner = _aggregate_calls(e)
            if inner:
                raise KsqlError(
                    f"GROUP BY does not support aggregate functions: {inner[0].name} is an "
                    "aggregate function."
                )
            if e in seen:
                raise KsqlError(
                    f"Duplicate GROUP BY expression: {expr_text(_qualify(raw, self.source))}"
                )
            seen.append(e)
            compiled.append(self.compiler.compile(e))
        self.compiler.scope.clause = "SELECT"
        return compiled

    def rewrite(self, e: A.Expr) -> A.Expr:
        """A SELECT/HAVING expression over the aggregate row."""
        plain = unqualified(e)
        if plain in self.group:
            return A.ColumnRef(f"{GRP}{self.group.index(plain)}")

        def visit(x: A.Expr) -> A.Expr | None:
            if x in self.group:
                return A.ColumnRef(f"{GRP}{self.group.index(x)}")
            if isinstance(x, A.Call) and is_aggregate(x.name):
                for arg in x.args:
                    nested = _aggregate_calls(arg)
                    if nested:
                        raise KsqlError(
                            f"Aggregate functions can not be nested: {x.name}({nested[0].name}())"
                        )
                if x not in self.call_index:
                    self.call_index[x] = len(self.calls)
                    self.calls.append(x)
                return A.ColumnRef(f"{AGG}{self.call_index[x]}")
            return None

        return A.transform(plain, visit)


def _qualify(e: A.Expr, source: DataSource) -> A.Expr:
    def visit(x: A.Expr) -> A.Expr | None:
        return A.ColumnRef(x.name, x.source or source.name) if isinstance(x, A.ColumnRef) else None

    return A.transform(e, visit)


def _expand_star(select: A.Select, source: DataSource) -> list[tuple[str | None, A.Expr]]:
    """(alias, expression) of every selected item, `*` as the source's columns."""
    out: list[tuple[str | None, A.Expr]] = []
    for item in select.items:
        if item.expr is None:
            out += [(None, A.ColumnRef(n)) for n, _t in source.columns]
        else:
            out.append((item.alias, item.expr))
    return out


def _check_functions(e: A.Expr) -> None:
    """ksqlDB's error for an unknown function comes before the GROUP BY checks."""
    from services.ksql_server.functions import lookup
    from services.ksql_server.functions.lambdas import LAMBDA_FUNCTIONS

    for call in _calls(e):
        if not (is_aggregate(call.name) or call.name in LAMBDA_FUNCTIONS or lookup(call.name)):
            raise KsqlError(f"Can't find any functions with the name '{call.name.upper()}'")


def _calls(e: A.Expr) -> list[A.Call]:
    found: list[A.Call] = []

    def visit(x: A.Expr) -> A.Expr | None:
        if isinstance(x, A.Call):
            found.append(x)
        return None

    A.transform(e, visit)
    return found


def _leftover(e: A.Expr) -> list[A.ColumnRef]:
    return [
        r
        for r in _columns(e)
        if not r.name.startswith((GRP, AGG)) and r.name not in ("WINDOWSTART", "WINDOWEND")
    ]


def plan_aggregation(
    select: A.Select,
    source: DataSource,
    scope: Scope,
    sink_name: str | None,
    persistent: bool = True,
) -> tuple[AggregationPlan, list[ColumnDef], list[int], list[int]]:
    """The aggregation plan, the output columns, the key and the value column positions.
    A push query (not `persistent`) may leave the key out of its projection, and may aggregate
    without GROUP BY (one group of everything)."""
    _load_aggregates()
    if not persistent and not select.emit_changes and select.group_by:
        raise KsqlError(
            "Pull queries don't support GROUP BY clauses. See https://cnfl.io/queries for more "
            "info.\nAdd EMIT CHANGES if you intended to issue a push query."
        )
    if source.value_format.name == "KAFKA":
        raise KsqlError(
            f"Source(s) {source.name} are using the 'KAFKA' value format. This format does not "
            "yet support GROUP BY."
        )
    b = _Builder(select, source, scope)
    group_compiled = b.check_group_by()
    selected = _expand_star(select, source)
    for e in [x for _a, x in selected] + ([select.having] if select.having else []):
        _check_functions(e)
    items: list[tuple[str | None, A.Expr, A.Expr]] = [
        (alias, e, b.rewrite(e)) for alias, e in selected
    ]
    having = None if select.having is None else b.rewrite(select.having)
    if not b.calls:
        raise KsqlError(
            "GROUP BY requires aggregate functions in either the SELECT or HAVING clause."
        )
    bad = [e for _a, e, rw in items if _leftover(rw)]
    if bad:
        raise KsqlError(
            "Non-aggregate SELECT expression(s) not part of GROUP BY: "
            + ", ".join(expr_text(unqualified(e)) for e in bad)
            + "\nEither add the column(s) to the GROUP BY or remove them from the SELECT."
        )
    if not select.group_by and persistent:
        star = b.calls[0]
        shown = f"{star.name}(ROWTIME)" if star.star or not star.args else expr_text(star)
        raise KsqlError(
            "CREATE TABLE AS SELECT statement does not support aggregate function "
            f"[{shown}] without a GROUP BY clause."
        )
    if having is not None:
        left = _leftover(having)
        if left:
            raise KsqlError(
                f"Non-aggregate HAVING expression not part of GROUP BY: {expr_text(left[0])}"
            )
    calls, pre_outputs = _bind_calls(b, group_compiled)
    where = _where(b, select)
    pre = _batch(b.compiler, where, pre_outputs, [f"p{i}" for i in range(len(pre_outputs))])
    group_types = [c.type or T.STRING for c in group_compiled]
    agg_scope = Scope(
        [(f"{GRP}{i}", t) for i, t in enumerate(group_types)]
        + [(f"{AGG}{i}", c.function.return_type) for i, c in enumerate(calls)]
        + WINDOW_COLUMNS
    )
    post_compiler = ExpressionCompiler(agg_scope)
    names = _names(items, source)
    compiled_items = [post_compiler.compile(rw) for _a, _o, rw in items]
    having_c = None
    if having is not None:
        agg_scope.clause = "HAVING"
        having_c = post_compiler.compile(having)
        agg_scope.clause = "SELECT"
    post = _batch(post_compiler, having_c, compiled_items, names)
    output: list[ColumnDef] = [
        (n, c.type or T.STRING) for n, c in zip(names, compiled_items, strict=True)
    ]
    if persistent:
        key_idx = _key_positions(b, items, names, sink_name)
        value_idx = [i for i in range(len(items)) if i not in key_idx]
        _check_output(output, value_idx)
    else:
        key_idx, value_idx = [], list(range(len(items)))
    plan = AggregationPlan(
        source=source,
        group_types=group_types,
        calls=calls,
        pre=pre,
        post=post,
        has_having=having is not None,
        window=select.window,
        table_source=source.kind == "TABLE",
        group_key_exprs=list(select.group_by),
        repartition=repartition_name(select, source) if persistent else None,
    )
    if plan.table_source:
        _check_undoable(calls)
    return plan, output, key_idx, value_idx


def repartition_name(select: A.Select, source: DataSource) -> str | None:
    """`Aggregate-GroupBy` when a stream is grouped by anything but its key columns, in order
    (ksqlDB then re-keys the stream through a repartition topic). A table's groups are kept
    in the query that reads it (its old and new rows must meet in one place), so no topic."""
    if source.kind != "STREAM" or not select.group_by:
        return None
    keys = [name for name, _t in source.key_columns]
    grouped = [unqualified(e) for e in select.group_by]
    if [e.name if isinstance(e, A.ColumnRef) else None for e in grouped] == keys:
        return None
    return "Aggregate-GroupBy"


def _bind_calls(b: _Builder, group: list[Compiled]) -> tuple[list[AggregateCall], list[Compiled]]:
    outputs = list(group)
    calls: list[AggregateCall] = []
    b.compiler.scope.clause = "SELECT"
    for call in b.calls:
        spec = AGGREGATES[call.name.upper()]
        # up to `literal_args` trailing literals, after at least `min_args` value arguments
        n_lit = max(0, min(spec.literal_args, len(call.args) - spec.min_args))
        value_args = list(call.args[: len(call.args) - n_lit] if n_lit else call.args)
        literal_args = list(call.args[len(call.args) - n_lit :] if n_lit else [])
        literals = []
        for a in literal_args:
            if not isinstance(a, A.Literal):
                raise KsqlError(f"Function '{call.name}' requires literal parameters.")
            literals.append(a.value)
        compiled = [b.compiler.compile(a) for a in value_args]
        function = resolve_aggregate(call.name, [c.type for c in compiled], literals)
        slots = list(range(len(outputs), len(outputs) + len(compiled)))
        outputs += compiled
        calls.append(AggregateCall(function, slots, expr_text(call)))
    return calls, outputs


def _where(b: _Builder, select: A.Select) -> Compiled | None:
    if select.where is None:
        return None
    b.compiler.scope.clause = "WHERE"
    where = b.compiler.compile(select.where)
    b.compiler.scope.clause = "SELECT"
    if where.type is not None and where.type.base != "BOOLEAN":
        raise KsqlError(
            f"Type error in WHERE expression: Should evaluate to boolean but is "
            f"{expr_text(select.where)} ({where.type}) instead."
        )
    return where


def _names(items: list[tuple[str | None, A.Expr, A.Expr]], source: DataSource) -> list[str]:
    names: list[str] = []
    generated = 0
    taken = {a for a, _o, _r in items if a} | {
        n for _a, o, _r in items if (n := natural_name(o)) is not None
    }
    for alias, original, _rw in items:
        name = alias or natural_name(original)
        if name is None:
            while f"KSQL_COL_{generated}" in taken:
                generated += 1
            name = f"KSQL_COL_{generated}"
            generated += 1
        names.append(name)
    return names


def _key_positions(
    b: _Builder,
    items: list[tuple[str | None, A.Expr, A.Expr]],
    names: list[str],
    sink_name: str | None,
) -> list[int]:
    key_idx: list[int] = []
    missing: list[A.Expr] = []
    for i, e in enumerate(b.group):
        ref = A.ColumnRef(f"{GRP}{i}")
        match = [j for j, (_a, _o, rw) in enumerate(items) if rw == ref]
        if not match:
            missing.append(e)
            continue
        if len(match) > 1:
            raise KsqlError(
                "The projection contains a key column more than once: "
                + " and ".join(f"`{names[j]}`" for j in match)
                + "."
            )
        key_idx.append(match[0])
    if missing:
        shown = [expr_text(e) for e in missing]
        what = (
            f"grouping expression {shown[0]}"
            if len(shown) == 1
            else "grouping expressions " + ", ".join(shown[:-1]) + " and " + shown[-1]
        )
        raise KsqlError(
            f"The query used to build `{sink_name or 'OUTPUT'}` must include the {what} in its "
            f"projection (eg, SELECT {', '.join(shown)}...)."
        )
    return key_idx


def _check_output(output: list[ColumnDef], value_idx: list[int]) -> None:
    seen: set[str] = set()
    for name, typ in output:
        if name in seen:
            raise KsqlError(f"Duplicate value columns found in schema: `{name}` {typ}")
        seen.add(name)
    if not value_idx:
        raise KsqlError("The projection contains no value columns.")


def _check_undoable(calls: list[AggregateCall]) -> None:
    """ksqlDB names the functions a table cannot undo in the order the query calls them."""
    bad = list(dict.fromkeys(c.function.name for c in calls if not c.function.undoable))
    if bad:
        names = ", ".join(bad[:-1]) + " and " + bad[-1] if len(bad) > 1 else bad[0]
        plural = "s" if len(bad) > 1 else ""
        raise KsqlError(
            f"The aggregation function{plural} {names} cannot be applied to a table source, "
            "only to a stream source."
        )


__all__ = [
    "AGG",
    "GRP",
    "AggregateCall",
    "AggregationPlan",
    "is_aggregate_query",
    "plan_aggregation",
    "unqualified",
]
