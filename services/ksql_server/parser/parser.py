"""Recursive-descent parser: ksqlDB statement text → the trees in `ast.py`.

Hand-written rather than generated so that error messages can name the offending token the way
ksqlDB does. Clauses the planner may not run yet (joins, windows, GROUP BY) are still parsed
into the tree, so the planner reports them as unsupported rather than as syntax errors.

Recursion is bounded (`limits.py`): every nesting construct passes through `_nest`, which
refuses a statement nested deeper than MAX_NESTING with a 40001 error, and a parsed statement
is measured (depth and size of its expressions) before anyone else walks it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from services.ksql_server import types as T
from services.ksql_server.errors import clip, line_col
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.lexer import ParseError, Token, tokenize
from services.ksql_server.parser.limits import (
    MAX_NESTING,
    check_statement,
    ensure_recursion_headroom,
)

_T = TypeVar("_T")

_UNIT_MS = {
    "MILLISECOND": 1,
    "SECOND": 1000,
    "MINUTE": 60_000,
    "HOUR": 3_600_000,
    "DAY": 86_400_000,
}

_RESERVED = {
    "SELECT",
    "FROM",
    "WHERE",
    "AS",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "IS",
    "LIKE",
    "BETWEEN",
    "IN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST",
    "PARTITION",
    "GROUP",
    "BY",
    "EMIT",
    "LIMIT",
    "WINDOW",
    "HAVING",
    "JOIN",
    "LEFT",
    "INNER",
    "FULL",
    "OUTER",
    "RIGHT",
    "ON",
    "WITH",
    "TRUE",
    "FALSE",
    "ESCAPE",
    "WITHIN",
    "DISTINCT",
    "CREATE",
    "INSERT",
    "INTO",
    "VALUES",
}

_COMPARISON = {"=", "<>", "!=", "<", "<=", ">", ">="}


class Parser:
    """Parses one statement; `parse_statement` is the entry point."""

    def __init__(self, text: str, first_line: int = 1) -> None:
        ensure_recursion_headroom()
        self.text = text
        self.first_line = first_line
        """The line of its request this statement starts on (ksqlDB counts lines per request)."""
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0

    def _nest(self, parse: Callable[[], _T]) -> _T:
        """Run one level of nested grammar, refusing nesting beyond MAX_NESTING."""
        if self.depth >= MAX_NESTING:
            line, col = self._line_col(self.tok)
            raise ParseError(
                f"line {line}:{col}: Statement nested too deeply: more than {MAX_NESTING} "
                "levels of parentheses, calls or operators"
            )
        self.depth += 1
        try:
            return parse()
        finally:
            self.depth -= 1

    def literal_error(self, t: Token, message: str) -> NoReturn:
        """ksqlDB's AST builder refuses a literal out of range as
        `Failed to prepare statement: line L:C: <message>`. Its C is one more than a syntax
        error's: the node's location is already 1-based and its ParsingException adds 1."""
        line, col = self._line_col(t)
        raise ParseError(f"Failed to prepare statement: line {line}:{col + 1}: {message}")

    def _line_col(self, t: Token) -> tuple[int, int]:
        return line_col(self.text, t.pos, self.first_line)

    # ------------------------------------------------------------ token helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, n: int = 1) -> Token:
        return self.toks[min(self.i + n, len(self.toks) - 1)]

    def at(self, *words: str) -> bool:
        t = self.tok
        return (t.kind == "IDENT" and t.text in words) or (t.kind == "OP" and t.text in words)

    def accept(self, *words: str) -> bool:
        if self.at(*words):
            self.i += 1
            return True
        return False

    def expect(self, word: str) -> Token:
        if not self.at(word):
            self.error(f"expecting '{word}'")
        t = self.tok
        self.i += 1
        return t

    def error(self, what: str = "") -> None:
        t = self.tok
        line, col = self._line_col(t)
        # ksqlDB's shape ("line 1:24: Syntax Error\n\nStatement: …"), then the detail
        msg = (
            f"line {line}:{col}: Syntax Error\n\nStatement: {clip(self.text.strip())}\n"
            f"Unexpected '{t.shown}'"
        )
        raise ParseError(msg + (f", {what}" if what else ""))

    def identifier(self) -> str:
        t = self.tok
        if t.kind == "QIDENT":
            self.i += 1
            return t.text
        if t.kind == "IDENT":
            self.i += 1
            return t.text
        self.error("expecting an identifier")
        raise AssertionError

    def string(self) -> str:
        t = self.tok
        if t.kind != "STRING":
            self.error("expecting a string literal")
        self.i += 1
        return t.text

    # ------------------------------------------------------------ statements
    def parse_statement(self) -> A.Statement:
        stmt = self._statement()
        self.accept(";")
        if self.tok.kind != "EOF":
            self.error()
        check_statement(stmt)
        return stmt

    def _statement(self, text: str | None = None) -> A.Statement:
        text = self.text.strip() if text is None else text
        if self.accept("CREATE"):
            return self._create(text)
        if self.accept("INSERT"):
            return self._insert(text)
        if self.accept("DROP"):
            return self._drop(text)
        if self.accept("ALTER"):
            return self._alter(text)
        if self.accept("TERMINATE"):
            if self.accept("ALL"):
                return A.Terminate(text, None)
            return A.Terminate(text, self.identifier())
        if self.accept("SHOW", "LIST"):
            what = self.identifier().upper()
            if what not in (
                "STREAMS",
                "TABLES",
                "QUERIES",
                "TOPICS",
                "PROPERTIES",
                "FUNCTIONS",
                "TYPES",
                "CONNECTORS",
                "VARIABLES",
                "ALL",
            ):
                self.i -= 1
                self.error()
            if what == "ALL" and self.accept("TOPICS"):
                what = "TOPICS"
            return A.Show(text, what, extended=self.accept("EXTENDED"))
        if self.accept("DESCRIBE"):
            extended = self.accept("EXTENDED")
            if self.at("STREAMS", "TABLES") and self.peek().kind in ("EOF", "OP"):
                what = self.identifier()
                return A.Show(text, what, extended=self.accept("EXTENDED") or True)
            if self.accept("FUNCTION"):
                return A.Show(text, "FUNCTION " + self.identifier())
            name = self.identifier()
            # ksqlDB's documented form is `DESCRIBE <source> EXTENDED`; the older
            # `DESCRIBE EXTENDED <source>` is still accepted
            if not extended:
                extended = self.accept("EXTENDED")
            return A.Describe(text, name, extended=extended)
        if self.accept("EXPLAIN"):
            return self._explain(text)
        if self.accept("SET"):
            name = self.string()
            self.expect("=")
            return A.SetProperty(text, name, self.string())
        if self.accept("UNSET"):
            return A.UnsetProperty(text, self.string())
        if self.at("SELECT"):
            return A.Query(text, self._select())
        self.error()
        raise AssertionError

    def _explain(self, text: str) -> A.Statement:
        """`EXPLAIN <query id>` or `EXPLAIN <statement>` (the statement's own text is the part
        after the keyword, as ksqlDB takes it)."""
        nxt = self.peek()
        if self.tok.kind in ("IDENT", "QIDENT") and (nxt.kind == "EOF" or nxt.text == ";"):
            return A.Explain(text, query_id=self.identifier())
        inner = self._statement(text[len("EXPLAIN") :].strip())
        return A.Explain(text, statement=inner)

    def _create(self, text: str) -> A.Statement:
        or_replace = False
        if self.accept("OR"):
            self.expect("REPLACE")
            or_replace = True
        source_only = self.accept("SOURCE")
        kind = self._stream_or_table()
        if_not_exists = False
        if self.accept("IF"):
            self.expect("NOT")
            self.expect("EXISTS")
            if_not_exists = True
        name = self.identifier()
        columns = self._column_defs() if self.at("(") else None
        props = self._with_props() if self.accept("WITH") else {}
        query = None
        if self.accept("AS"):
            query = self._select()
        return A.CreateSource(
            text, kind, name, columns, props, or_replace, if_not_exists, query, source_only
        )

    def _alter(self, text: str) -> A.AlterSource:
        """`ALTER (STREAM | TABLE) name ADD [COLUMN] c type (, ADD [COLUMN] c type)*`."""
        if not self.accept("STREAM", "TABLE"):
            self.error("expecting STREAM or TABLE")
        kind = self.toks[self.i - 1].text
        name = self.identifier()
        columns: list[A.ColumnDef] = []
        while True:
            self.expect("ADD")
            self.accept("COLUMN")
            pos = self.tok.pos
            columns.append(A.ColumnDef(self.identifier(), self.parse_type(), pos=pos))
            if not self.accept(","):
                return A.AlterSource(text, kind, name, columns)

    def _column_defs(self) -> list[A.ColumnDef]:
        self.expect("(")
        cols: list[A.ColumnDef] = []
        while True:
            pos = self.tok.pos
            name = self.identifier()
            typ = self.parse_type()
            col = A.ColumnDef(name, typ, pos=pos)
            if self.accept("PRIMARY"):
                self.expect("KEY")
                col.key = col.primary = True
            elif self.accept("KEY"):
                col.key = True
            elif self.accept("HEADERS"):
                col.headers = True
            elif self.accept("HEADER"):
                self.expect("(")
                col.header_key = self.string()
                col.headers = True
                self.expect(")")
            cols.append(col)
            if not self.accept(","):
                break
        if not self.at(")"):
            self.expecting("{',', ')'}")
        self.expect(")")
        return cols

    def _with_props(self) -> dict[str, Any]:
        self.expect("(")
        props: dict[str, Any] = {}
        while True:
            key = self.identifier().upper()
            self.expect("=")
            props[key] = self._prop_value()
            if not self.accept(","):
                break
        self.expect(")")
        return props

    def _prop_value(self) -> Any:
        t = self.tok
        self.i += 1
        if t.kind == "STRING":
            return t.text
        if t.kind == "INT":
            return int(t.text)
        if t.kind in ("DECIMAL", "FLOAT"):
            return float(t.text)
        if t.kind == "IDENT" and t.text in ("TRUE", "FALSE"):
            return t.text == "TRUE"
        if t.kind == "OP" and t.text == "-" and self.tok.kind == "INT":
            self.i += 1
            return -int(self.toks[self.i - 1].text)
        self.i -= 1
        self.error("expecting a literal")
        raise AssertionError

    def _insert(self, text: str) -> A.Statement:
        self.expect("INTO")
        target_pos = self.tok.pos
        target = self.identifier()
        if self.at("(") or self.at("VALUES"):
            cols = None
            if self.accept("("):
                cols = [self.identifier()]
                while self.accept(","):
                    cols.append(self.identifier())
                self.expect(")")
            self.expect("VALUES")
            self.expect("(")
            values: list[A.Expr] = []
            if not self.at(")"):
                values.append(self.expr())
                while self.accept(","):
                    values.append(self.expr())
            self.expect(")")
            return A.InsertValues(text, target, cols, values)
        props = self._with_props() if self.accept("WITH") else {}
        return A.InsertSelect(text, target, props, self._select(), target_pos)

    def _stream_or_table(self) -> str:
        if self.accept("STREAM"):
            return "STREAM"
        if self.accept("TABLE"):
            return "TABLE"
        self.error("expecting STREAM or TABLE")
        raise AssertionError

    def _drop(self, text: str) -> A.Statement:
        kind = self._stream_or_table()
        if_exists = False
        if self.accept("IF"):
            self.expect("EXISTS")
            if_exists = True
        name = self.identifier()
        delete = False
        if self.accept("DELETE"):
            self.expect("TOPIC")
            delete = True
        return A.DropSource(text, kind, name, if_exists, delete)

    # ------------------------------------------------------------ SELECT
    def _select(self) -> A.Select:
        self.expect("SELECT")
        unsupported: str | None = None
        if self.accept("DISTINCT"):
            unsupported = "SELECT DISTINCT"
        items = [self._select_item()]
        while self.accept(","):
            items.append(self._select_item())
        self.expect("FROM")
        source = self._relation()
        sel = A.Select(items, source)
        while self.at("JOIN", "LEFT", "INNER", "FULL", "RIGHT"):
            sel.joins.append(self._join())
        if self.accept("WINDOW"):
            sel.window = self._window()
        if self.accept("WHERE"):
            sel.where = self.expr()
        if self.accept("GROUP"):
            self.expect("BY")
            sel.group_by = self._group_by()
        if self.accept("HAVING"):
            sel.having = self.expr()
        if self.accept("PARTITION"):
            self.expect("BY")
            # a value expression, as in ksqlDB's grammar: `PARTITION BY a AND b` is a syntax error
            if self.at("(") and self.peek().kind == "OP" and self.peek().text == ")":
                raise ParseError("PARTITION BY requires at least one expression")
            sel.partition_by = self._value_list()
        if self.accept("EMIT"):
            if self.accept("CHANGES"):
                sel.emit_changes = True
            else:
                self.expect("FINAL")
                sel.emit_final = True
        if self.accept("LIMIT"):
            sel.limit = self._limit()
        sel.unsupported = unsupported
        return sel

    def _limit(self) -> int:
        """LIMIT's number: ksqlDB's grammar takes any signed number here, then refuses one
        that is not a whole number (a negative one is the pull query's to refuse)."""
        negative = self.accept("-")
        t = self.tok
        if t.kind in ("DECIMAL", "FLOAT"):
            raise ParseError(
                "Failed to prepare statement: Value must be integer for command: LIMIT"
            )
        if t.kind != "INT":
            self.error("expecting an integer")
        self.i += 1
        return -int(t.text) if negative else int(t.text)

    def _join(self) -> A.JoinClause:
        kind = "INNER"
        if self.accept("LEFT", "RIGHT", "FULL"):
            kind = self.toks[self.i - 1].text
            self.accept("OUTER")
        else:
            self.accept("INNER")
        self.expect("JOIN")
        relation = self._relation()
        within = None
        if self.accept("WITHIN"):
            if self.accept("("):
                before = self._duration()
                self.expect(",")
                after = self._duration()
                self.expect(")")
                within = (before, after)
            else:
                both = self._duration()
                within = (both, both)
        grace = self._grace() if self.at("GRACE") else None
        self.expect("ON")
        return A.JoinClause(kind, relation, self.expr(), within, grace)

    def _window(self) -> A.WindowSpec:
        # ksqlDB's grammar lets a window carry a name (`WINDOW w TUMBLING (…)`); it is ignored
        if self.tok.kind == "IDENT" and self.peek().kind == "IDENT":
            self.i += 1
        kind = self.identifier().upper()
        if kind not in ("TUMBLING", "HOPPING", "SESSION"):
            self.i -= 1
            self.error("expecting TUMBLING, HOPPING or SESSION")
        self.expect("(")
        if kind == "SESSION":
            spec = A.WindowSpec(kind, self._duration())
        else:
            self.expect("SIZE")
            spec = A.WindowSpec(kind, self._duration())
        while self.accept(","):
            if self.accept("ADVANCE"):
                self.expect("BY")
                spec.advance_ms = self._duration()
            elif self.accept("RETENTION"):
                spec.retention_ms = self._duration()
            elif self.at("GRACE"):
                spec.grace_ms = self._grace()
            else:
                self.error("expecting ADVANCE BY, RETENTION or GRACE PERIOD")
        self.expect(")")
        if kind == "HOPPING" and spec.advance_ms is None:
            self.error("HOPPING windows need ADVANCE BY")
        return spec

    def _grace(self) -> int:
        self.expect("GRACE")
        self.expect("PERIOD")
        return self._duration()

    def _duration(self) -> int:
        """`10 MINUTES` → 600000: ksqlDB's window units, singular or plural."""
        amount = int(self._int_token())
        unit = self.identifier().upper().rstrip("S")
        if unit not in _UNIT_MS:
            self.i -= 1
            self.error("expecting a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS)")
        return amount * _UNIT_MS[unit]

    def _group_by(self) -> list[A.Expr]:
        """Value expressions, as in ksqlDB's grammar (`GROUP BY a AND b` is a syntax error);
        `GROUP BY (a, b)` groups by both, `GROUP BY (a + b) * 2` by one expression."""
        start = self.i
        if self.accept("("):
            exprs = self._value_list()
            if len(exprs) > 1:
                self.expect(")")
                return exprs
            self.i = start
        return self._value_list()

    def _value_list(self) -> list[A.Expr]:
        """`valueExpression (',' valueExpression)*`: no boolean operators or predicates at the
        top (GROUP BY and PARTITION BY take these; a parenthesised one is any expression)."""
        exprs = [self._additive()]
        while self.accept(","):
            exprs.append(self._additive())
        return exprs

    def _relation(self) -> A.Relation:
        name = self.identifier()
        alias = None
        if (
            self.accept("AS")
            or self.tok.kind == "QIDENT"
            or (
                self.tok.kind == "IDENT"
                and self.tok.text not in _RESERVED
                and self.tok.text not in ("EMIT", "WINDOW", "PARTITION", "GROUP")
            )
        ):
            alias = self.identifier()
        return A.Relation(name, alias)

    def _select_item(self) -> A.SelectItem:
        if self.accept("*"):
            return A.SelectItem(None)
        if (
            self.tok.kind in ("IDENT", "QIDENT")
            and self.peek().text == "."
            and self.peek(2).text == "*"
            and self.peek(2).kind == "OP"
        ):
            src = self.identifier()
            self.i += 2
            return A.SelectItem(None, star_source=src)
        e = self.expr()
        alias = None
        if (
            self.accept("AS")
            or self.tok.kind == "QIDENT"
            or (self.tok.kind == "IDENT" and self.tok.text not in _RESERVED)
        ):
            alias = self.identifier()
        return A.SelectItem(e, alias)

    # ------------------------------------------------------------ types
    def parse_type(self) -> T.SqlType:
        return self._nest(self._type)

    def _type(self) -> T.SqlType:
        name = self.identifier().upper()
        if name in T.NAMED:
            if self.at("(") and self.tok.kind == "OP":
                self._type_parameters()
            return T.NAMED[name]
        if name == "DECIMAL":
            self.expect("(")
            p = int(self._int_token())
            self.expect(",")
            s = int(self._int_token())
            self.expect(")")
            return T.decimal(p, s)
        if name == "ARRAY":
            self.expect("<")
            item = self.parse_type()
            self._close_angle()
            return T.array(item)
        if name == "MAP":
            self.expect("<")
            k = self.parse_type()
            self.expect(",")
            v = self.parse_type()
            self._close_angle()
            return T.map_of(k, v)
        if name == "STRUCT":
            self.expect("<")
            fields: list[tuple[str, T.SqlType]] = []
            if not self.at(">"):
                while True:
                    fname = self.identifier()
                    fields.append((fname, self.parse_type()))
                    if not self.accept(","):
                        break
            self._close_angle()
            return T.struct(fields)
        self.i -= 1
        self.error(f"unknown type {name}")
        raise AssertionError

    def _type_parameters(self) -> None:
        """`baseType '(' typeParameter (',' typeParameter)* ')'` with typeParameter an integer
        or the word STRING: ksqlDB's grammar takes them (`VARCHAR(STRING)`) and its type
        parser ignores them for the named types."""
        self.expect("(")
        while True:
            if self.tok.kind == "INT" or (self.tok.kind == "IDENT" and self.tok.text == "STRING"):
                self.i += 1
            else:
                self.expecting("{'STRING', INTEGER_VALUE}")
            if not self.accept(","):
                break
        self.expect(")")

    def expecting(self, tokens: str) -> NoReturn:
        """A syntax error where ksqlDB's (ANTLR) parser names the tokens it expected: its
        shape is `line L:C: Syntax Error\nExpecting {…}\nStatement: …`."""
        line, col = self._line_col(self.tok)
        raise ParseError(
            f"line {line}:{col}: Syntax Error\nExpecting {tokens}\n"
            f"Statement: {clip(self.text.strip())}"
        )

    def _close_angle(self) -> None:
        # `>>` never appears: the lexer emits single `>` tokens, but `>=` can follow a type.
        self.expect(">")

    def _int_token(self) -> str:
        t = self.tok
        if t.kind != "INT":
            self.error("expecting an integer")
        self.i += 1
        return t.text

    # ------------------------------------------------------------ expressions
    def expr(self) -> A.Expr:
        return self._nest(self._or)

    def _or(self) -> A.Expr:
        operands = [self._and()]
        while self.accept("OR"):
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else A.Logical("OR", tuple(operands))

    def _and(self) -> A.Expr:
        operands = [self._not()]
        while self.accept("AND"):
            operands.append(self._not())
        return operands[0] if len(operands) == 1 else A.Logical("AND", tuple(operands))

    def _not(self) -> A.Expr:
        if self.accept("NOT"):
            return A.Unary("NOT", self._nest(self._not))
        return self._predicate()

    def _predicate(self) -> A.Expr:
        left = self._additive()
        while True:
            t = self.tok
            if t.kind == "OP" and t.text in _COMPARISON:
                self.i += 1
                op = "<>" if t.text == "!=" else t.text
                left = A.Binary(op, left, self._additive())
                continue
            if self.accept("IS"):
                negated = self.accept("NOT")
                if self.accept("NULL"):
                    left = A.IsNull(left, negated)
                elif self.accept("DISTINCT"):
                    self.expect("FROM")
                    left = A.DistinctFrom(left, self._additive(), negated)
                else:
                    self.error("expecting NULL")
                continue
            negated = False
            if (
                self.at("NOT")
                and self.peek().kind == "IDENT"
                and self.peek().text in ("LIKE", "BETWEEN", "IN")
            ):
                self.i += 1
                negated = True
            if self.accept("LIKE"):
                pattern = self._additive()
                escape = None
                if self.accept("ESCAPE"):
                    escape = self.string()
                left = A.Like(left, pattern, escape, negated)
            elif self.accept("BETWEEN"):
                low = self._additive()
                self.expect("AND")
                left = A.Between(left, low, self._additive(), negated)
            elif self.accept("IN"):
                self.expect("(")
                items = [self.expr()]
                while self.accept(","):
                    items.append(self.expr())
                self.expect(")")
                left = A.InList(left, tuple(items), negated)
            else:
                return left

    def _additive(self) -> A.Expr:
        left = self._multiplicative()
        while self.at("+", "-", "||") and self.tok.kind == "OP":
            op = self.tok.text
            self.i += 1
            left = A.Binary(op, left, self._multiplicative())
        return left

    def _multiplicative(self) -> A.Expr:
        left = self._unary()
        while self.tok.kind == "OP" and self.tok.text in ("*", "/", "%"):
            op = self.tok.text
            self.i += 1
            left = A.Binary(op, left, self._unary())
        return left

    def _unary(self) -> A.Expr:
        if self.tok.kind == "OP" and self.tok.text in ("-", "+"):
            sign = self.tok
            op = self.tok.text
            self.i += 1
            if op == "-" and self.tok.kind == "INT" and int(self.tok.text) > 2**63 - 1:
                if int(self.tok.text) > 2**63:
                    self.literal_error(sign, f"Invalid numeric literal: -{self.tok.text}")
                self.i += 1
                return A.Literal(-(2**63), T.BIGINT)
            if op == "-" and self.tok.kind == "FLOAT" and float(self.tok.text) == float("inf"):
                self.literal_error(sign, f"Number overflows DOUBLE: -{self.tok.text}")
            operand = self._nest(self._unary)
            if (
                op == "-"
                and isinstance(operand, A.Literal)
                and operand.type is not None
                and (operand.type.is_numeric)
            ):
                lit = A.Literal(-operand.value, operand.type)
                if operand.type.base == "BIGINT" and -operand.value >= -(2**31):
                    lit = A.Literal(-operand.value, T.INTEGER)
                return lit
            return operand if op == "+" else A.Unary("-", operand)
        return self._postfix()

    def _postfix(self) -> A.Expr:
        e = self._primary()
        while True:
            if self.accept("["):
                e = A.Subscript(e, self.expr())
                self.expect("]")
            elif self.tok.kind == "OP" and self.tok.text == "->":
                self.i += 1
                e = A.Dereference(e, self.identifier())
            else:
                return e

    def _primary(self) -> A.Expr:
        t = self.tok
        if t.kind == "STRING":
            self.i += 1
            return A.Literal(t.text, T.STRING)
        if t.kind == "INT":
            self.i += 1
            v = int(t.text)
            if v <= 2**31 - 1:
                return A.Literal(v, T.INTEGER)
            if v <= 2**63 - 1:
                return A.Literal(v, T.BIGINT)
            self.literal_error(t, f"Invalid numeric literal: {t.text}")
        if t.kind == "DECIMAL":
            self.i += 1
            return A.decimal_literal(t.text)
        if t.kind == "FLOAT":
            self.i += 1
            if float(t.text) == float("inf"):
                self.literal_error(t, f"Number overflows DOUBLE: {t.text}")
            return A.Literal(float(t.text), T.DOUBLE)
        if t.kind == "OP" and t.text == "(":
            # a lambda `(x, y) => …` or a parenthesised expression
            save = self.i
            if self.peek().kind in ("IDENT", "QIDENT"):
                self.i += 1
                params = []
                try:
                    params.append(self.identifier())
                    while self.accept(","):
                        params.append(self.identifier())
                    if self.accept(")") and self.accept("=>"):
                        return A.Lambda(tuple(params), self.expr())
                except ParseError:
                    pass
                self.i = save
            self.i += 1
            e = self.expr()
            self.expect(")")
            return e
        if t.kind == "QIDENT":
            return self._name_or_call()
        if t.kind != "IDENT":
            self.error()
        word = t.text
        if word == "NULL":
            self.i += 1
            return A.Literal(None, None)
        if word in ("TRUE", "FALSE"):
            self.i += 1
            return A.Literal(word == "TRUE", T.BOOLEAN)
        if word == "CASE":
            self.i += 1
            return self._case()
        if word == "CAST":
            self.i += 1
            self.expect("(")
            operand = self.expr()
            self.expect("AS")
            typ = self.parse_type()
            self.expect(")")
            return A.Cast(operand, typ)
        if word == "ARRAY" and self.peek().text == "[":
            self.i += 2
            items: list[A.Expr] = []
            if not self.at("]"):
                items.append(self.expr())
                while self.accept(","):
                    items.append(self.expr())
            self.expect("]")
            return A.ArrayCtor(tuple(items))
        if word == "MAP" and self.peek().text == "(":
            self.i += 2
            entries: list[tuple[A.Expr, A.Expr]] = []
            if not self.at(")"):
                while True:
                    k = self.expr()
                    self.expect(":=")
                    entries.append((k, self.expr()))
                    if not self.accept(","):
                        break
            self.expect(")")
            return A.MapCtor(tuple(entries))
        if word == "STRUCT" and self.peek().text == "(":
            self.i += 2
            fields: list[tuple[str, A.Expr]] = []
            if not self.at(")"):
                while True:
                    name = self.identifier()
                    self.expect(":=")
                    fields.append((name, self.expr()))
                    if not self.accept(","):
                        break
            self.expect(")")
            return A.StructCtor(tuple(fields))
        if word in ("TIMESTAMP", "DATE", "TIME") and self.peek().kind == "STRING":
            self.i += 1
            text = self.string()
            return A.Cast(A.Literal(text, T.STRING), T.NAMED[word])
        if word in _RESERVED and word not in ("LEFT", "RIGHT"):
            self.error()
        return self._name_or_call()

    def _name_or_call(self) -> A.Expr:
        pos = self.tok.pos
        name = self.identifier()
        if self.at("(") and self.tok.kind == "OP":
            self.i += 1
            if self.accept("*"):
                self.expect(")")
                return A.Call(name.upper(), (), star=True)
            args: list[A.Expr] = []
            if not self.at(")"):
                args.append(self.expr())
                while self.accept(","):
                    args.append(self.expr())
            self.expect(")")
            return A.Call(name.upper(), tuple(args))
        if (
            self.tok.kind == "OP"
            and self.tok.text == "."
            and self.peek().kind in ("IDENT", "QIDENT")
        ):
            self.i += 1
            return A.ColumnRef(self.identifier(), source=name, pos=pos)
        if self.tok.kind == "OP" and self.tok.text == "=>":
            self.i += 1
            return A.Lambda((name,), self.expr())
        return A.ColumnRef(name, pos=pos)

    def _case(self) -> A.Expr:
        operand = None if self.at("WHEN") else self.expr()
        whens: list[tuple[A.Expr, A.Expr]] = []
        while self.accept("WHEN"):
            cond = self.expr()
            self.expect("THEN")
            whens.append((cond, self.expr()))
        if not whens:
            self.error("expecting WHEN")
        default = self.expr() if self.accept("ELSE") else None
        self.expect("END")
        return A.Case(operand, tuple(whens), default)


def parse(statement: str, first_line: int = 1) -> A.Statement:
    """Parse one statement (with or without its trailing semicolon); `first_line`: the line of
    its request it starts on, which the line numbers of errors count from."""
    return Parser(statement, first_line).parse_statement()


def parse_expression(text: str) -> A.Expr:
    p = Parser(text)
    e = p.expr()
    if p.tok.kind != "EOF":
        p.error()
    check_statement(e)
    return e
