"""ksqlDB SQL → statement trees (tokenizer, recursive-descent parser, AST)."""

from services.ksql_server.parser.lexer import ParseError, split_statements, split_statements_at
from services.ksql_server.parser.parser import parse, parse_expression

__all__ = [
    "ParseError",
    "parse",
    "parse_expression",
    "split_statements",
    "split_statements_at",
]
