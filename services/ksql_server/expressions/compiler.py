"""Compile expression trees to Python source, then to one function per query.

Why code generation: a persistent query evaluates the same projection and filter for every
record. Walking the tree per record costs a Python call per node; generating the whole
filter + projection as straight-line code in one function (with `:=` temporaries for null
checks) makes the per-record cost a handful of bytecodes per column, evaluated over a batch in
one loop. Type inference happens here too, so sink schemas are known at CREATE time.

What goes into the source: only the expression's shape — operators, helper names, row indexes,
temporaries. Every value that comes from the statement (literals, column and field names, LIKE
escapes, output names) is bound in the function's namespace as a constant (`_c<n>`) and named in
the source, so a 15 MB string literal costs one reference, not 15 MB of source for Python to
tokenize, parse and compile (which cost gigabytes). The source's nesting is bounded too: a
sub-expression taller than HOIST_HEIGHT is compiled into a function of its own and called
(`_c<n>(r)`), so a deeply nested statement never reaches Python's parser limits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.errors import CodegenError, KsqlError, UnresolvedError, UnsupportedError
from services.ksql_server.expressions import coercion as C
from services.ksql_server.expressions import runtime_helpers as H
from services.ksql_server.expressions.comparison import (
    check_comparison,
    comparison_domain,
)
from services.ksql_server.functions import lookup
from services.ksql_server.functions.datetime_fns import UNIT_FUNCTIONS, unit_name
from services.ksql_server.functions.lambdas import LAMBDA_FUNCTIONS, lambda_params, lambda_shape
from services.ksql_server.functions.lambdas import RUNTIME as LAMBDA_RUNTIME
from services.ksql_server.parser import ast as A
from services.ksql_server.types import SqlType
from services.ksql_server.values import to_string

FILTER_CLAUSES = ("WHERE", "HAVING")
CLAUSE_KINDS = {"SELECT": "Select", "GROUP BY": "Group By", "PARTITION BY": "Partition By"}
"""How ksqlDB names a clause in `Invalid <kind>: …` (a filter is a `Predicate`)."""

HOIST_HEIGHT = 12
"""Tree levels one generated expression may span before a sub-expression becomes a function of
its own: each level adds at most a few parentheses, and Python's parser allows 200."""


@dataclass(frozen=True)
class Compiled:
    code: str
    type: SqlType | None  # None: the NULL literal (no type yet)


class Scope:
    """The columns an expression can reference: name → (row index, type)."""

    def __init__(self, columns: Sequence[tuple[str, SqlType]], sources: Sequence[str] = ()) -> None:
        self.columns = list(columns)
        self.index = {name: (i, t) for i, (name, t) in enumerate(columns)}
        self.sources = {s for s in sources if s}
        self.clause = "SELECT"

    def resolve(self, ref: A.ColumnRef) -> tuple[int, SqlType]:
        if ref.source is not None and ref.source not in self.sources:
            if ref.name in self.index and not self.sources:
                pass
            else:
                # `STRUCTCOL.FIELD` written with a dot is a dereference in ksqlDB
                raise UnresolvedError(
                    f"{self.clause} column '{ref.source}.{ref.name}' cannot be resolved."
                )
        found = self.index.get(ref.name)
        if found is None:
            shown = f"{ref.source}.{ref.name}" if ref.source else ref.name
            extra = ""
            if self.clause == "PARTITION BY":
                extra = (
                    f" '{shown}' must be a column in the source schema since PARTITION BY is "
                    "applied on the input."
                )
            raise UnresolvedError(f"{self.clause} column '{shown}' cannot be resolved.{extra}")
        return found


_CONCAT = lookup("CONCAT").impl  # type: ignore[union-attr]
_ROWTIME_LIKE = ("ROWTIME", "WINDOWSTART", "WINDOWEND")

_CMP = {"=": "==", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class ExpressionCompiler:
    """Turns expressions into Python expression source over a row `r`."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.namespace: dict[str, Any] = {
            "_idiv": H.idiv,
            "_imod": H.imod,
            "_ddiv": H.ddiv,
            "_dmod": H.dmod,
            "_dq": H.dq,
            "_ddec": H.ddec,
            "_and": H.and_all,
            "_or": H.or_any,
            "_like": H.like,
            "_between": H.between,
            "_in": H.in_list,
            "_sub": H.subscript,
            "_deref": H.deref,
            "_cast": H.cast_value,
            "_tostr": to_string,
            "_D": Decimal,
            "_rowts": H.rowtime_string,
            "_nz": H.or_null,
            "_jcat": H.java_concat,
        }
        self._n = 0
        self._heights: list[int] = []
        self._bound: dict[str, Compiled] = {}
        """lambda parameters in scope: name → the Python variable holding it"""

    # ------------------------------------------------------------------ utilities
    def _tmp(self) -> str:
        self._n += 1
        return f"_t{self._n}"

    def const(self, value: Any) -> str:
        self._n += 1
        name = f"_c{self._n}"
        self.namespace[name] = value
        return name

    def type_of(self, expr: A.Expr) -> SqlType | None:
        return self.compile(expr).type

    def compile_clause(self, e: A.Expr, clause: str) -> Compiled:
        """`e` as the expression of a clause, with ksqlDB's error wording for that clause.

        ksqlDB checks types first (a WHERE/HAVING type error reads `Error in WHERE expression:
        …`, a filter that is not BOOLEAN `Type error in WHERE expression: …`) and generates
        code second (`Invalid Predicate: …` for a filter, `Invalid Select: …` for a projection,
        `Invalid Group By: …`), so both the message and its prefix depend on the clause."""
        is_filter = clause in FILTER_CLAUSES
        saved, self.scope.clause = self.scope.clause, clause
        try:
            compiled = self.compile(e)
        except CodegenError as exc:
            kind = "Predicate" if is_filter else CLAUSE_KINDS.get(clause, clause.title())
            raise KsqlError(f"Invalid {kind}: {exc}.") from exc
        except (UnsupportedError, UnresolvedError):
            raise
        except KsqlError as exc:
            if is_filter:
                raise KsqlError(f"Error in {clause} expression: {exc}") from exc
            raise
        finally:
            self.scope.clause = saved
        if is_filter and compiled.type is not None and compiled.type.base != "BOOLEAN":
            raise KsqlError(
                f"Type error in {clause} expression: Should evaluate to boolean but is "
                f"{_sql(e)} ({compiled.type}) instead."
            )
        return compiled

    # ------------------------------------------------------------------ dispatch
    def compile(self, e: A.Expr) -> Compiled:
        method = getattr(self, "_" + type(e).__name__, None)
        if method is None:
            raise UnsupportedError(f"expression {type(e).__name__}")
        self._heights.append(0)
        try:
            result: Compiled = method(e)
        finally:
            height = self._heights.pop() + 1
        if height > HOIST_HEIGHT:
            result, height = self._hoist(result), 1
        if self._heights:
            self._heights[-1] = max(self._heights[-1], height)
        return result

    def _hoist(self, c: Compiled) -> Compiled:
        """`c` as a call of a function of its own (its temporaries become that function's)."""
        params = ", ".join(["r", *(b.code for b in self._bound.values())])
        source = f"def _hoisted({params}):\n    return {c.code}\n"
        exec(compile(source, "<ksql-expression>", "exec"), self.namespace)
        fn = self.namespace.pop("_hoisted")
        return Compiled(f"{self.const(fn)}({params})", c.type)

    def _Literal(self, e: A.Literal) -> Compiled:
        if e.value is None:
            return Compiled("None", None)
        if e.value is True or e.value is False:
            return Compiled(repr(e.value), e.type)
        # never repr() into the source: the value is the client's, of any size
        return Compiled(self.const(e.value), e.type)

    def _ColumnRef(self, e: A.ColumnRef) -> Compiled:
        if e.source is None and e.name in self._bound:
            return self._bound[e.name]
        if (
            e.source is not None
            and e.source not in self.scope.sources
            and e.source in self.scope.index
        ):
            # `col.field` with a dot: struct dereference
            i, t = self.scope.index[e.source]
            return self._deref_of(Compiled(f"r[{i}]", t), e.name)
        i, t = self.scope.resolve(e)
        return Compiled(f"r[{i}]", t)

    def _Unary(self, e: A.Unary) -> Compiled:
        inner = self.compile(e.operand)
        t = self._tmp()
        if e.op == "NOT":
            if inner.type is not None and inner.type.base != "BOOLEAN":
                raise KsqlError(f"Unsupported type for NOT operator: {inner.type}")
            return Compiled(f"(None if ({t} := {inner.code}) is None else not {t})", T.BOOLEAN)
        if inner.type is not None and not inner.type.is_numeric:
            raise KsqlError(f"Unsupported arithmetic type for unary minus: {inner.type}")
        return Compiled(f"(None if ({t} := {inner.code}) is None else -{t})", inner.type)

    def _Logical(self, e: A.Logical) -> Compiled:
        operands = [self.compile(o) for o in e.operands]
        for side in operands:
            if side.type is not None and side.type.base != "BOOLEAN":
                raise KsqlError(f"Type mismatch: {e.op} requires BOOLEAN operands, got {side.type}")
        fn = "_and" if e.op == "AND" else "_or"
        return Compiled(f"{fn}({', '.join(o.code for o in operands)})", T.BOOLEAN)

    def _Binary(self, e: A.Binary) -> Compiled:
        left = self.compile(e.left)
        right = self.compile(e.right)
        if e.op in _CMP:
            return self._comparison(e.op, left, right, e)
        if e.op == "+" and _is_string(left.type) and _is_string(right.type):
            # ksqlDB's `+` of two strings is Java's concatenation: a null side reads "null"
            return Compiled(f"_jcat({left.code}, {right.code})", T.STRING)
        if e.op == "||":
            return Compiled(
                f"{self.const(_CONCAT)}({self._as_string(left)}, {self._as_string(right)})",
                T.STRING,
            )
        if left.type is None or right.type is None:
            from services.ksql_server.parser.naming import expr_text

            lt = "null" if left.type is None else str(left.type)
            rt = "null" if right.type is None else str(right.type)
            raise KsqlError(
                f"Error processing expression: {expr_text(e)}. Arithmetic on types {lt} and {rt} "
                "are not supported."
            )
        return self._arithmetic(e, left, right)

    def _as_string(self, c: Compiled) -> str:
        if c.type is None or c.type.base == "STRING":
            return c.code
        return f"_tostr({c.code}, {self.const(c.type)})"

    def _comparison(self, op: str, left: Compiled, right: Compiled, e: A.Binary) -> Compiled:
        """ksqlDB comparisons are two-valued: a null operand makes the comparison false."""
        left = self._rowtime_string(e.right, left, right)
        right = self._rowtime_string(e.left, right, left)
        check_comparison(left.type, op, right.type, e.left, e.right)
        lcode, rcode = self.compare_operands(left, right)
        a, b = self._tmp(), self._tmp()
        return Compiled(
            f"(False if ({a} := {lcode}) is None or ({b} := {rcode}) is None "
            f"else {a} {_CMP[op]} {b})",
            T.BOOLEAN,
        )

    def _rowtime_string(self, other_expr: A.Expr, this: Compiled, other: Compiled) -> Compiled:
        """`ROWTIME > '2018-01-01T00:00:00'`: a string compared with ROWTIME is a timestamp."""
        if (
            isinstance(other_expr, A.ColumnRef)
            and other_expr.name in _ROWTIME_LIKE
            and this.type is not None
            and this.type.base == "STRING"
        ):
            return Compiled(f"_rowts({this.code})", T.BIGINT)
        del other
        return this

    def compare_operands(self, left: Compiled, right: Compiled) -> tuple[str, str]:
        """Both sides of a comparison as the values Java compares (see `comparison_domain`)."""
        domain = comparison_domain(left.type, right.type)
        return self._to_domain(left, domain), self._to_domain(right, domain)

    def coerce_for_compare(self, c: Compiled, other: SqlType | None) -> str:
        """One side of a comparison with `other` as the value Java compares."""
        return self._to_domain(c, comparison_domain(c.type, other))

    def _to_domain(self, c: Compiled, domain: SqlType | None) -> str:
        t = c.type
        if t is None or domain is None or t.base == domain.base:
            return c.code
        if domain.base == "DECIMAL":
            return f"{self.const(H.compare_decimal)}({c.code})"
        if domain.base == "DOUBLE":
            t1 = self._tmp()
            return f"(None if ({t1} := {c.code}) is None else float({t1}))"
        if t.base == "DATE" and domain.base == "TIMESTAMP":
            t1 = self._tmp()
            return f"(None if ({t1} := {c.code}) is None else {t1} * 86400000)"
        if t.base == "STRING":
            return f"_cast({c.code}, None, {self.const(domain)})"
        return c.code

    def _arithmetic(self, e: A.Binary, left: Compiled, right: Compiled) -> Compiled:
        op, lt, rt = e.op, left.type, right.type
        for t in (lt, rt):
            if t is not None and not t.is_numeric:
                raise KsqlError(
                    f"Error processing expression: {_sql(e)}. Unsupported arithmetic types. "
                    f"{lt.base if lt else None} {rt.base if rt else None}"
                )
        if lt is None and rt is None:
            return Compiled("None", T.INTEGER)
        if lt is None or rt is None:
            return Compiled("None", lt or rt)
        result = _arith_type(op, lt, rt)
        a, b = self._tmp(), self._tmp()
        x, y = a, b
        base = result.base
        if base == "DOUBLE":
            if lt.base != "DOUBLE":
                x = f"float({a})"
            if rt.base != "DOUBLE":
                y = f"float({b})"
            body = {
                "+": f"{x} + {y}",
                "-": f"{x} - {y}",
                "*": f"{x} * {y}",
                "/": f"_ddiv({x}, {y})",
                "%": f"_dmod({x}, {y})",
            }[op]
        elif base == "DECIMAL":
            if lt.base != "DECIMAL":
                x = f"_D({a})"
            if rt.base != "DECIMAL":
                y = f"_D({b})"
            if op == "/":
                body = f"_ddec({x}, {y}, {result.scale})"
            elif op == "%":
                body = f"_dq({x} % {y}, {result.scale})"
            else:
                body = f"_dq({x} {op} {y}, {result.scale})"
        else:
            body = {
                "+": f"{x} + {y}",
                "-": f"{x} - {y}",
                "*": f"{x} * {y}",
                "/": f"_idiv({x}, {y})",
                "%": f"_imod({x}, {y})",
            }[op]
        return Compiled(
            f"(None if ({a} := {left.code}) is None or ({b} := {right.code}) is None else {body})",
            result,
        )

    def _IsNull(self, e: A.IsNull) -> Compiled:
        inner = self.compile(e.operand)
        return Compiled(f"(({inner.code}) is {'not ' if e.negated else ''}None)", T.BOOLEAN)

    def _Like(self, e: A.Like) -> Compiled:
        value = self.compile(e.operand)
        if value.type is not None and value.type.base != "STRING":
            raise KsqlError(f"LIKE operator requires STRING operands, got {value.type}")
        if e.escape is not None and len(e.escape) != 1:
            raise KsqlError(f"Escape character must be a single character, got: '{e.escape}'")
        neg = "not " if e.negated else ""
        if isinstance(e.pattern, A.Literal) and isinstance(e.pattern.value, str):
            rx = self.const(H.like_regex(e.pattern.value, e.escape))
            t = self._tmp()
            return Compiled(
                f"(False if ({t} := {value.code}) is None "
                f"else ({neg}{rx}.fullmatch({t})) is not None)"
                if not neg
                else f"(False if ({t} := {value.code}) is None else {rx}.fullmatch({t}) is None)",
                T.BOOLEAN,
            )
        pattern = self.compile(e.pattern)
        t = self._tmp()
        code = f"_like({value.code}, {pattern.code}, {self.const(e.escape)})"
        if neg:
            code = f"(None if ({t} := {code}) is None else not {t})"
        return Compiled(code, T.BOOLEAN)

    def _Between(self, e: A.Between) -> Compiled:
        """`v BETWEEN lo AND hi` is `v >= lo AND v <= hi` in ksqlDB: each bound compared (and
        converted for the comparison) on its own."""
        v, lo, hi = self.compile(e.operand), self.compile(e.low), self.compile(e.high)
        lo = self._rowtime_string(e.operand, lo, v)
        hi = self._rowtime_string(e.operand, hi, v)
        for bound, op, bound_expr in ((lo, ">=", e.low), (hi, "<=", e.high)):
            if v.type is not None and bound.type is not None:
                check_comparison(v.type, op, bound.type, e.operand, bound_expr)
        tv = self._tmp()
        value = Compiled(tv, v.type)
        lo_v, lo_code = self.compare_operands(value, lo)
        hi_v, hi_code = self.compare_operands(value, hi)
        code = f"(({tv} := {v.code}), _between({lo_v}, {lo_code}, {hi_v}, {hi_code}))[1]"
        if e.negated:
            t = self._tmp()
            code = f"(None if ({t} := {code}) is None else not {t})"
        return Compiled(code, T.BOOLEAN)

    def _InList(self, e: A.InList) -> Compiled:
        """ksqlDB coerces the operand and the list to one type first (see `coercion`); a NULL
        in the list never matches."""
        items = [i for i in e.items if not (isinstance(i, A.Literal) and i.value is None)]
        try:
            _common, coded = self.user_list([e.operand, *items])
        except KsqlError as exc:
            raise CodegenError(str(exc)) from exc
        code = f"_in({coded[0]}, ({''.join(c + ', ' for c in coded[1:])}))"
        if e.negated:
            t = self._tmp()
            code = f"(None if ({t} := {code}) is None else not {t})"
        return Compiled(code, T.BOOLEAN)

    def user_list(self, exprs: Sequence[A.Expr]) -> tuple[SqlType | None, list[str]]:
        """The common type of a user-written list and each element's code at that type
        (literals converted here, once; other expressions CAST at run time)."""
        compiled = [self.compile(x) for x in exprs]
        common = C.common_type(
            [C.Typed(x, c.type) for x, c in zip(exprs, compiled, strict=True)], self.type_of
        )
        return common, [self._to_common(x, c, common) for x, c in zip(exprs, compiled, strict=True)]

    def _to_common(self, x: A.Expr, c: Compiled, common: SqlType | None) -> str:
        if common is None or c.type is None or c.type == common:
            return c.code
        if isinstance(x, A.Literal):
            try:
                return self.const(C.coerce_literal(x.value, c.type, common))
            except (ValueError, ArithmeticError) as exc:
                raise C.invalid_syntax(x.value, common) from exc
        return f"_cast({c.code}, {self.const(c.type)}, {self.const(common)})"

    def _DistinctFrom(self, e: A.DistinctFrom) -> Compiled:
        a, b = self.compile(e.left), self.compile(e.right)
        if a.type is not None and b.type is not None:
            name = "IS NOT DISTINCT FROM" if e.negated else "IS DISTINCT FROM"
            check_comparison(a.type, name, b.type, e.left, e.right)
        acode, bcode = self.compare_operands(a, b)
        op = "==" if e.negated else "!="
        return Compiled(f"(({acode}) {op} ({bcode}))", T.BOOLEAN)

    def _Case(self, e: A.Case) -> Compiled:
        results = [self.compile(r) for _, r in e.whens]
        default = self.compile(e.default) if e.default is not None else Compiled("None", None)
        rtype = _common_type([r.type for r in results] + [default.type], "CASE")
        if rtype is None:
            raise KsqlError("Invalid Case expression. All case branches have NULL type")
        code = self._coerce(default, rtype)
        if e.operand is not None:
            op = self.compile(e.operand)
            t = self._tmp()
            for (cond, _), res in zip(reversed(e.whens), reversed(results), strict=True):
                c = self.compile(cond)
                code = f"({self._coerce(res, rtype)} if {t} == {c.code} else {code})"
            return Compiled(
                f"(None if ({t} := {op.code}) is None else {code})"
                if default.code == "None"
                else f"(({t} := {op.code}), {code})[1]",
                rtype,
            )
        for (cond, _), res in zip(reversed(e.whens), reversed(results), strict=True):
            c = self.compile(cond)
            if c.type is not None and c.type.base != "BOOLEAN":
                raise KsqlError(
                    f"WHEN operand type should be boolean. Type for '{_sql(cond)}' is {c.type}"
                )
            code = f"({self._coerce(res, rtype)} if ({c.code}) is True else {code})"
        return Compiled(code, rtype)

    def implicit_cast(self, c: Compiled, target: SqlType) -> Compiled:
        """`c` as a sink column of type `target` when ksqlDB casts it implicitly (INSERT INTO a
        DECIMAL(5, 2) column from `SELECT 1`); unchanged otherwise, for the schema check to
        refuse."""
        if c.type is None or c.type == target or not C.can_implicitly_cast(c.type, target):
            return c
        return Compiled(self._coerce(c, target), target)

    def _coerce(self, c: Compiled, target: SqlType | None) -> str:
        if target is None or c.type is None or c.type == target:
            return c.code
        return f"_cast({c.code}, {self.const(c.type)}, {self.const(target)})"

    def _Cast(self, e: A.Cast) -> Compiled:
        inner = self.compile(e.operand)
        src = inner.type
        if src is not None and not _castable(src, e.type):
            raise CodegenError(f"Cast of {src} to {e.type} is not supported")
        if src == e.type:
            return Compiled(inner.code, e.type)
        code = f"_cast({inner.code}, {self.const(src)}, {self.const(e.type)})"
        # a CAST that fails is NULL where it is nested (ksqlDB's nested error handling); at the
        # top of a clause the row's own error handling gives the same NULL
        nested = len(self._heights) > 1
        return Compiled(f"_nz(lambda: {code})" if nested else code, e.type)

    def or_null(self, code: str, e: A.Expr) -> str:
        """`code`, NULL instead of an error (ksqlDB evaluates function arguments, constructor
        elements and casts this way, so COALESCE(PARSE_DATE(bad), x) is x)."""
        if isinstance(e, A.Literal | A.ColumnRef | A.Cast):
            return code
        return f"_nz(lambda: {code})"

    def _Call(self, e: A.Call) -> Compiled:
        if e.name in LAMBDA_FUNCTIONS:
            return self._lambda_call(e)
        fn = lookup(e.name)
        if fn is None:
            raise UnsupportedError(f"function {e.name}")
        args = [self.compile(a) for a in _unit_keyword(e)]
        arg_types = [a.type for a in args]
        rtype = fn.check(arg_types)
        if fn.params is not None:
            targets = fn.params(arg_types)
            args = [
                Compiled(self._coerce(a, t), t or a.type)
                for a, t in zip(args, targets, strict=True)
            ]
        codes = [
            self.or_null(a.code, x) if isinstance(x, A.Call | A.Dereference) else a.code
            for a, x in zip(args, _unit_keyword(e), strict=True)
        ]
        if fn.pass_types:
            codes.insert(0, self.const(tuple(arg_types)))
        return Compiled(f"{self.const(fn.impl)}({', '.join(codes)})", rtype)

    def _Subscript(self, e: A.Subscript) -> Compiled:
        base = self.compile(e.base)
        idx = self.compile(e.index)
        bt = base.type
        if bt is None or bt.base not in ("ARRAY", "MAP"):
            raise KsqlError(f"Type {bt} does not support subscripting")
        return Compiled(f"_sub({base.code}, {idx.code})", bt.item)

    def _Dereference(self, e: A.Dereference) -> Compiled:
        return self._deref_of(self.compile(e.base), e.field)

    def _deref_of(self, base: Compiled, name: str) -> Compiled:
        bt = base.type
        if bt is None or bt.base != "STRUCT":
            raise KsqlError(f"Can't dereference a non-struct: {bt}")
        fields = dict(bt.fields)
        if name not in fields:
            raise KsqlError(f"Could not find field '{name}' in '{bt}'.")
        return Compiled(f"_deref({base.code}, {self.const(name)})", fields[name])

    def _ArrayCtor(self, e: A.ArrayCtor) -> Compiled:
        """ARRAY[…]: the elements' common type by ksqlDB's list coercion (ARRAY[1, '2'] is
        ARRAY<INTEGER>, ARRAY[1, 2.5] ARRAY<DECIMAL(11, 1)>)."""
        if not e.items:
            raise KsqlError(
                "Array constructor cannot be empty. Please supply at least one element "
                "(see https://github.com/confluentinc/ksql/issues/4239)."
            )
        item_type, codes = self.user_list(e.items)
        if item_type is None:
            raise KsqlError(
                "Cannot construct an array with all NULL elements (see "
                "https://github.com/confluentinc/ksql/issues/4239). As a workaround, you may cast "
                "a NULL value to the desired type."
            )
        codes = [self.or_null(c, x) for c, x in zip(codes, e.items, strict=True)]
        return Compiled("[" + ", ".join(codes) + "]", T.array(item_type))

    def _MapCtor(self, e: A.MapCtor) -> Compiled:
        """MAP(k := v, …): keys and values each take their list's common type."""
        if not e.entries:
            raise KsqlError(
                "Map constructor cannot be empty. Please supply at least one key value pair "
                "(see https://github.com/confluentinc/ksql/issues/4239)."
            )
        kt, keys = self.user_list([k for k, _ in e.entries])
        vt, vals = self.user_list([v for _, v in e.entries])
        for t, what in ((kt, "keys"), (vt, "values")):
            if t is None:
                raise KsqlError(
                    f"Cannot construct a map with all NULL {what} (see "
                    "https://github.com/confluentinc/ksql/issues/4239). As a workaround, you may "
                    f"cast a NULL {what[:-1]} to the desired type."
                )
        assert kt is not None and vt is not None
        pairs = ", ".join(
            f"{self.or_null(k, ke)}: {self.or_null(v, ve)}"
            for k, v, (ke, ve) in zip(keys, vals, e.entries, strict=True)
        )
        return Compiled("{" + pairs + "}", T.map_of(kt, vt))

    def _StructCtor(self, e: A.StructCtor) -> Compiled:
        names = [n for n, _ in e.fields]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise KsqlError(f"Duplicate field names found in STRUCT: '{dup}' and '{dup}'")
        parts = [(n, self.compile(v)) for n, v in e.fields]
        fields = [(n, c.type or T.STRING) for n, c in parts]
        code = (
            "{"
            + ", ".join(
                f"{self.const(n)}: {self.or_null(c.code, x)}"
                for (n, c), (_, x) in zip(parts, e.fields, strict=True)
            )
            + "}"
        )
        return Compiled(code, T.struct(fields))

    def _Lambda(self, e: A.Lambda) -> Compiled:
        raise KsqlError("A lambda is only allowed as an argument of TRANSFORM, FILTER or REDUCE")

    def _lambda_call(self, e: A.Call) -> Compiled:
        """TRANSFORM / FILTER / REDUCE: each lambda's parameters typed from the collection (and
        REDUCE's initial state), its body compiled into a Python lambda."""
        coll = self.compile(e.args[0])
        shape = lambda_shape(e.name, coll.type, len(e.args))
        assert coll.type is not None
        state = self.compile(e.args[1]) if e.name == "REDUCE" else None
        if state is not None and state.type is None:
            raise KsqlError("REDUCE needs a typed initial state: CAST(NULL AS <type>)")
        bodies = []
        for i, (lam, n) in enumerate(zip(e.args[len(e.args) - len(shape) :], shape, strict=True)):
            if not isinstance(lam, A.Lambda) or len(lam.params) != n:
                raise KsqlError(
                    f"Function '{e.name}' expects a lambda with {n} parameter(s) as its "
                    f"argument {len(e.args) - len(shape) + i + 1}"
                )
            types = lambda_params(e.name, coll.type, state.type if state else None, i)
            bodies.append(self._lambda_body(lam, types))
        args = [coll.code] + ([state.code] if state else []) + [b.code for b in bodies]
        call = f"{self.const(LAMBDA_RUNTIME[(e.name, coll.type.base)])}({', '.join(args)})"
        return Compiled(call, _lambda_result(e.name, coll.type, state, bodies))

    def _lambda_body(self, lam: A.Lambda, types: Sequence[SqlType | None]) -> Compiled:
        saved = dict(self._bound)
        names = []
        for param, typ in zip(lam.params, types, strict=True):
            self._n += 1
            names.append(f"_l{self._n}")
            self._bound[param] = Compiled(names[-1], typ)
        try:
            body = self.compile(lam.body)
        finally:
            self._bound = saved
        return Compiled(f"(lambda {', '.join(names)}: {body.code})", body.type)


# ----------------------------------------------------------------------------- type rules


def _lambda_result(
    name: str, coll: SqlType, state: Compiled | None, bodies: Sequence[Compiled]
) -> SqlType:
    if name == "REDUCE":
        assert state is not None and state.type is not None
        return state.type
    if name == "FILTER":
        if bodies[0].type is not None and bodies[0].type.base != "BOOLEAN":
            raise KsqlError(f"FILTER's lambda must return a BOOLEAN, not {bodies[0].type}")
        return coll
    if coll.base == "ARRAY":
        return T.array(bodies[0].type or T.STRING)
    return T.map_of(bodies[0].type or T.STRING, bodies[1].type or T.STRING)


def _unit_keyword(e: A.Call) -> tuple[A.Expr, ...]:
    """TIMESTAMPADD(SECONDS, 5, ts) and friends: the first argument is a time unit keyword,
    handed to the function as its name (a STRING literal), never resolved as a column."""
    args = e.args
    if e.name in UNIT_FUNCTIONS and args and isinstance(args[0], A.ColumnRef):
        first = args[0]
        unit = unit_name(first.name) if first.source is None else None
        if unit is not None:
            return (A.Literal(unit, T.STRING), *args[1:])
    return args


def _is_string(t: SqlType | None) -> bool:
    return t is not None and t.base == "STRING"


def _sql(e: A.Expr) -> str:
    from services.ksql_server.parser.naming import expr_text

    return expr_text(e)


def _arith_type(op: str, a: SqlType, b: SqlType) -> SqlType:
    if a.base == "DOUBLE" or b.base == "DOUBLE":
        return T.DOUBLE
    if a.base == "DECIMAL" or b.base == "DECIMAL":
        a, b = T.as_decimal(a), T.as_decimal(b)
        p1, s1, p2, s2 = a.precision, a.scale, b.precision, b.scale
        if op in ("+", "-"):
            s = max(s1, s2)
            p = s + max(p1 - s1, p2 - s2) + 1
        elif op == "*":
            p, s = p1 + p2 + 1, s1 + s2
        elif op == "/":
            s = max(6, s1 + p2 + 1)
            p = p1 - s1 + s2 + s
        else:
            s = max(s1, s2)
            p = min(p1 - s1, p2 - s2) + s
        return T.decimal(min(p, 38), min(s, 38))
    if a.base == "BIGINT" or b.base == "BIGINT":
        return T.BIGINT
    return T.INTEGER


def _common_type(types: Sequence[SqlType | None], what: str) -> SqlType | None:
    known = [t for t in types if t is not None]
    if not known:
        return None
    first = known[0]
    if all(t == first for t in known):
        return first
    if all(t.is_numeric for t in known):
        order = ["INTEGER", "BIGINT", "DECIMAL", "DOUBLE"]
        widest = max(known, key=lambda t: order.index(t.base))
        if widest.base == "DECIMAL":
            decs = [T.as_decimal(t) for t in known if t.base != "DOUBLE"]
            scale = max(d.scale for d in decs)
            whole = max(d.precision - d.scale for d in decs)
            return T.decimal(whole + scale, scale)
        return widest
    raise KsqlError(
        f"Invalid Case expression. Type for all 'THEN' clauses should be the same.\n"
        f"THEN expression '{what}' has type: {known[1]}."
        if what == "CASE"
        else f"invalid input syntax for type {first}: mixed types in {what}"
    )


_CASTS: dict[str, tuple[str, ...]] = {
    "BOOLEAN": ("STRING",),
    "INTEGER": ("BIGINT", "DECIMAL", "DOUBLE", "STRING"),
    "BIGINT": ("INTEGER", "DECIMAL", "DOUBLE", "STRING"),
    "DECIMAL": ("INTEGER", "BIGINT", "DECIMAL", "DOUBLE", "STRING"),
    "DOUBLE": ("INTEGER", "BIGINT", "DECIMAL", "STRING"),
    "STRING": (
        *("BOOLEAN", "INTEGER", "BIGINT", "DECIMAL", "DOUBLE"),
        *("TIMESTAMP", "TIME", "DATE", "BYTES"),
    ),
    "ARRAY": ("ARRAY", "STRING"),
    "MAP": ("MAP", "STRING"),
    "STRUCT": ("STRUCT", "STRING"),
    "TIMESTAMP": ("STRING", "TIME", "DATE"),
    "DATE": ("TIMESTAMP", "STRING"),
    "TIME": ("STRING",),
}
"""ksqlDB's CastEvaluator table: source base type → the target base types CAST supports."""


def _castable(src: SqlType, dst: SqlType) -> bool:
    """Whether CAST(src AS dst) is supported; ARRAY, MAP and STRUCT by their parts (a STRUCT
    by the fields both have)."""
    if src == dst:
        return True
    if dst.base not in _CASTS.get(src.base, ()):
        return False
    if src.base == dst.base == "ARRAY":
        assert src.item is not None and dst.item is not None
        return _castable(src.item, dst.item)
    if src.base == dst.base == "MAP":
        assert src.key and src.item and dst.key and dst.item
        return _castable(src.key, dst.key) and _castable(src.item, dst.item)
    if src.base == dst.base == "STRUCT":
        target = dict(dst.fields)
        return all(_castable(t, target[n]) for n, t in src.fields if n in target)
    return True


# ----------------------------------------------------------------------------- batch function

LogFn = Callable[[Any, str, BaseException], None]


def build_batch_function(
    compiler: ExpressionCompiler,
    where: Compiled | None,
    outputs: Sequence[Compiled],
    output_names: Sequence[str],
) -> Callable[[list[Any], LogFn], list[tuple[Any, tuple[Any, ...]]]]:
    """One generated function: for each row, the filter then every output expression.

    An error in the filter drops the row; an error in an output column makes that column null
    (ksqlDB's behaviour); both are reported through `log` so the processing log sees them.
    """
    lines = [
        "def _batch(rows, _log):",
        "    out = []",
        "    append = out.append",
        "    for r in rows:",
    ]
    if where is not None:
        lines += [
            "        try:",
            f"            if ({where.code}) is not True: continue",
            "        except Exception as exc:",
            "            _log(r, 'WHERE', exc)",
            "            continue",
        ]
    names = []
    column_names = compiler.const(tuple(output_names))  # names are the client's: never source
    for i, c in enumerate(outputs):
        v = f"v{i}"
        names.append(v)
        if c.code.startswith("r[") and c.code[2:-1].isdigit():
            lines.append(f"        {v} = {c.code}")
            continue
        lines += [
            "        try:",
            f"            {v} = {c.code}",
            "        except Exception as exc:",
            f"            {v} = None",
            f"            _log(r, {column_names}[{i}], exc)",
        ]
    tup = "(" + "".join(n + ", " for n in names) + ")"
    lines.append(f"        append((r, {tup}))")
    lines.append("    return out")
    source = "\n".join(lines)
    ns = dict(compiler.namespace)
    exec(compile(source, "<ksql-query>", "exec"), ns)
    fn: Callable[[list[Any], LogFn], list[tuple[Any, tuple[Any, ...]]]] = ns["_batch"]
    fn.__source__ = source  # type: ignore[attr-defined]
    # the shape the runtime's column-wise path looks for: the filter's code and, per output,
    # the row index it copies (None for a computed expression)
    fn.__columnar__ = (  # type: ignore[attr-defined]
        None if where is None else where.code,
        [int(c.code[2:-1]) if _is_row_ref(c.code) else None for c in outputs],
    )
    return fn


def _is_row_ref(code: str) -> bool:
    """`r[<n>]`: an output that copies a row column unchanged."""
    return code.startswith("r[") and code.endswith("]") and code[2:-1].isdigit()
