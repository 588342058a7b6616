"""Expressions compiled to Python code (one generated function per query, not a tree walk)."""

from services.ksql_server.expressions.compiler import (
    Compiled,
    ExpressionCompiler,
    Scope,
    build_batch_function,
)

__all__ = ["Compiled", "ExpressionCompiler", "Scope", "build_batch_function"]
