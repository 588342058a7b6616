"""Pull queries over tables: which clauses ksqlDB refuses, and how the WHERE clause reads keys.

A pull query over a materialised table answers from the table's state (runtime/pull.py), not by
consuming its topic. ksqlDB decides from the WHERE clause, disjunct by disjunct (the clause in
disjunctive normal form), whether it can look rows up by key or has to scan the table, and
refuses what it cannot serve with fixed messages that clients match on, reproduced here:

- every disjunct must constrain the key with `=` (or `IN`) for a key lookup; a range (`<`, `>`,
  …) on a single-column key needs `ksql.query.pull.range.scan.enabled` (on by default);
  anything else needs `ksql.query.pull.table.scan.enabled` (on by default);
- `IN` lists are checked against the key's type and for NULLs whichever way the query runs.

The result is a `PullPlan`: the keys to look up, or None for a scan. The WHERE clause itself is
still applied to every row read (plan.batch), so a lookup only narrows what is read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from services.ksql_server.errors import KsqlError
from services.ksql_server.expressions import ExpressionCompiler, Scope
from services.ksql_server.expressions.runtime_helpers import cast_value
from services.ksql_server.metastore import DataSource, MetaStore
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.naming import expr_text
from services.ksql_server.planner.aggregate import WINDOW_COLUMNS
from services.ksql_server.types import ColumnDef, SqlType

TABLE_SCAN_PROPERTY = "ksql.query.pull.table.scan.enabled"
RANGE_SCAN_PROPERTY = "ksql.query.pull.range.scan.enabled"
COMPARISONS = ("=", "<", "<=", ">", ">=", "<>", "!=")
MAX_DISJUNCTS = 1000
"""bound on the DNF expansion of an untrusted WHERE clause"""


@dataclass
class PullPlan:
    """How the rows of a pull query over a table are read."""

    keys: list[tuple[Any, ...]] | None
    """the keys to look up, in order, without duplicates; None: scan the whole table"""


def check_pull_clauses(select: A.Select) -> None:
    """The clauses no pull query takes (ksqlDB's messages, checked before planning)."""
    for clause, present in (
        ("JOIN", bool(select.joins)),
        ("WINDOW", select.window is not None),
        ("GROUP BY", bool(select.group_by)),
    ):
        if present:
            raise KsqlError(
                f"Pull queries don't support {clause} clauses. See https://cnfl.io/queries for "
                "more info.\nAdd EMIT CHANGES if you intended to issue a push query."
            )


def check_pull_table(select: A.Select, source: DataSource) -> None:
    """Checks ksqlDB makes on a pull query over a table before it plans the projection."""
    seen: set[str] = set()
    types = dict(source.value_columns)
    for item in select.items:
        if isinstance(item.expr, A.ColumnRef):
            name = item.alias or item.expr.name
            if name in seen and name in types:
                raise KsqlError(f"Duplicate value columns found in schema: `{name}` {types[name]}")
            seen.add(name)


def pull_metastore(metastore: MetaStore, table: DataSource) -> MetaStore:
    """The catalogue a pull query is planned against: a windowed table shows its window bounds
    as key columns after its own (WINDOWSTART, WINDOWEND BIGINT KEY), as ksqlDB shows them, and
    its rows are read in that layout (the windowed view's key is (key…, start, end))."""
    if table.window is None:
        return metastore
    shown = replace(table, key_columns=[*table.key_columns, *WINDOW_COLUMNS], window=None)
    return MetaStore({**metastore.sources, table.name: shown})


def where_statement(message: str, select: A.Select) -> str:
    """ksqlDB ends a pull query's WHERE error with the clause it read."""
    if select.where is None or not message.startswith("Error in WHERE expression:"):
        return message
    if "\nStatement: " in message:
        return message
    text = expr_text(select.where)
    if not text.startswith("("):
        text = f"({text})"
    return f"{message}\nStatement: {text}"


def not_queryable(name: str) -> KsqlError:
    """A table no query materialises (a plain CREATE TABLE over a topic)."""
    return KsqlError(
        f"The `{name}` table isn't queryable. To derive a queryable table, you can do "
        f"'CREATE TABLE QUERYABLE_{name} AS SELECT * FROM {name}'. "
        "See https://cnfl.io/queries for more info."
    )


def flag(properties: dict[str, Any], name: str, default: bool = True) -> bool:
    value = properties.get(name, default)
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def plan_pull(
    select: A.Select, source: DataSource, properties: dict[str, Any], windowed: bool
) -> PullPlan:
    """Check the WHERE clause as ksqlDB does and say which keys to read (None: scan)."""
    table_scan = flag(properties, TABLE_SCAN_PROPERTY)
    range_scan = flag(properties, RANGE_SCAN_PROPERTY)
    keys = source.key_columns
    if select.where is None:
        if not table_scan:
            raise KsqlError("Query requires table scan to be enabled")
        return PullPlan(None)
    disjuncts = _dnf(select.where)
    lookups: list[tuple[Any, ...]] | None = []
    range_scan = range_scan and len(disjuncts) == 1  # an OR of ranges needs a table scan
    types = dict(source.columns)
    for conj in disjuncts:
        _check_like(conj, types, table_scan)
        found = _disjunct_keys(conj, keys, table_scan, range_scan, windowed)
        if found is None or lookups is None:
            lookups = None
        else:
            for k in found:  # by equality: ARRAY and STRUCT key values do not hash
                if k not in lookups:
                    lookups.append(k)
    return PullPlan(lookups)


def _dnf(e: A.Expr) -> list[list[A.Expr]]:
    """The clause as a disjunction of conjunctions (ksqlDB rewrites WHERE the same way)."""
    if isinstance(e, A.Logical) and e.op == "OR":
        out: list[list[A.Expr]] = []
        for part in e.operands:
            out += _dnf(part)
        return out
    if isinstance(e, A.Binary) and e.op == "OR":
        return _dnf(e.left) + _dnf(e.right)
    parts = _and_parts(e)
    result: list[list[A.Expr]] = [[]]
    for part in parts:
        alternatives = _dnf(part) if _has_or(part) else [[part]]
        result = [r + alt for r in result for alt in alternatives]
        if len(result) > MAX_DISJUNCTS:
            raise KsqlError("WHERE clause is too complex for a pull query")
    return result


def _and_parts(e: A.Expr) -> list[A.Expr]:
    if isinstance(e, A.Logical) and e.op == "AND":
        return [p for o in e.operands for p in _and_parts(o)]
    if isinstance(e, A.Binary) and e.op == "AND":
        return _and_parts(e.left) + _and_parts(e.right)
    return [e]


def _has_or(e: A.Expr) -> bool:
    return (isinstance(e, A.Logical | A.Binary)) and e.op == "OR"


def _disjunct_text(conj: list[A.Expr]) -> str:
    if len(conj) == 1:
        return expr_text(conj[0])
    return "(" + " AND ".join(expr_text(c) for c in conj) + ")"


def _key_of(e: A.Expr, keys: list[ColumnDef]) -> ColumnDef | None:
    if isinstance(e, A.ColumnRef):
        for k in keys:
            if k[0] == e.name:
                return k
    return None


def _refs(e: A.Expr) -> set[str]:
    """Column names an expression reads."""
    if isinstance(e, A.ColumnRef):
        return {e.name}
    out: set[str] = set()
    for value in vars(e).values():
        items = value if isinstance(value, tuple | list) else (value,)
        for item in items:
            if isinstance(item, A.Expr):
                out |= _refs(item)
            elif isinstance(item, tuple):
                out |= {n for x in item if isinstance(x, A.Expr) for n in _refs(x)}
    return out


def _check_like(conj: list[A.Expr], types: dict[str, SqlType], table_scan: bool) -> None:
    """ksqlDB's checks of a LIKE in a pull query's WHERE clause: a column on its left must be a
    STRING and its pattern a string literal (whichever way the query runs); anything else on
    its left needs a table scan."""
    for e in conj:
        if not isinstance(e, A.Like) or e.negated:
            continue
        if not isinstance(e.operand, A.ColumnRef):
            if not table_scan:
                raise KsqlError("Like condition must be between strings")
            continue
        typ = types.get(e.operand.name)
        if typ is not None and typ.base != "STRING":
            message = "The column type for Like condition must be VARCHAR."
            raise KsqlError(f"{message} The column type is {typ.base}")
        pattern = e.pattern
        if not (
            isinstance(pattern, A.Literal)
            and (pattern.value is None or isinstance(pattern.value, str))
        ):
            raise KsqlError("Like condition on non-string pattern")


def codegen_message(select: A.Select, message: str) -> str:
    """ksqlDB rewrites a pull query's `x BETWEEN a AND b` into `x >= a AND x <= b` after the
    analyzer's type check (which does not compare a BETWEEN's bounds), so a bound of the wrong
    type is only found when that rewritten clause is compiled: `Invalid expression: …` rather
    than the analyzer's `Error in WHERE expression: …` (and no `Statement:`)."""
    prefix = "Error in WHERE expression: Cannot compare "
    if select.where is None or not message.startswith(prefix):
        return message
    for e in _walk(select.where):
        if not isinstance(e, A.Between) or e.negated:
            continue
        for bound, op in ((e.low, "GREATER_THAN_OR_EQUAL"), (e.high, "LESS_THAN_OR_EQUAL")):
            compared = f"{prefix}{expr_text(e.operand)} (", f" to {expr_text(bound)} (", op
            if message.startswith(compared[0]) and all(c in message for c in compared[1:]):
                return "Invalid expression: " + message.removeprefix("Error in WHERE expression: ")
    return message


def _walk(e: A.Expr) -> list[A.Expr]:
    """`e` and every expression inside it."""
    out = [e]
    for value in vars(e).values():
        items = value if isinstance(value, tuple | list) else (value,)
        for item in items:
            if isinstance(item, A.Expr):
                out += _walk(item)
    return out


def _disjunct_keys(
    conj: list[A.Expr],
    keys: list[ColumnDef],
    table_scan: bool,
    range_scan: bool,
    windowed: bool,
) -> list[tuple[Any, ...]] | None:
    """One conjunction's key values to look up (None: this disjunct needs a scan)."""
    key_names = {k[0] for k in keys}
    equal: dict[str, list[Any]] = {}
    constraints: dict[str, int] = {}
    ranged = False
    unsupported: str | None = None
    for e in conj:
        kind, column, values = _constraint(e, keys, key_names)
        if kind == "none":
            continue
        constraints[column] = constraints.get(column, 0) + 1
        if kind == "eq" and values is not None:
            equal[column] = values
        elif kind == "range":
            ranged = True
        elif kind in ("ne", "expr", "indirect") and unsupported is None:
            unsupported = kind
            if kind == "ne":
                equal.pop(column, None)
        if kind == "eq" and values is None and unsupported is None:
            unsupported = "unresolved"
    complete = all(k[0] in equal for k in keys) and not ranged and unsupported is None
    if any(n > 1 for n in constraints.values()):
        if not table_scan:
            raise KsqlError(
                "A comparison condition on the key column cannot be combined with other "
                "comparisons such as an IN predicate"
            )
        complete = False
    if complete and not windowed:
        return _product([equal[k[0]] for k in keys])
    if table_scan:
        return None
    _refuse(conj, keys, constraints, unsupported, ranged, range_scan, windowed)
    return None


def _refuse(
    conj: list[A.Expr],
    keys: list[ColumnDef],
    constraints: dict[str, int],
    unsupported: str | None,
    ranged: bool,
    range_scan: bool,
    windowed: bool,
) -> None:
    """ksqlDB's message for a disjunct it cannot serve without a table scan."""
    if not constraints:
        raise KsqlError(f"WHERE clause missing key column for disjunct: {_disjunct_text(conj)}")
    if unsupported == "indirect":
        raise KsqlError("A comparison must directly reference a key column.")
    if unsupported in ("expr", "unresolved"):
        raise KsqlError("A comparison must be between a key column and a resolvable expression.")
    if len(keys) > 1 and not all(k[0] in constraints for k in keys):
        raise KsqlError("Multi-column sources must specify every key in the WHERE clause.")
    if unsupported == "ne":
        key_text = ", ".join(f"`{n}` {t} KEY" for n, t in keys)
        raise KsqlError(f"Bound on key columns '[{key_text}]' must currently be '='. ")
    if ranged and not windowed and range_scan and len(keys) == 1 and keys[0][1].base == "STRING":
        return
    if windowed and not ranged:
        return
    raise KsqlError("Query requires table scan to be enabled")


def _constraint(
    e: A.Expr, keys: list[ColumnDef], key_names: set[str]
) -> tuple[str, str, list[Any] | None]:
    """Classify one conjunct: ("eq", key, values) for `KEY = v` / `KEY IN (…)`, ("range", …),
    ("ne", …), ("expr", …) for a key compared with a column, ("indirect", …) for a key inside
    an expression, ("none", "", None) when it does not bound a key."""
    if isinstance(e, A.InList) and not e.negated:
        key = _key_of(e.operand, keys)
        if key is not None:
            return _in_list(e, key)
    if isinstance(e, A.Binary) and e.op in COMPARISONS:
        for side, other, op in ((e.left, e.right, e.op), (e.right, e.left, _flip(e.op))):
            key = _key_of(side, keys)
            if key is None:
                continue
            if _refs(other):
                return "expr", key[0], None
            if op == "=":
                return "eq", key[0], _equal_value(other, key)
            return ("ne" if op in ("<>", "!=") else "range"), key[0], None
        touched = (_refs(e.left) | _refs(e.right)) & key_names
        if touched:
            return "indirect", sorted(touched)[0], None
    if isinstance(e, A.Between) and not e.negated and _key_of(e.operand, keys) is not None:
        assert isinstance(e.operand, A.ColumnRef)
        return "range", e.operand.name, None
    return "none", "", None


def _in_list(e: A.InList, key: ColumnDef) -> tuple[str, str, list[Any] | None]:
    for item in e.items:
        if isinstance(item, A.Literal) and item.value is None:
            raise KsqlError(f"Primary key columns can not be NULL: ({key[0]} = null)")
    if any(_refs(item) for item in e.items):
        return "expr", key[0], None
    return "eq", key[0], _literal_values(list(e.items), key)


def _equal_value(e: A.Expr, key: ColumnDef) -> list[Any] | None:
    """`KEY = v`: the key value to look up, `v` a literal or an expression without columns
    (resolved as ksqlDB's GenericExpressionResolver does: `ID = 10 + 1` looks up 11). None:
    not a value of the key's kind, so scan (the expression compiler refuses what ksqlDB
    refuses)."""
    if isinstance(e, A.Literal) and e.value is None:
        raise KsqlError(
            f"Error in WHERE expression: Comparison with NULL not supported: {key[1]} = NULL\n"
            "Use 'IS NULL' or 'IS NOT NULL' instead."
        )
    resolved = _resolve(e)
    if resolved is None:
        return None
    value, typ = resolved
    if value is None:
        raise KsqlError(f"Primary key columns can not be NULL: ({key[0]} = {expr_text(e)})")
    converted = _as_key(value, typ, key[1])
    return None if converted is _NOT_LITERAL else [converted]


def _literal_values(items: list[A.Expr], key: ColumnDef) -> list[Any] | None:
    """The key values of an IN list's items (None when one does not resolve to a value: scan
    instead). A value of another kind than the key's is refused as ksqlDB refuses it."""
    name, typ = key
    out: list[Any] = []
    for item in items:
        resolved = _resolve(item)
        if resolved is None:
            return None
        if resolved[0] is None:
            raise KsqlError(f"Primary key columns can not be NULL: ({name} = {expr_text(item)})")
        value = _as_key(*resolved, typ)
        if value is _NOT_LITERAL and typ.base not in _SCALARS:
            return None  # a temporal or BYTES key: the scan's WHERE compares as ksqlDB does
        if value is _NOT_LITERAL:
            raise KsqlError(
                f"{expr_text(item)} can not be converted to the type of the key column: "
                f"{name} {typ} KEY"
            )
        out.append(value)
    return out


def _resolve(e: A.Expr) -> tuple[Any, SqlType | None] | None:
    """(value, type) of an expression that reads no column, None when it does not evaluate."""
    value = _literal(e)
    if value is not _NOT_LITERAL:
        return value, e.type if isinstance(e, A.Literal) else None
    if _refs(e):
        return None
    compiler = ExpressionCompiler(Scope([]))
    try:
        compiled = compiler.compile(e)
        return eval(compiled.code, dict(compiler.namespace), {"r": []}), compiled.type
    except Exception:  # not resolvable here: the WHERE clause's own compilation reports it
        return None


def _as_key(value: Any, typ: SqlType | None, key: SqlType) -> Any:
    """`value` as a value of the key's type (ksqlDB's strict coercion: numbers widen, nothing
    else converts); _NOT_LITERAL when it does not fit."""
    base = key.base
    if base not in _SCALARS:
        return value if typ == key else _NOT_LITERAL
    if value is None or not _fits(value, base):
        return _NOT_LITERAL
    if base == "DOUBLE":
        return float(value)
    if base == "DECIMAL":
        return cast_value(value, typ, key)
    return value


_NOT_LITERAL = object()
_SCALARS = ("STRING", "INTEGER", "BIGINT", "DOUBLE", "DECIMAL", "BOOLEAN")
"""key types whose values `_fits` checks; any other key takes a value of its own type only"""


def _literal(e: A.Expr) -> Any:
    if isinstance(e, A.Literal):
        return e.value
    if isinstance(e, A.Unary) and e.op == "-" and isinstance(e.operand, A.Literal):
        v = e.operand.value
        return -v if isinstance(v, int | float) and not isinstance(v, bool) else _NOT_LITERAL
    return _NOT_LITERAL


def _fits(value: Any, base: str) -> bool:
    if value is None:
        return False
    if base == "STRING":
        return isinstance(value, str)
    if base in ("INTEGER", "BIGINT"):
        return isinstance(value, int) and not isinstance(value, bool)
    if base in ("DOUBLE", "DECIMAL"):
        return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if base == "BOOLEAN":
        return isinstance(value, bool)
    return True


def _flip(op: str) -> str:
    return {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)


def _product(values: list[list[Any]]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [()]
    for options in values:
        out = [(*prefix, v) for prefix in out for v in options]
        if len(out) > MAX_DISJUNCTS:
            raise KsqlError("WHERE clause is too complex for a pull query")
    return out


__all__ = [
    "RANGE_SCAN_PROPERTY",
    "TABLE_SCAN_PROPERTY",
    "PullPlan",
    "check_pull_clauses",
    "check_pull_table",
    "codegen_message",
    "not_queryable",
    "plan_pull",
    "pull_metastore",
    "where_statement",
]
