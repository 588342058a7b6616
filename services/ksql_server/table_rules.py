"""ksqlDB's statement rules for tables and source (read-only) streams and tables.

Pure, Kafka-free checks the engine calls while preparing a statement, each raising ksqlDB's
error: a table needs a PRIMARY KEY (and not a stream's KEY); CREATE OR REPLACE never touches a
source table; a source table or stream takes no INSERT and its topic is never deleted; a query
with GROUP BY or over a table produces a table (CREATE TABLE AS), any other a stream.
"""

from __future__ import annotations

from services.ksql_server.errors import KsqlError, LocatedError
from services.ksql_server.metastore import DataSource
from services.ksql_server.parser import ast as A


def check_create_source(stmt: A.CreateSource, existing: DataSource | None) -> None:
    """CREATE [OR REPLACE] [SOURCE] TABLE/STREAM rules (before the source is built)."""
    kind = stmt.kind.lower()
    if stmt.or_replace and (stmt.source_only or (existing is not None and existing.is_source)):
        raise KsqlError(
            f"Cannot add {kind} '{stmt.name}': CREATE OR REPLACE is not supported on source "
            f"{kind}s."
        )
    if stmt.kind != "TABLE" or not stmt.columns:
        return
    plain_key = next((c for c in stmt.columns if c.key and not c.primary), None)
    if plain_key is not None:
        raise LocatedError(
            f"Column `{plain_key.name}` is a 'KEY' column: "
            "please use 'PRIMARY KEY' for tables.\nTables have PRIMARY KEYs, which are unique "
            "and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL constraints.",
            plain_key.pos,
        )


def check_table_key(source: DataSource) -> None:
    """After the source is built (keys maybe inferred from the registry): a table has a key."""
    if source.kind == "TABLE" and not source.key_columns:
        raise KsqlError("Tables require a PRIMARY KEY. Please define the PRIMARY KEY.")


def check_result_kind(kind: str, produces_table: bool) -> None:
    """CREATE STREAM AS over a table/aggregation, or CREATE TABLE AS over a plain stream."""
    if kind == "STREAM" and produces_table:
        raise KsqlError(
            "Invalid result type. Your SELECT query produces a TABLE. Please use CREATE TABLE AS "
            "SELECT statement instead."
        )
    if kind == "TABLE" and not produces_table:
        raise KsqlError(
            "Invalid result type. Your SELECT query produces a STREAM. Please use CREATE STREAM "
            "AS SELECT statement instead."
        )


def check_insert_values(target: DataSource) -> None:
    if target.is_source:
        raise KsqlError(f"Cannot insert values into read-only {target.kind.lower()}: {target.name}")


def check_alter(stmt: A.AlterSource, source: DataSource | None) -> None:
    """What ksqlDB refuses before it alters a source's columns."""
    kind = stmt.kind.lower()
    if source is None:
        raise KsqlError(f"Source {stmt.name} does not exist.")
    if source.is_source:
        raise KsqlError(
            f"Cannot alter {kind} '{stmt.name}': ALTER operations are not supported on source "
            f"{kind}s."
        )


def check_drop(stmt: A.DropSource, source: DataSource) -> None:
    if stmt.delete_topic and source.is_source:
        raise KsqlError(f"Cannot delete topic for read-only source: {source.name}")


__all__ = [
    "check_alter",
    "check_create_source",
    "check_drop",
    "check_insert_values",
    "check_result_kind",
    "check_table_key",
]
