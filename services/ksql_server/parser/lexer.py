"""Tokenizer for ksqlDB's SQL dialect (identifiers, backquoted names, '' strings, numbers)."""

from __future__ import annotations

import re
from dataclasses import dataclass


class ParseError(Exception):
    """A statement that does not follow the grammar (ksqlDB error 40001)."""


@dataclass(frozen=True)
class Token:
    kind: str  # IDENT QIDENT STRING INT DECIMAL FLOAT OP EOF
    text: str  # identifiers: unquoted upper-cased; quoted kept; strings unescaped
    pos: int
    raw: str = ""

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "IDENT" else ""


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|--[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^']|'')*')
  | (?P<qident>`(?:[^`]|``)*`|"(?:[^"]|"")*")
  | (?P<float>(?:\d+\.\d*|\.\d+|\d+)[eE][+-]?\d+)
  | (?P<decimal>\d+\.\d*|\.\d+)
  | (?P<int>\d+)
  | (?P<ident>[A-Za-z_$@][A-Za-z0-9_$@]*)
  | (?P<op>:=|=>|->|<>|!=|<=|>=|\|\||[=<>+\-*/%(),.;\[\]:{}?])
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(sql: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if m is None:
            raise ParseError(f"line 1:{pos + 1}: extraneous input '{sql[pos]}'")
        kind = m.lastgroup or ""
        raw = m.group()
        if kind == "string":
            tokens.append(Token("STRING", raw[1:-1].replace("''", "'"), pos, raw))
        elif kind == "qident":
            q = raw[0]
            tokens.append(Token("QIDENT", raw[1:-1].replace(q + q, q), pos, raw))
        elif kind == "ident":
            tokens.append(Token("IDENT", raw.upper(), pos, raw))
        elif kind in ("float", "decimal", "int"):
            tokens.append(Token(kind.upper(), raw, pos, raw))
        elif kind == "op":
            tokens.append(Token("OP", raw, pos, raw))
        pos = m.end()
    tokens.append(Token("EOF", "", len(sql), ""))
    return tokens


def split_statements(sql: str) -> list[str]:
    """Split a request body into statements at top-level semicolons (keeping each one's text)."""
    out: list[str] = []
    start = 0
    for tok in tokenize(sql):
        if tok.kind == "OP" and tok.text == ";":
            text = sql[start : tok.pos + 1].strip()
            if text != ";":
                out.append(text)
            start = tok.pos + 1
    rest = sql[start:].strip()
    if rest and tokenize(rest)[0].kind != "EOF":
        out.append(rest)
    return out
