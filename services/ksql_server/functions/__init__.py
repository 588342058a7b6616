"""Scalar functions (UDFs) with ksqlDB's names, null handling and return types."""

from services.ksql_server.functions.registry import FUNCTIONS, Function, lookup

__all__ = ["FUNCTIONS", "Function", "lookup"]
