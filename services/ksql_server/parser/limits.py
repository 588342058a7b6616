"""How big and how deep one statement's expressions may be, and the check that enforces it.

A statement is untrusted input that becomes a tree, then Python source, then bytecode. Each of
those steps recurses over the tree or grows with it, so the limits here bound both: nesting
(what the recursive-descent parser and every tree walk recurse on), and the number of nodes
(what the generated code's size and the compile time grow with). Beyond them the statement gets
ksqlDB's 40001 `statement_error`, never a RecursionError or a 500. They sit far above what a
hand-written or generated pipeline statement needs (100 nested parentheses, 200 ANDs and
IN lists of thousands of values all pass); see docs/ksql-engine.md.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from services.ksql_server.parser import ast as A
from services.ksql_server.parser.lexer import ParseError

MAX_NESTING = 128
"""Nesting of the grammar while parsing: parentheses, function calls, CASE, CAST, unary
operators, constructors, nested types — each level is one more round of the parser's recursion."""

MAX_EXPRESSION_DEPTH = 256
"""Depth of an expression tree (`a + b + c + …` is one level per `+`; an AND/OR chain is one)."""

MAX_EXPRESSION_NODES = 20_000
"""Expression nodes in one statement, all clauses together (an IN list of n values is n+2)."""

MAX_RECORDED_STATEMENT_CHARS = 1_000_000
"""A statement kept in the command topic (CREATE, CSAS, INSERT … SELECT, DROP, TERMINATE) is one
Kafka record, and Kafka takes none over 1 MB by default (`message.max.bytes`): a longer one is
refused before it is planned, so a 15 MB literal in a CSAS costs no plan, no compile and no
record built only to be refused. (A record Kafka refuses anyway, say one of many non-ASCII
characters that JSON escapes six-fold, is 40001 as well.)"""

RECURSION_HEADROOM = 10_000
"""The interpreter's recursion limit while statements are handled: parsing costs about ten
Python frames per nesting level and compiling about three per tree level, so the limits above
need more than Python's default 1000. Python 3.11 runs Python-to-Python calls without growing
the C stack, so a higher limit costs no native stack."""


def ensure_recursion_headroom() -> None:
    """Raise the interpreter's recursion limit to RECURSION_HEADROOM (never lower it)."""
    if sys.getrecursionlimit() < RECURSION_HEADROOM:
        sys.setrecursionlimit(RECURSION_HEADROOM)


def check_recordable(statement: Any, text: str) -> None:
    """Raise ParseError when `statement` must be kept in the command topic but is too long."""
    recorded = (A.CreateSource, A.InsertSelect, A.DropSource, A.Terminate)
    if isinstance(statement, recorded) and len(text) > MAX_RECORDED_STATEMENT_CHARS:
        raise ParseError(
            f"Statement too large: {len(text):,} characters; statements kept in the command "
            f"topic (CREATE, INSERT … SELECT, DROP, TERMINATE) may have at most "
            f"{MAX_RECORDED_STATEMENT_CHARS:,}",
            code="too_large",
        )


def check_statement(statement: Any) -> None:
    """Raise ParseError when an expression of `statement` is deeper or bigger than allowed.

    Walks with an explicit stack: this check is what stands between an oversized tree and
    every recursive walk after it, so it must not recurse itself."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(statement, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, A.Expr):
            depth += 1
            nodes += 1
            if depth > MAX_EXPRESSION_DEPTH:
                raise ParseError(
                    f"Expression too deep: more than {MAX_EXPRESSION_DEPTH} nested operations "
                    "(split it, or use parentheses to group the operands)",
                    code="too_complex",
                )
            if nodes > MAX_EXPRESSION_NODES:
                raise ParseError(
                    f"Statement too large: more than {MAX_EXPRESSION_NODES} expression terms",
                    code="too_large",
                )
        if isinstance(value, (list, tuple)):
            stack.extend((item, depth) for item in value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            stack.extend(
                (getattr(value, f.name), depth)
                for f in dataclasses.fields(value)
                if f.name != "type"  # SqlType values are not expressions
            )
