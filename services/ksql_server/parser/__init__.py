"""ksqlDB SQL → statement trees (tokenizer, recursive-descent parser, AST)."""

from services.ksql_server.parser.lexer import ParseError, split_statements
from services.ksql_server.parser.parser import parse, parse_expression

__all__ = ["ParseError", "parse", "parse_expression", "split_statements"]
