"""Which comparisons ksqlDB allows, and the values it compares.

ksqlDB decides a comparison's validity from the left operand's type (numbers with numbers,
strings with strings and temporal types, BOOLEAN/ARRAY/MAP/STRUCT only for equality, DATE and
TIMESTAMP with each other and strings, TIME with TIME and strings, BYTES with BYTES), and then
compares both sides in one domain: any DECIMAL makes it a decimal comparison (a DOUBLE taken by
its shortest decimal text, as `BigDecimal.valueOf`), a DOUBLE beside a whole number makes it a
double comparison, and any temporal type makes it temporal (TIME first, then TIMESTAMP, then
DATE; a string side is parsed). The same rule serves `=`, `<>`, `<`…, BETWEEN's two bounds and
IS [NOT] DISTINCT FROM, so the operators cannot drift apart.
"""

from __future__ import annotations

from services.ksql_server import types as T
from services.ksql_server.errors import KsqlError
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.naming import expr_text
from services.ksql_server.types import SqlType

OP_NAMES = {
    "=": "EQUAL",
    "<>": "NOT_EQUAL",
    "<": "LESS_THAN",
    "<=": "LESS_THAN_OR_EQUAL",
    ">": "GREATER_THAN",
    ">=": "GREATER_THAN_OR_EQUAL",
    "IS DISTINCT FROM": "IS_DISTINCT_FROM",
    "IS NOT DISTINCT FROM": "IS_NOT_DISTINCT_FROM",
}
EQUALITY = ("=", "<>", "IS DISTINCT FROM", "IS NOT DISTINCT FROM")
TEMPORAL = ("TIME", "DATE", "TIMESTAMP")


def comparable(left: SqlType, op: str, right: SqlType) -> bool:
    """ksqlDB's ComparisonUtil rule: whether `left op right` is a valid comparison."""
    lb, rb = left.base, right.base
    if left.is_numeric:
        return right.is_numeric
    if lb == "STRING":
        return rb == "STRING" or rb in TEMPORAL
    if lb in ("BOOLEAN", "ARRAY", "MAP", "STRUCT"):
        return rb == lb and op in EQUALITY
    if lb == "TIME":
        return rb in ("TIME", "STRING")
    if lb in ("DATE", "TIMESTAMP"):
        return rb in ("DATE", "TIMESTAMP", "STRING")
    return lb == rb


def check_comparison(
    left: SqlType | None, op: str, right: SqlType | None, lexpr: A.Expr, rexpr: A.Expr
) -> None:
    """Raise ksqlDB's error for a comparison it refuses (NULL on either side included)."""
    if left is None or right is None:
        shown = [("NULL" if t is None else t.base) for t in (left, right)]
        raise KsqlError(
            f"Comparison with NULL not supported: {shown[0]} {op} {shown[1]}\n"
            "Use 'IS NULL' or 'IS NOT NULL' instead."
        )
    if not comparable(left, op, right):
        raise KsqlError(
            f"Cannot compare {expr_text(lexpr)} ({left}) to {expr_text(rexpr)} ({right}) "
            f"with {OP_NAMES[op]}."
        )


def comparison_domain(a: SqlType | None, b: SqlType | None) -> SqlType | None:
    """The type both sides are converted to before comparing; None: compare as they are."""
    if a is None or b is None:
        return None
    bases = {a.base, b.base}
    if "DECIMAL" in bases:
        return T.decimal(38, 0) if a.is_numeric and b.is_numeric else None
    if "DOUBLE" in bases and (a.is_numeric and b.is_numeric):
        return T.DOUBLE
    if bases & set(TEMPORAL):
        for domain in (T.TIME, T.TIMESTAMP, T.DATE):
            if domain.base in bases:
                return domain
    return None
