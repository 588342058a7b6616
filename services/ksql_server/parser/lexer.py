"""Tokenizer for ksqlDB's SQL dialect (identifiers, backquoted names, '' strings, numbers).

Statements come from HTTP bodies of up to 16 MB, so the scanner is written to cost memory in
proportion to the text and nothing more: string and quoted-name patterns are unrolled loops
(`[^']*` runs, one regex state per doubled quote rather than one per character), and the
statement splitter only looks at token spans, never building the tokens' texts.

`redact` is here too: the text of a statement with every string literal replaced, built from
the tokens (not a regex over the text), so a `--` or `/* */` inside a literal, or a quote inside
a backquoted name, cannot fool it into leaking a literal into the logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from services.ksql_server.errors import KsqlServiceError


class ParseError(KsqlServiceError):
    """A statement that does not follow the grammar (ksqlDB error 40001)."""

    default_code = "syntax"


@dataclass(frozen=True)
class Token:
    kind: str  # IDENT QIDENT STRING INT DECIMAL FLOAT OP EOF
    text: str  # identifiers: unquoted upper-cased; quoted kept; strings unescaped
    pos: int
    raw: str = ""  # the token as written; empty for STRING (a literal may be megabytes)

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "IDENT" else ""

    @property
    def shown(self) -> str:
        """The token as an error message quotes it (string literals re-quoted, cut short)."""
        if self.kind == "EOF":
            return "<EOF>"
        if self.kind == "STRING":
            body = self.text if len(self.text) <= 40 else self.text[:40] + "…"
            return "'" + body.replace("'", "''") + "'"
        return self.raw or self.text


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|--[^\n]*|/\*.*?\*/)
  | (?P<string>'[^']*(?:''[^']*)*')
  | (?P<qident>`[^`]*(?:``[^`]*)*`|"[^"]*(?:""[^"]*)*")
  | (?P<float>(?:\d+\.\d*|\.\d+|\d+)[eE][+-]?\d+)
  | (?P<decimal>\d+\.\d*|\.\d+)
  | (?P<int>\d+)
  | (?P<ident>[A-Za-z_$@][A-Za-z0-9_$@]*)
  | (?P<op>:=|=>|->|<>|!=|<=|>=|\|\||[=<>+\-*/%(),.;\[\]:{}?])
    """,
    re.VERBOSE | re.DOTALL,
)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _position(sql: str, pos: int) -> str:
    line = sql.count("\n", 0, pos) + 1
    return f"line {line}:{pos - (sql.rfind(chr(10), 0, pos) + 1) + 1}"


def check_text(sql: str) -> None:
    """Refuse a lone UTF-16 surrogate: no Kafka record, log line or JSON answer can carry it."""
    found = _SURROGATE.search(sql)
    if found is not None:
        raise ParseError(
            f"{_position(sql, found.start())}: invalid character U+{ord(found.group()):04X} "
            "(a lone UTF-16 surrogate)"
        )


def spans(sql: str) -> Iterator[tuple[str, int, int]]:
    """(kind, start, end) of every token but whitespace and comments; ParseError on a
    character that starts no token (an unterminated quote, say)."""
    pos = 0
    match = _TOKEN.match
    while pos < len(sql):
        m = match(sql, pos)
        if m is None:
            raise ParseError(f"{_position(sql, pos)}: extraneous input '{sql[pos]}'")
        kind = m.lastgroup or ""
        if kind != "ws":
            yield kind, pos, m.end()
        pos = m.end()


def tokenize(sql: str) -> list[Token]:
    check_text(sql)
    tokens: list[Token] = []
    for kind, start, end in spans(sql):
        if kind == "string":
            body = sql[start + 1 : end - 1]
            tokens.append(Token("STRING", body.replace("''", "'") if "''" in body else body, start))
            continue
        raw = sql[start:end]
        if kind == "qident":
            q = raw[0]
            tokens.append(Token("QIDENT", raw[1:-1].replace(q + q, q), start, raw))
        elif kind == "ident":
            tokens.append(Token("IDENT", raw.upper(), start, raw))
        elif kind in ("float", "decimal", "int"):
            tokens.append(Token(kind.upper(), raw, start, raw))
        else:
            tokens.append(Token("OP", raw, start, raw))
    tokens.append(Token("EOF", "", len(sql), ""))
    return tokens


def split_statements(sql: str) -> list[str]:
    """Split a request body into statements at top-level semicolons (keeping each one's text)."""
    return [text for text, _ in split_statements_at(sql)]


def split_statements_at(sql: str) -> list[tuple[str, int]]:
    """`split_statements`, each statement with the line of the request it starts on (ksqlDB
    numbers the lines of its errors in the whole request). Lines are counted once over the
    text, not once per statement."""
    check_text(sql)
    out: list[tuple[str, int]] = []
    bounds: list[tuple[int, int]] = []
    start = 0
    last_end = 0
    for kind, begin, end in spans(sql):
        last_end = end
        if kind == "op" and sql[begin] == ";":
            bounds.append((start, end))
            start = end
    if last_end > start:  # something other than whitespace and comments after the last ';'
        bounds.append((start, len(sql)))
    line, counted = 1, 0
    for start, end in bounds:
        piece = sql[start:end]
        text = piece.strip()
        if not text or text == ";":
            continue
        first = start + (len(piece) - len(piece.lstrip()))
        line += sql.count("\n", counted, first)
        counted = first
        out.append((text, line))
    return out


REDACTED = "'[redacted]'"


def redact(sql: str) -> str:
    """The statement with every string literal replaced by `'[redacted]'`, for the logs.

    Never raises: text the scanner cannot read (an unterminated quote) is cut where reading
    stopped, so even a statement that failed to parse can be logged without its secrets."""
    pieces: list[str] = []
    copied = 0
    readable = 0
    try:
        for kind, start, end in spans(sql):
            readable = end
            if kind == "string":
                pieces.append(sql[copied:start])
                pieces.append(REDACTED)
                copied = end
        pieces.append(sql[copied:])
    except ParseError:
        pieces.append(sql[copied:readable])
        pieces.append(" [unreadable rest redacted]")
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", "".join(pieces))
