"""ksqlDB's test-only functions, which its query-validation tests call (`BAD_UDF`).

ksqlDB's QTT harness loads these from its test classpath (`io.confluent.ksql.function.udf.
BadUdf`); they are never part of a server. The conformance runner registers them in its own
process only, before it plans a case, so a case that needs one runs instead of being skipped.

`BAD_UDF(INT)` always throws and `BAD_UDF(BOOLEAN)` throws on TRUE (else 0), as ksqlDB's do.
`BAD_UDF(STRING)` in ksqlDB returns NULL on every other call of one *instance*, a counter each
query holds for itself; a process-wide function registry cannot hold per-query state, so that
overload stays unsupported (the case is skipped with this reason, never faked).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.errors import UnsupportedError
from services.ksql_server.functions.registry import register
from services.ksql_server.types import SqlType

_INTEGERS = ("INTEGER",)


def _bad_udf_returns(args: Sequence[SqlType | None]) -> SqlType:
    base = args[0].base if args and args[0] is not None else None
    if base in _INTEGERS:
        return T.STRING
    if base == "BOOLEAN":
        return T.INTEGER
    raise UnsupportedError(
        "function BAD_UDF(STRING): ksqlDB's per-query call counter, which a shared function "
        "registry cannot hold"
        if base == "STRING"
        else f"function BAD_UDF({base})"
    )


def bad_udf(types: Sequence[SqlType | None], arg: Any) -> Any:
    """ksqlDB's BadUdf: `blowUp(int)` throws, `mightThrow(boolean)` throws on TRUE."""
    if types[0] is not None and types[0].base == "BOOLEAN":
        if arg:
            raise RuntimeError("You asked me to throw...")
        return 0
    raise RuntimeError("boom!")


def register_test_functions() -> None:
    """Add the test-only functions to this process's registry (idempotent)."""
    register("BAD_UDF", 1, 1, _bad_udf_returns, pass_types=True)(bad_udf)
