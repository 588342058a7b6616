"""The statement and expression trees the parser produces and the planner consumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.ksql_server.types import SqlType


class Expr:
    """Base class of expression nodes."""


@dataclass(frozen=True)
class Literal(Expr):
    value: Any
    type: SqlType | None  # None for the NULL literal


@dataclass(frozen=True)
class ColumnRef(Expr):
    name: str
    source: str | None = None
    pos: int = field(default=-1, compare=False, repr=False)
    """Where the reference starts in its statement's text (-1: made by a rewrite); only for
    errors ksqlDB prefixes with `Line: L, Col: C:`, never part of equality."""


@dataclass(frozen=True)
class Binary(Expr):
    op: str  # + - * / % || = <> < <= > >= AND OR
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Logical(Expr):
    """`a AND b AND c …` (or OR) as one n-ary node: a chain of 200 conditions is one level of
    the tree, not 200, so nothing that walks it (planner, compiler, Python's own compiler of
    the generated code) recurses once per condition."""

    op: str  # AND OR
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # - + NOT
    operand: Expr


@dataclass(frozen=True)
class IsNull(Expr):
    operand: Expr
    negated: bool


@dataclass(frozen=True)
class Like(Expr):
    operand: Expr
    pattern: Expr
    escape: str | None
    negated: bool


@dataclass(frozen=True)
class Between(Expr):
    operand: Expr
    low: Expr
    high: Expr
    negated: bool


@dataclass(frozen=True)
class InList(Expr):
    operand: Expr
    items: tuple[Expr, ...]
    negated: bool


@dataclass(frozen=True)
class DistinctFrom(Expr):
    left: Expr
    right: Expr
    negated: bool


@dataclass(frozen=True)
class Case(Expr):
    operand: Expr | None
    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr | None


@dataclass(frozen=True)
class Cast(Expr):
    operand: Expr
    type: SqlType


@dataclass(frozen=True)
class Call(Expr):
    name: str
    args: tuple[Expr, ...]
    star: bool = False


@dataclass(frozen=True)
class Subscript(Expr):
    base: Expr
    index: Expr


@dataclass(frozen=True)
class Dereference(Expr):
    base: Expr
    field: str


@dataclass(frozen=True)
class ArrayCtor(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class MapCtor(Expr):
    entries: tuple[tuple[Expr, Expr], ...]


@dataclass(frozen=True)
class StructCtor(Expr):
    fields: tuple[tuple[str, Expr], ...]


@dataclass(frozen=True)
class Lambda(Expr):
    params: tuple[str, ...]
    body: Expr


# ---------------------------------------------------------------- statements


@dataclass
class ColumnDef:
    name: str
    type: SqlType
    key: bool = False
    primary: bool = False
    headers: bool = False
    header_key: str | None = None
    pos: int = 0


@dataclass
class SelectItem:
    expr: Expr | None  # None for `*`
    alias: str | None = None
    star_source: str | None = None  # `S.*`


@dataclass
class Relation:
    name: str
    alias: str | None = None


@dataclass
class WindowSpec:
    """`WINDOW TUMBLING (SIZE …)`, `HOPPING (SIZE …, ADVANCE BY …)`, `SESSION (gap)`.

    All durations in milliseconds; `size_ms` is the session gap for SESSION windows.
    """

    kind: str  # TUMBLING | HOPPING | SESSION
    size_ms: int
    advance_ms: int | None = None
    retention_ms: int | None = None
    grace_ms: int | None = None


@dataclass
class JoinClause:
    """One `[INNER|LEFT|RIGHT|FULL] JOIN rel [WITHIN …] [GRACE PERIOD …] ON expr`.

    `within_ms` is (before, after): `WITHIN 1 HOUR` is (3600000, 3600000), `WITHIN (1 HOUR,
    2 HOURS)` is (3600000, 7200000), as ksqlDB reads them; None outside stream-stream joins.
    """

    kind: str  # INNER | LEFT | RIGHT | FULL
    relation: Relation
    on: Expr
    within_ms: tuple[int, int] | None = None
    grace_ms: int | None = None


@dataclass
class Select:
    items: list[SelectItem]
    source: Relation
    where: Expr | None = None
    partition_by: list[Expr] = field(default_factory=list)
    emit_changes: bool = False
    emit_final: bool = False
    limit: int | None = None
    unsupported: str | None = None  # the first clause the engine does not run (SELECT DISTINCT)
    joins: list[JoinClause] = field(default_factory=list)  # in the order written (n-way joins)
    window: WindowSpec | None = None
    group_by: list[Expr] = field(default_factory=list)
    having: Expr | None = None


@dataclass
class Statement:
    text: str


@dataclass
class CreateSource(Statement):
    kind: str  # STREAM | TABLE
    name: str
    columns: list[ColumnDef] | None
    props: dict[str, Any]
    or_replace: bool = False
    if_not_exists: bool = False
    query: Select | None = None
    source_only: bool = False


@dataclass
class InsertSelect(Statement):
    target: str
    props: dict[str, Any]
    query: Select
    target_pos: int = -1


@dataclass
class InsertValues(Statement):
    target: str
    columns: list[str] | None
    values: list[Expr]


@dataclass
class AlterSource(Statement):
    """`ALTER STREAM|TABLE name ADD [COLUMN] c type, …`."""

    kind: str
    name: str
    columns: list[ColumnDef]


@dataclass
class DropSource(Statement):
    kind: str
    name: str
    if_exists: bool
    delete_topic: bool


@dataclass
class Terminate(Statement):
    query_id: str | None  # None = ALL


@dataclass
class Show(Statement):
    what: str  # STREAMS TABLES QUERIES TOPICS PROPERTIES FUNCTIONS
    extended: bool = False


@dataclass
class Describe(Statement):
    name: str
    extended: bool = False


@dataclass
class Explain(Statement):
    """`EXPLAIN <query id>` (query_id set) or `EXPLAIN <statement>` (statement set)."""

    query_id: str | None = None
    statement: Statement | None = None


@dataclass
class SetProperty(Statement):
    name: str
    value: str


@dataclass
class UnsetProperty(Statement):
    name: str


@dataclass
class Query(Statement):
    select: Select


def decimal_literal(text: str) -> Literal:
    """`1.50` is DECIMAL(3, 2) in ksqlDB, exactly as written."""
    from services.ksql_server.types import decimal

    value = Decimal(text)
    digits = value.as_tuple()
    scale = max(0, -int(digits.exponent))
    precision = max(len(digits.digits), scale, 1)
    return Literal(value, decimal(precision, scale))


def transform(e: Expr, fn: Callable[[Expr], Expr | None]) -> Expr:
    """`e` rebuilt bottom-up where `fn` returns a replacement (None: keep and recurse).

    The one rewrite of the immutable expression tree: the planners qualify, unqualify and
    resolve column references through it instead of each walking the fields themselves."""
    replaced = fn(e)
    if replaced is not None:
        return replaced
    if not dataclasses.is_dataclass(e):
        return e
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if isinstance(v, Expr):
            changes[f.name] = transform(v, fn)
        elif isinstance(v, tuple):
            changes[f.name] = tuple(_transform_item(x, fn) for x in v)
    return dataclasses.replace(e, **changes) if changes else e


def _transform_item(x: Any, fn: Callable[[Expr], Expr | None]) -> Any:
    if isinstance(x, Expr):
        return transform(x, fn)
    if isinstance(x, tuple):
        return tuple(_transform_item(y, fn) for y in x)
    return x
