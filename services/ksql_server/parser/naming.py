"""SQL text of expressions (error messages, SHOW QUERIES) and ksqlDB's column naming.

It reads only the syntax tree, so it sits with the parser: the planner and the expression
compiler both use it, and neither imports the other for it.
"""

from __future__ import annotations

from services.ksql_server.parser import ast as A


def _quote(name: str) -> str:
    return name


def expr_text(e: A.Expr) -> str:
    """ksqlDB's formatting of an expression: upper-case identifiers, operators spaced."""
    if isinstance(e, A.Literal):
        if e.value is None:
            return "null"
        if isinstance(e.value, bool):
            return "true" if e.value else "false"
        if isinstance(e.value, str):
            return "'" + e.value.replace("'", "''") + "'"
        return str(e.value)
    if isinstance(e, A.ColumnRef):
        return f"{e.source}.{e.name}" if e.source else e.name
    if isinstance(e, A.Logical):
        # ksqlDB prints a chain as the left-nested binary tree it parses: ((a AND b) AND c)
        text = expr_text(e.operands[0])
        for operand in e.operands[1:]:
            text = f"({text} {e.op} {expr_text(operand)})"
        return text
    if isinstance(e, A.Binary):
        return f"({expr_text(e.left)} {e.op} {expr_text(e.right)})"
    if isinstance(e, A.Unary):
        return f"(NOT {expr_text(e.operand)})" if e.op == "NOT" else f"-{expr_text(e.operand)}"
    if isinstance(e, A.IsNull):
        return f"({expr_text(e.operand)} IS {'NOT ' if e.negated else ''}NULL)"
    if isinstance(e, A.Like):
        return f"({expr_text(e.operand)} {'NOT ' if e.negated else ''}LIKE {expr_text(e.pattern)})"
    if isinstance(e, A.Between):
        return (
            f"({expr_text(e.operand)} {'NOT ' if e.negated else ''}BETWEEN "
            f"{expr_text(e.low)} AND {expr_text(e.high)})"
        )
    if isinstance(e, A.InList):
        return (
            f"({expr_text(e.operand)} {'NOT ' if e.negated else ''}IN "
            f"({', '.join(expr_text(i) for i in e.items)}))"
        )
    if isinstance(e, A.Cast):
        return f"CAST({expr_text(e.operand)} AS {e.type})"
    if isinstance(e, A.Call):
        return f"{e.name}({'*' if e.star else ', '.join(expr_text(a) for a in e.args)})"
    if isinstance(e, A.Subscript):
        return f"{expr_text(e.base)}[{expr_text(e.index)}]"
    if isinstance(e, A.Dereference):
        return f"{expr_text(e.base)}->{e.field}"
    if isinstance(e, A.Case):
        parts = ["CASE"]
        if e.operand is not None:
            parts.append(expr_text(e.operand))
        for c, r in e.whens:
            parts.append(f"WHEN {expr_text(c)} THEN {expr_text(r)}")
        if e.default is not None:
            parts.append(f"ELSE {expr_text(e.default)}")
        parts.append("END")
        return "(" + " ".join(parts) + ")"
    if isinstance(e, A.ArrayCtor):
        return "ARRAY[" + ", ".join(expr_text(i) for i in e.items) + "]"
    if isinstance(e, A.MapCtor):
        return "MAP(" + ", ".join(f"{expr_text(k)}:={expr_text(v)}" for k, v in e.entries) + ")"
    if isinstance(e, A.StructCtor):
        return "STRUCT(" + ", ".join(f"{n}:={expr_text(v)}" for n, v in e.fields) + ")"
    return type(e).__name__


def natural_name(e: A.Expr) -> str | None:
    """The column name ksqlDB gives an unaliased select item, or None for a generated one."""
    if isinstance(e, A.ColumnRef):
        return e.name
    if isinstance(e, A.Dereference):
        return e.field
    return None
