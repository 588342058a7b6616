"""The one row writer: `INSERT INTO ... VALUES` and `/inserts-stream` both end here.

A row reaches a stream's topic two ways: a statement's literal expressions (evaluated and cast
as ksqlDB's `InsertValuesExecutor` does) or a JSON object sent to `/inserts-stream` (coerced to
the columns' types). Both are turned into `{column: value}` here and written by `write_row`
with the source's own key and value serializers, so both paths encode exactly alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.ksql_server import types as T
from services.ksql_server.engine_api import KsqlStatementError
from services.ksql_server.errors import KsqlError
from services.ksql_server.expressions import ExpressionCompiler, Scope
from services.ksql_server.expressions.runtime_helpers import cast_value
from services.ksql_server.formats import make_serializer
from services.ksql_server.formats.base import coercer
from services.ksql_server.formats.registry import uses_registry
from services.ksql_server.metastore import DataSource
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.naming import expr_text
from services.ksql_server.runtime.kafka_context import KafkaContext


def values_row(stmt: A.InsertValues, target: DataSource) -> dict[str, Any]:
    """The row an `INSERT INTO target [(cols)] VALUES (...)` names, its values evaluated and
    cast to the columns' types; KsqlError (ksqlDB's text) for what the client got wrong."""
    names = stmt.columns or [n for n, _ in target.columns]
    for name in names:
        if name in ("ROWPARTITION", "ROWOFFSET"):
            raise KsqlError(f"Inserting into column `{name}` is not allowed.")
    for expr in stmt.values:
        if isinstance(expr, A.ColumnRef) and expr.source is not None:
            raise KsqlError(
                f"Failed to prepare statement: '{expr.source}' is not a valid stream/table "
                "name or alias."
            )
    if stmt.columns is not None and len(names) != len(stmt.values):
        raise KsqlError(
            "Failed to prepare statement: Expected number columns and values to match: "
            f"{len(names)}, {len(stmt.values)}"
        )
    if len(names) != len(stmt.values):
        raise KsqlError(
            f"Expected a value for each column. Expected Columns: {names}. "
            f"Got {[expr_text(v) for v in stmt.values]}"
        )
    types = dict([*target.columns, ("ROWTIME", T.BIGINT)])
    compiler = ExpressionCompiler(Scope([]))
    row: dict[str, Any] = {}
    for name, expr in zip(names, stmt.values, strict=True):
        if name not in types:
            raise KsqlError(f"Column name {name} does not exist.")
        compiled = compiler.compile(expr)
        try:
            value = eval(compiled.code, dict(compiler.namespace), {"r": []})
        except Exception as exc:  # 1/0, a bad cast: the client's values, not our fault
            raise KsqlError(
                f"Failed to insert values into '{target.name}'. Could not evaluate the value "
                f"of column {name}: {exc}"
            ) from exc
        try:
            row[name] = cast_value(value, compiled.type, types[name])
        except Exception as exc:
            raise KsqlError(
                f"Expected type {types[name]} for field {name} but got "
                f"{shorten(repr(value))}({compiled.type})"
            ) from exc
    return row


def json_row(source: DataSource, row: Mapping[str, Any], target: str) -> dict[str, Any]:
    """A JSON object from `/inserts-stream` as a row (column names matched case-insensitively,
    values coerced to the columns' types; 40000 for one that does not fit)."""
    upper = {str(k).upper(): v for k, v in row.items()}
    values: dict[str, Any] = {}
    for name, typ in source.columns:
        v = row.get(name, upper.get(name.upper()))
        try:
            values[name] = None if v is None else coercer(typ)(v)
        except Exception as exc:
            raise KsqlStatementError(
                f"Failed to insert values into '{target}'. {exc}", error_code=40000
            ) from exc
    if "ROWTIME" in upper:
        values["ROWTIME"] = upper["ROWTIME"]
    return values


def write_row(ctx: KafkaContext, target: DataSource, row: Mapping[str, Any]) -> None:
    """Serialize `row` with the source's formats and produce it (flushed: the caller's insert
    is acknowledged only once the broker has it; a record too large raises, 40001)."""
    topic = ctx.physical(target.topic)
    registry = (
        ctx.registry_or_none()
        if uses_registry(target.key_format.name) or uses_registry(target.value_format.name)
        else None
    )
    key_ser = make_serializer(target.key_format, target.key_columns, topic, True, registry)
    value_ser = make_serializer(target.value_format, target.value_columns, topic, False, registry)
    key = key_ser([row.get(n) for n, _ in target.key_columns]) if target.key_columns else None
    value = value_ser([row.get(n) for n, _ in target.value_columns])
    ts = row.get("ROWTIME")
    producer = ctx.producer
    if ts is None:
        producer.produce(topic, value, key)
    else:
        producer.produce(topic, value, key, timestamp=int(ts))
    producer.flush(30)


def shorten(text: str, limit: int = 200) -> str:
    """A value quoted in an error message, cut short: the client sent it, maybe 15 MB of it."""
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"
