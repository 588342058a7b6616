"""Planning of `... FROM a JOIN b ON ...`: sides, join key, the joined schema and its projection.

Why a planner of its own: a join changes what a column name means. ksqlDB rewrites every column
of a joined source to `<ALIAS>_<COLUMN>` (so `SELECT *` shows `L_A, L_B, R_A, ...`), picks the
result's key from the ON clause (the column on a side, or a synthetic `ROWKEY` when the ON
compares expressions or the join is FULL OUTER) and refuses the combinations it cannot run with
its own messages. All of that is decided here, Kafka-free; `runtime/join.py` runs the result.

The joined row the runtime builds, and the projection reads, is laid out as
`[join key, <left columns + its ROWTIME/ROWPARTITION/ROWOFFSET>, <right ...>, ROWTIME,
ROWPARTITION, ROWOFFSET]`: the key first (the processor serializes a tombstone's key from
`row[:1]`), the pseudo columns last (where the processor reads the record time).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError, LocatedError, UnsupportedError
from services.ksql_server.expressions import (
    Compiled,
    ExpressionCompiler,
    Scope,
    build_batch_function,
)
from services.ksql_server.metastore import DataSource, MetaStore
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.naming import expr_text, natural_name
from services.ksql_server.planner.plan import PSEUDO_COLUMNS, QueryPlan
from services.ksql_server.planner.windowing import check_windowed_join
from services.ksql_server.types import ColumnDef

KEY_SLOT = "$JOINKEY"
"""Name of the key slot when the key is a side's column: no statement can spell it."""

RESERVED = ("ROWTIME", "ROWPARTITION", "ROWOFFSET", "WINDOWSTART", "WINDOWEND")

STREAM_STREAM, STREAM_TABLE, TABLE_TABLE, FOREIGN_KEY = "SS", "ST", "TT", "FK"

_JOIN_TEXT = {
    "INNER": "[INNER] JOIN",
    "LEFT": "LEFT [OUTER] JOIN",
    "RIGHT": "RIGHT [OUTER] JOIN",
    "FULL": "[FULL] OUTER JOIN",
}


@dataclass
class JoinSide:
    """One input of a join: its source, how statements name it, where its columns sit in the
    joined row, and its join-key expression compiled over its own row."""

    source: DataSource
    alias: str
    offset: int
    key_expr: A.Expr
    key_fn: Callable[[list[Any]], Any]
    is_source_key: bool
    """The join key is the source's own key column: no repartition needed."""

    @property
    def width(self) -> int:
        return len(self.source.columns) + len(PSEUDO_COLUMNS)

    @property
    def stream(self) -> bool:
        return self.source.kind == "STREAM"


@dataclass
class JoinStep:
    """One `JOIN` of the chain: the result of the sides before it (left) with side `right`.

    Its left key reads only side `left_side`'s row; its right key side `right`'s."""

    kind: str  # INNER | LEFT | RIGHT | FULL
    join_type: str  # SS | ST | TT | FK
    within_ms: tuple[int, int] | None
    grace_ms: int | None
    left_side: int
    right: int
    key_type: Any = None
    """the join key's SQL type (both sides' keys have it)"""


@dataclass
class JoinPlan:
    """`a JOIN b [JOIN c ...]`: sides in the order written, steps left-deep."""

    sides: list[JoinSide]
    steps: list[JoinStep]
    plan: QueryPlan
    """The projection (and WHERE) over joined rows; `plan.source` is the joined schema."""
    key_name: str
    synthetic_key: bool
    width: int
    left_keys: list[Callable[[list[Any]], Any]] = dataclasses.field(default_factory=list)
    """Each step's left key function (over the row of its `left_side`)."""

    @property
    def left(self) -> JoinSide:
        return self.sides[0]

    @property
    def right(self) -> JoinSide:
        return self.sides[1]

    @property
    def join_type(self) -> str:
        return self.steps[0].join_type


def map_columns(e: A.Expr, fn: Callable[[A.ColumnRef], A.Expr]) -> A.Expr:
    """`e` with every column reference replaced by `fn(ref)` (the tree is immutable)."""
    return A.transform(e, lambda x: fn(x) if isinstance(x, A.ColumnRef) else None)


def column_refs(e: A.Expr) -> list[A.ColumnRef]:
    out: list[A.ColumnRef] = []

    def keep(ref: A.ColumnRef) -> A.Expr:
        out.append(ref)
        return ref

    map_columns(e, keep)
    return out


class _Resolver:
    """Maps a column reference to its joined name (`L_A`), with ksqlDB's errors."""

    def __init__(self, sides: list[tuple[str, DataSource]], synthetic: str | None) -> None:
        self.sides = sides
        self.synthetic = synthetic
        self.clause = "SELECT"
        self.names = [
            {n for n, _ in src.columns} | {n for n, _ in PSEUDO_COLUMNS} for _, src in sides
        ]

    def side_of(self, source: str) -> int | None:
        for i, (alias, src) in enumerate(self.sides):
            if source in (alias, src.name):
                return i
        return None

    def which(self, ref: A.ColumnRef) -> int | None:
        """The side a reference reads (None: a pseudo column of the result, or unknown)."""
        if ref.source is not None:
            return self.side_of(ref.source)
        hits = [i for i, names in enumerate(self.names) if ref.name in names]
        if ref.name in RESERVED or ref.name == self.synthetic:
            return None
        return hits[0] if len(hits) == 1 else None

    def __call__(self, ref: A.ColumnRef) -> A.Expr:
        if ref.source is not None:
            side = self.side_of(ref.source)
            if side is None or ref.name not in self.names[side]:
                raise LocatedError(
                    f"{self.clause} column '{ref.source}.{ref.name}' cannot be resolved.", ref.pos
                )
            return A.ColumnRef(f"{self.sides[side][0]}_{ref.name}")
        if ref.name in RESERVED or ref.name == self.synthetic:
            return ref
        hits = [i for i, names in enumerate(self.names) if ref.name in names]
        if len(hits) > 1:
            could = " or ".join(f"{self.sides[i][0]}.{ref.name}" for i in hits)
            raise LocatedError(
                f"Column '{ref.name}' is ambiguous. Could be {could}.",
                ref.pos,
                "Exception while preparing statement: ",
            )
        if not hits:
            return ref  # a lambda parameter, or the compiler reports it unresolved
        return A.ColumnRef(f"{self.sides[hits[0]][0]}_{ref.name}")


def _side_source(metastore: MetaStore, rel: A.Relation) -> DataSource:
    source = metastore.get(rel.name)
    if source is None:
        raise KsqlError(f"Exception while preparing statement: {rel.name} does not exist.")
    return source


def _check_sources(sources: list[DataSource]) -> None:
    names = [s.name for s in sources]
    if len(sources) == 2 and names[0] == names[1]:
        raise KsqlError(
            f"Can not join '{names[0]}' to '{names[1]}': self joins are not yet supported."
        )
    for i, name in enumerate(names):
        if name in names[:i]:
            raise KsqlError(
                "N-way joins do not support multiple occurrences of the same source. "
                f"Source: '{name}'"
            )
    kafka = [s.name for s in sources if s.value_format.name == "KAFKA"]
    if kafka:
        raise KsqlError(
            f"Source(s) {', '.join(kafka)} are using the 'KAFKA' value format. "
            "This format does not yet support JOIN."
        )


def _split_on(on: A.Expr, resolver: _Resolver, new: int) -> tuple[A.Expr, A.Expr, int]:
    """The ON clause of the join with side `new` as (left expression, right expression, the
    side the left one reads)."""
    if isinstance(on, A.Logical) or not (isinstance(on, A.Binary) and on.op == "="):
        raise KsqlError(
            "Invalid join condition: joins on multiple conditions are not yet supported. "
            f"Got {expr_text(on)}."
            if isinstance(on, A.Logical)
            else f"Unsupported join expression: {expr_text(on)}"
        )
    resolver.clause = "JOIN ON"
    for ref in column_refs(on):
        if ref.source is not None and resolver.side_of(ref.source) is None:
            raise KsqlError(
                f"Failed to prepare statement: '{ref.source}' is not a valid stream/table name "
                "or alias."
            )
    sides: list[int] = []
    for operand in (on.left, on.right):
        refs = column_refs(operand)
        for ref in refs:
            resolver(ref)  # unresolvable: "JOIN ON column 'T.IID' cannot be resolved."
        found = {resolver.which(r) for r in refs}
        if len(found) != 1 or None in found:
            raise KsqlError(
                f"Invalid comparison expression '{expr_text(operand)}' in join "
                f"'{expr_text(on)}'. Each side of the join comparision must contain references "
                "from exactly one source."
            )
        sides.append(found.pop())  # type: ignore[arg-type]
    resolver.clause = "SELECT"
    if sides[0] == sides[1]:
        name = resolver.sides[sides[0]][0]
        raise KsqlError(
            "Each side of the join must reference exactly one source and not the same source. "
            f"Left side references `{name}` and right references `{name}`"
        )
    if new not in sides or max(sides) > new:
        names = [resolver.sides[i][0] for i in sides]
        raise KsqlError(
            "A join criteria is expected to reference the source "
            f"(`{resolver.sides[new][0]}`) in the FROM clause, instead the right source "
            f"references `{names[1]}` and the left source references `{names[0]}`"
        )
    if sides[1] == new:
        return on.left, on.right, sides[0]
    return on.right, on.left, sides[1]


def _join_type(left: DataSource, right: DataSource, clause: A.JoinClause, la: str, ra: str) -> str:
    got = f"Got {la} {_JOIN_TEXT[clause.kind]} {ra}."
    if left.kind == "TABLE" and right.kind == "STREAM":
        raise KsqlError(
            "Invalid join order: table-stream joins are not supported; only stream-table "
            f"joins. {got}"
        )
    if left.kind == "STREAM" and right.kind == "STREAM":
        if clause.within_ms is None:
            raise KsqlError(
                "Stream-Stream joins must have a WITHIN clause specified. None was provided. "
                "To learn about how to specify a WITHIN clause with a stream-stream join, please "
                "visit: https://docs.confluent.io/current/ksql/docs/syntax-reference.html"
                "#create-stream-as-select"
            )
        return STREAM_STREAM
    if clause.within_ms is not None:
        what = "Stream-Table" if left.kind == "STREAM" else "Table-Table"
        raise KsqlError(
            f"A window definition was provided for a {what} join. These joins are not "
            "windowed. Please drop the window definition (ie. the WITHIN clause) and try to "
            "execute your join again."
        )
    if left.kind == "STREAM":
        if clause.kind in ("FULL", "RIGHT"):
            name = "full-outer" if clause.kind == "FULL" else "right"
            raise KsqlError(
                f"Invalid join type: {name} join not supported for stream-table join. {got}"
            )
        return STREAM_TABLE
    return TABLE_TABLE


def _is_column(e: A.Expr, source: DataSource, keys_only: bool) -> bool:
    names = {n for n, _ in (source.key_columns if keys_only else source.columns)}
    return isinstance(e, A.ColumnRef) and e.name in names


def plan_join(
    select: A.Select,
    metastore: MetaStore,
    persistent: bool,
    sink_name: str | None = None,
    new_planner: bool = False,
) -> JoinPlan:
    """Plan a join of two or more sources (left-deep, in the order written)."""
    grouped = persistent and bool(select.group_by)  # an aggregation over the joined rows
    for clause_name, present in (
        ("WINDOW", select.window is not None and not grouped),
        ("GROUP BY", bool(select.group_by) and not grouped),
        ("HAVING", select.having is not None and not grouped),
        ("EMIT FINAL", select.emit_final),
        ("PARTITION BY", bool(select.partition_by) and not persistent),
    ):
        if present:
            raise UnsupportedError(f"JOIN with {clause_name}")
    relations = [select.source] + [c.relation for c in select.joins]
    sources = [_side_source(metastore, r) for r in relations]
    _check_sources(sources)
    aliases = [r.alias or s.name for r, s in zip(relations, sources, strict=True)]
    resolver = _Resolver(list(zip(aliases, sources, strict=True)), None)
    exprs: list[tuple[A.Expr, A.Expr]] = []
    steps: list[JoinStep] = []
    keys: list[tuple[Callable[[list[Any]], Any], Callable[[list[Any]], Any]]] = []
    ltype: Any = None
    # every ON's sources first (ksqlDB names a wrong reference before any other problem)
    splits = [_split_on(c.on, resolver, i) for i, c in enumerate(select.joins, start=1)]
    for i, clause in enumerate(select.joins, start=1):
        split = splits[i - 1]
        step, lexpr, rexpr, ltype, fns = _plan_step(clause, i, sources, aliases, resolver, split)
        steps.append(step)
        exprs.append((lexpr, rexpr))
        keys.append(fns)
    candidates = _candidates(steps, exprs, aliases)
    synthetic = None if candidates else _synthetic_name(sources)
    if ltype is not None and ltype.contains("MAP"):
        raise KsqlError(
            "Map keys, including types that contain maps, are not supported as they may lead to "
            "unexpected behavior due to inconsistent serialization. Key column name: "
            f"`{synthetic or candidates[0]}`. Column type: {ltype}. See "
            "https://github.com/confluentinc/ksql/issues/6621 for more."
        )
    resolver.synthetic = synthetic
    sides: list[JoinSide] = []
    offset = 1
    for i, (source, alias) in enumerate(zip(sources, aliases, strict=True)):
        # a side's own key function: the one of the step it is the right side of (side 0:
        # the first step's left); the left keys of later steps are kept on the steps' list
        expr = exprs[0][0] if i == 0 else exprs[i - 1][1]
        fn = keys[0][0] if i == 0 else keys[i - 1][1]
        side = JoinSide(source, alias, offset, expr, fn, _is_column(expr, source, True))
        sides.append(side)
        offset += side.width
    columns: list[ColumnDef] = [(synthetic or KEY_SLOT, ltype)]
    for side in sides:
        columns += [(f"{side.alias}_{n}", t) for n, t in side.source.columns + PSEUDO_COLUMNS]
    columns += PSEUDO_COLUMNS
    if grouped:
        plan = _aggregation(select, columns, resolver, sources, sink_name)
        join = JoinPlan(sides, steps, plan, "", synthetic is not None, len(columns))
        join.left_keys = [k[0] for k in keys]
        plan.join = join
        return join
    plan, key_name = _projection(
        select,
        columns,
        resolver,
        candidates,
        synthetic,
        persistent,
        sink_name,
        sources,
        new_planner,
    )
    join = JoinPlan(
        sides, steps, plan, key_name, synthetic is not None, len(columns), [k[0] for k in keys]
    )
    plan.join = join
    return join


def _plan_step(
    clause: A.JoinClause,
    i: int,
    sources: list[DataSource],
    aliases: list[str],
    resolver: _Resolver,
    split: tuple[A.Expr, A.Expr, int],
) -> tuple[JoinStep, A.Expr, A.Expr, Any, tuple[Callable[..., Any], Callable[..., Any]]]:
    """The join of the sides before `i` with side `i`: checks, key expressions and functions."""
    lexpr, rexpr, j = split
    right, ra = sources[i], aliases[i]
    left_kind = "STREAM" if any(s.kind == "STREAM" for s in sources[:i]) else "TABLE"
    left = dataclasses.replace(sources[j], kind=left_kind)
    la = aliases[j]
    join_type = _join_type(left, right, clause, la, ra)
    if join_type == STREAM_TABLE and not _is_column(rexpr, right, True):
        raise KsqlError(
            "Invalid join condition: stream-table joins require to join on the table's primary "
            f"key. Got {expr_text(_qualified(lexpr, la))} = {expr_text(_qualified(rexpr, ra))}."
        )
    if join_type == TABLE_TABLE:
        if not _is_column(rexpr, right, True):
            raise KsqlError(
                "Invalid join condition: table-table joins require to join on the primary key "
                f"of the right input table. Got {_on_text(clause.on, resolver)}."
            )
        if not _is_column(lexpr, sources[j], True):
            if i > 1:
                raise UnsupportedError("n-way foreign-key joins")
            join_type = FOREIGN_KEY
    lkey, ltype = _side_key(sources[j], la, lexpr)
    rkey, rtype = _side_key(right, ra, rexpr)
    if ltype != rtype:
        raise KsqlError(
            "Invalid join condition: types don't match. Got "
            f"{expr_text(_qualified(lexpr, la))}{{{ltype}}} = "
            f"{expr_text(_qualified(rexpr, ra))}{{{rtype}}}."
        )
    if join_type == FOREIGN_KEY and clause.kind not in ("INNER", "LEFT"):
        raise KsqlError(
            f"Invalid join type: {clause.kind.lower()} join not supported for foreign-key "
            "table-table join."
        )
    check_windowed_join(
        sources[j],
        right,
        _is_column(lexpr, sources[j], True) and _is_column(rexpr, right, True),
        join_type == FOREIGN_KEY,
    )
    _check_copartitioned(sources[j], right, lexpr, rexpr, join_type)
    step = JoinStep(clause.kind, join_type, clause.within_ms, clause.grace_ms, j, i, ltype)
    return step, lexpr, rexpr, ltype, (lkey, rkey)


def _candidates(
    steps: list[JoinStep], exprs: list[tuple[A.Expr, A.Expr]], aliases: list[str]
) -> list[str]:
    """The joined columns that equal the result's key: the last join's column operands and,
    through earlier joins on the same column, theirs (in the order of the sources)."""
    last = steps[-1]
    if last.kind == "FULL":
        return []

    def text(e: A.Expr, side: int) -> str:
        return expr_text(_qualified(e, aliases[side]))

    # expressions known equal to the key (by the ON clauses), followed back through the chain
    equal: dict[str, tuple[A.Expr, int]] = {}
    lexpr, rexpr = exprs[-1]
    for e, side in ((lexpr, last.left_side), (rexpr, last.right)):
        if not (side == last.right and last.join_type == FOREIGN_KEY):
            equal[text(e, side)] = (e, side)
    for step, (le, re_) in reversed(list(zip(steps[:-1], exprs[:-1], strict=True))):
        if step.kind == "FULL":
            continue
        lt, rt = text(le, step.left_side), text(re_, step.right)
        if lt in equal or rt in equal:
            equal[lt], equal[rt] = (le, step.left_side), (re_, step.right)
    found = {
        f"{aliases[side]}_{e.name}": side
        for e, side in equal.values()
        if isinstance(e, A.ColumnRef)
    }
    return sorted(found, key=lambda n: found[n])


def _qualified(e: A.Expr, alias: str | None, resolver: _Resolver | None = None) -> A.Expr:
    """`e` as ksqlDB prints it in messages: every column qualified by its source."""

    def qualify(ref: A.ColumnRef) -> A.Expr:
        if ref.source is not None:
            return ref
        if alias is not None:
            return A.ColumnRef(ref.name, alias)
        side = resolver.which(ref) if resolver is not None else None
        return ref if side is None else A.ColumnRef(ref.name, resolver.sides[side][0])  # type: ignore[union-attr]

    return map_columns(e, qualify)


def _on_text(on: A.Expr, resolver: _Resolver) -> str:
    """The ON clause as written, each column qualified: `L.A = R.B` (no parentheses)."""
    if isinstance(on, A.Binary):
        left = expr_text(_qualified(on.left, None, resolver))
        return f"{left} {on.op} {expr_text(_qualified(on.right, None, resolver))}"
    return expr_text(_qualified(on, None, resolver))


def _side_key(source: DataSource, alias: str, e: A.Expr) -> tuple[Callable[[list[Any]], Any], Any]:
    """The join key of one side, compiled over that side's own row (keys, values, pseudo)."""
    scope = Scope(source.columns + PSEUDO_COLUMNS, [source.name, alias])
    scope.clause = "JOIN ON"
    compiler = ExpressionCompiler(scope)
    compiled = compiler.compile(e)
    batch = build_batch_function(compiler, None, [compiled], ["JOIN KEY"])

    def key(row: list[Any]) -> Any:
        out = batch([row], lambda *_: None)
        return out[0][1][0] if out else None

    return key, compiled.type


def _check_copartitioned(
    left: DataSource, right: DataSource, lexpr: A.Expr, rexpr: A.Expr, join_type: str
) -> None:
    """ksqlDB refuses a join of sources keyed as joined but partitioned differently (its
    repartitioning only runs for a side whose join key is not its source key)."""
    if join_type == FOREIGN_KEY:
        return
    if not (_is_column(lexpr, left, True) and _is_column(rexpr, right, True)):
        return
    if left.partitions != right.partitions:
        raise KsqlError(
            f"Can't join `{left.name}` with `{right.name}` since the number of partitions don't "
            f"match. `{left.name}` partitions = {left.partitions}; `{right.name}` partitions = "
            f"{right.partitions}. Please repartition either one so that the number of "
            "partitions match."
        )


def _synthetic_name(sources: list[DataSource]) -> str:
    """`ROWKEY`, or ksqlDB's next `ROWKEY_<n>` when a source already has that column."""
    taken = {n for s in sources for n, _ in s.columns}
    if "ROWKEY" not in taken:
        return "ROWKEY"
    n = 1
    while f"ROWKEY_{n}" in taken:
        n += 1
    return f"ROWKEY_{n}"


def _projection(
    select: A.Select,
    columns: list[ColumnDef],
    resolver: _Resolver,
    candidates: list[str],
    synthetic: str | None,
    persistent: bool,
    sink_name: str | None,
    sources: list[DataSource],
    new_planner: bool = False,
) -> tuple[QueryPlan, str]:
    """SELECT and WHERE over the joined row, and which projected column is the sink key."""
    scope = Scope(columns, [])
    compiler = ExpressionCompiler(scope)
    partition = [map_columns(e, resolver) for e in select.partition_by] if persistent else []
    items = _select_items(select, resolver, candidates, synthetic, compiler, partition)
    key_idx: list[int] = []
    key_name = synthetic or (candidates[0] if candidates else "")
    keyless = persistent and new_planner and not _projects_key(items, candidates, synthetic)
    if partition:  # the result is re-keyed: the PARTITION BY expressions are its key
        key_idx = _partition_key(items, partition, select, resolver, sink_name)
        key_name = items[key_idx[0]][0]
    elif persistent and not keyless:  # the new planner writes a key-less result instead
        k = _key_index(items, candidates, synthetic, sink_name, resolver)
        key_idx, key_name = [k], items[k][0]
        # the key is the join key (a RIGHT or FULL join's absent side has null columns)
        items[k] = (key_name, items[k][1], compiler.compile(A.ColumnRef(columns[0][0])))
    used: set[str] = set()
    for name, _, c in items:
        if name in used:
            raise KsqlError(f"Duplicate value columns found in schema: `{name}` ")
        used.add(name)
        if c.type is None:
            raise KsqlError(
                "Can't infer a type of null. Please explicitly cast it to a required type, "
                f"e.g. CAST(null AS VARCHAR). (column {name})"
            )
    where = None
    if select.where is not None:
        scope.clause = "WHERE"
        resolver.clause = "WHERE"
        rewritten = map_columns(select.where, resolver)
        where = compiler.compile(rewritten)
        resolver.clause = scope.clause = "SELECT"
        if where.type is not None and where.type.base != "BOOLEAN":
            raise KsqlError(
                "Type error in WHERE expression: Should evaluate to boolean but is "
                f"{expr_text(select.where)} ({where.type}) instead."
            )
    output: list[ColumnDef] = [(n, c.type or T.STRING) for n, _, c in items]
    value_idx = [i for i in range(len(items)) if i not in key_idx]
    if persistent and not value_idx:
        raise KsqlError("The projection contains no value columns.")
    batch = build_batch_function(
        compiler, where, [c for _, _, c in items], [n for n, _, _ in items]
    )
    joined = _joined_source(sources, columns, [])
    plan = QueryPlan(joined, select, output, key_idx, value_idx, batch, row_columns=columns)
    if partition:
        plan.partition_by = True
        plan.key_batch = build_batch_function(
            compiler, None, [items[i][2] for i in key_idx], [items[i][0] for i in key_idx]
        )
        plan.key_value_dependent = [True for _ in key_idx]
    return plan, key_name


def _aggregation(
    select: A.Select,
    columns: list[ColumnDef],
    resolver: _Resolver,
    sources: list[DataSource],
    sink_name: str | None,
) -> QueryPlan:
    """`... JOIN ... [WINDOW ...] GROUP BY ... [HAVING ...]`: the aggregation planner over the
    joined rows, as over a source whose columns are the joined ones (`L_A`, ...; a table when
    every side is one, so its updates retract their old rows from their groups)."""
    from services.ksql_server.planner.plan import _aggregate_plan, source_scope

    resolver.clause = "SELECT"
    items = []
    for item in select.items:
        if item.expr is None:
            raise KsqlError(
                "GROUP BY requires aggregate functions in either the SELECT or HAVING clause."
            )
        for ref in column_refs(item.expr):  # ksqlDB has no window bounds after a join
            if ref.name in ("WINDOWSTART", "WINDOWEND"):
                raise KsqlError(f"SELECT column '{ref.name}' cannot be resolved.")
        rewritten = map_columns(item.expr, resolver)
        alias = item.alias or _natural_name(item.expr, rewritten, resolver)
        items.append(A.SelectItem(rewritten, alias))
    joined = _joined_source(sources, columns, columns[1 : -len(PSEUDO_COLUMNS)])
    grouped = dataclasses.replace(
        select,
        items=items,
        joins=[],
        where=None if select.where is None else map_columns(select.where, resolver),
        group_by=[map_columns(e, resolver) for e in select.group_by],
        having=None if select.having is None else map_columns(select.having, resolver),
    )
    plan = _aggregate_plan(grouped, joined, source_scope(joined, None), sink_name, True)
    plan.stateful.repartition = None  # the join re-keys in the query (runtime/join_query.py)
    return plan


def _partition_key(
    items: list[tuple[str, A.Expr, Compiled]],
    partition: list[A.Expr],
    select: A.Select,
    resolver: _Resolver,
    sink_name: str | None,
) -> list[int]:
    """The projected columns a joined result is partitioned by (ksqlDB: `PARTITION BY` after a
    join re-keys its output; each expression must be projected)."""
    key_idx: list[int] = []
    for e, raw in zip(partition, select.partition_by, strict=True):
        if isinstance(e, A.Literal) and e.value is None:
            raise UnsupportedError("JOIN with PARTITION BY NULL")
        match = [i for i, (_n, ie, _c) in enumerate(items) if ie == e]
        if not match:
            shown = expr_text(_qualified(raw, None, resolver))
            raise KsqlError(
                "Key missing from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.\n"
                f"The query used to build `{sink_name or 'OUTPUT'}` must include the "
                f"partitioning expression {shown} in its projection (eg, SELECT {shown}...)."
            )
        key_idx.append(match[0])
    return key_idx


def _joined_source(
    sources: list[DataSource], columns: list[ColumnDef], values: list[ColumnDef]
) -> DataSource:
    """The joined rows as a source: keyed by the join key, a table when every side is one."""
    return dataclasses.replace(
        sources[0],
        name=sources[0].name,
        key_format=_key_format(sources),
        kind="TABLE" if all(s.kind == "TABLE" for s in sources) else "STREAM",
        key_columns=[columns[0]],
        value_columns=values,
    )


def _key_format(sources: list[DataSource]) -> Any:
    """The result's key format: the left source's, the right's when the left has no key, and
    `ksql.persistence.default.format.key` when neither has (a join always has a key)."""
    for source in sources:
        if source.key_format.name != "NONE":
            return source.key_format
    return sources[0].key_format  # NONE: the sink takes the default key format


def _select_items(
    select: A.Select,
    resolver: _Resolver,
    candidates: list[str],
    synthetic: str | None,
    compiler: ExpressionCompiler,
    partition: list[A.Expr] | None = None,
) -> list[tuple[str, A.Expr, Compiled]]:
    items: list[tuple[str, A.Expr, Compiled]] = []
    generated = 0
    for item in select.items:
        if item.expr is None and partition:
            items += _partitioned_star(item.star_source, resolver, compiler, partition)
            continue
        if item.expr is None:
            if item.star_source is None:
                sides = list(range(len(resolver.sides)))
                if synthetic is not None:
                    ref = A.ColumnRef(synthetic)
                    items.append((synthetic, ref, compiler.compile(ref)))
            else:
                side = resolver.side_of(item.star_source)
                if side is None:
                    raise KsqlError(
                        f"'{item.star_source}' is not a valid stream/table name or alias."
                    )
                sides = [side]
            for i in sides:
                alias, src = resolver.sides[i]
                for name, _ in src.columns:
                    ref = A.ColumnRef(f"{alias}_{name}")
                    items.append((ref.name, ref, compiler.compile(ref)))
            continue
        rewritten = map_columns(item.expr, resolver)
        compiled = compiler.compile(rewritten)
        natural = item.alias or _natural_name(item.expr, rewritten, resolver)
        if natural is None:
            natural = f"KSQL_COL_{generated}"
            generated += 1
        items.append((natural, rewritten, compiled))
    return items


def _partitioned_star(
    star_source: str | None,
    resolver: _Resolver,
    compiler: ExpressionCompiler,
    partition: list[A.Expr],
) -> list[tuple[str, A.Expr, Compiled]]:
    """`SELECT *` of a join re-keyed by `PARTITION BY`: the partitioning columns first (the
    key), then each side's value columns, its `ROWTIME`/`ROWPARTITION`/`ROWOFFSET` and its key
    columns, as ksqlDB's repartitioned join result carries them."""
    items: list[tuple[str, A.Expr, Compiled]] = []
    taken: set[str] = set()
    for n, e in enumerate(partition):
        name = e.name if isinstance(e, A.ColumnRef) else f"KSQL_COL_{n}"
        items.append((name, e, compiler.compile(e)))
        taken.add(name)
    sides = range(len(resolver.sides))
    if star_source is not None:
        found = resolver.side_of(star_source)
        if found is None:
            raise KsqlError(f"'{star_source}' is not a valid stream/table name or alias.")
        sides = range(found, found + 1)
    for i in sides:
        alias, src = resolver.sides[i]
        for name, _ in src.value_columns + PSEUDO_COLUMNS + src.key_columns:
            ref = A.ColumnRef(f"{alias}_{name}")
            if ref.name not in taken:
                items.append((ref.name, ref, compiler.compile(ref)))
    return items


def _natural_name(e: A.Expr, rewritten: A.Expr, resolver: _Resolver) -> str | None:
    """ksqlDB's name of an unaliased column in a join: the column's own name when only one
    source has a column of that name, else the joined `<ALIAS>_<COLUMN>`."""
    if isinstance(e, A.ColumnRef) and isinstance(rewritten, A.ColumnRef):
        if sum(e.name in names for names in resolver.names) > 1:
            return rewritten.name
        return e.name
    return natural_name(e)


def _projects_key(
    items: list[tuple[str, A.Expr, Compiled]], candidates: list[str], synthetic: str | None
) -> bool:
    keys = [synthetic] if synthetic else candidates
    return any(isinstance(e, A.ColumnRef) and e.name in keys for _, e, _ in items)


def _key_index(
    items: list[tuple[str, A.Expr, Compiled]],
    candidates: list[str],
    synthetic: str | None,
    sink_name: str | None,
    resolver: _Resolver,
) -> int:
    """The projected column that carries the join key, with ksqlDB's errors when none or more
    than one copy of the same one does."""
    keys = [synthetic] if synthetic else candidates
    refs = [e.name if isinstance(e, A.ColumnRef) else None for _, e, _ in items]
    # the left side's join column first, wherever each stands in the projection
    hits = [i for k in keys for i, name in enumerate(refs) if name == k]
    sink = sink_name or "OUTPUT"
    if not hits:
        shown = [_joined_text(k, resolver) for k in keys]
        if len(shown) == 1:
            what = f"join expression {shown[0]}"
        else:
            what = "join expressions " + ", ".join(shown[:-1]) + " or " + shown[-1]
        text = (
            "Key missing from projection (ie, SELECT). See https://cnfl.io/2LV7ouS.\n"
            f"The query used to build `{sink}` must include the {what} in its projection "
            f"(eg, SELECT {shown[0]}...)."
        )
        if synthetic:
            text += (
                f"\n{synthetic} was added as a synthetic key column because the join criteria "
                "did not match any source column. This expression must be included in the "
                "projection and may be aliased."
            )
        raise KsqlError(text)
    first = hits[0]
    key_ref = items[first][1]
    same = [i for i in hits if items[i][1] == key_ref]
    if len(same) > 1:
        names = " and ".join(sorted(items[i][0] for i in same))
        raise KsqlError(
            f"The projection contains a key column (`{key_ref.name}`) more than once, "  # type: ignore[attr-defined]
            f"aliased as: {names}.\nEach key column must only be in the projection once. If you "
            "intended to copy the key into the value, then consider using the AS_VALUE "
            "function to indicate which key reference should be copied."
        )
    return first


def _joined_text(name: str, resolver: _Resolver) -> str:
    """`L_A` back as ksqlDB prints it in a message: `L.A`."""
    for alias, _ in resolver.sides:
        if name.startswith(alias + "_"):
            return f"{alias}.{name[len(alias) + 1 :]}"
    return name


__all__ = [
    "FOREIGN_KEY",
    "STREAM_STREAM",
    "STREAM_TABLE",
    "TABLE_TABLE",
    "JoinPlan",
    "JoinSide",
    "JoinStep",
    "column_refs",
    "map_columns",
    "plan_join",
]
