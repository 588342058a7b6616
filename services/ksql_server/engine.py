"""The KSQL engine behind the REST layer: statements in, ksqlDB entities and rows out.

`Engine` implements `engine_api.KsqlEngine`. A statement goes parser → planner → runtime; the
metastore holds streams, `runtime/` runs queries, and successful DDL/DML statements are kept in
the command topic and replayed on start (deterministic query ids = same consumer groups, so
queries resume from their committed offsets).

A statement that changes state is validated first (`_prepare`), then written to the command
topic, and only then applied with the sequence number the topic gave it: the order ksqlDB's
`DistributingExecutor` keeps, so a statement whose write fails leaves no stream or query behind
and what runs is exactly what a restart replays. Side effects in Kafka that ksqlDB also makes
before the write (creating a missing sink topic) stay before it; deleting a topic is done only
after the write, and never on replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from services.common.settings import get_settings
from services.ksql_server import describe as D
from services.ksql_server import entities as E
from services.ksql_server import explain as X
from services.ksql_server import types as T
from services.ksql_server.commands import CommandTopic, CommandWriteError
from services.ksql_server.engine_api import (
    ERROR_MAX_PUSH_QUERIES_EXCEEDED,
    KsqlStatementError,
    PushQuery,
    as_statement_error,
)
from services.ksql_server.errors import KsqlError, UnsupportedError, clip
from services.ksql_server.expressions import ExpressionCompiler, Scope
from services.ksql_server.expressions.runtime_helpers import cast_value
from services.ksql_server.formats import make_serializer, validate_format
from services.ksql_server.formats.factory import infer_columns
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.formats.registry import (
    INFERRING_FORMATS,
    schema_properties,
    uses_registry,
)
from services.ksql_server.metastore import DataSource, MetaStore
from services.ksql_server.parser import ParseError, parse, split_statements
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.lexer import redact
from services.ksql_server.parser.limits import check_recordable
from services.ksql_server.planner.plan import plan_select
from services.ksql_server.pull_rules import check_pull_limit
from services.ksql_server.runtime.kafka_context import KafkaContext
from services.ksql_server.runtime.processor import ProcessingLog
from services.ksql_server.runtime.query import PersistentQuery, TransientQuery
from services.ksql_server.types import ColumnDef

LOG = logging.getLogger("fraudstream.ksql.engine")

DEFAULT_SERVICE_ID = "default_"
VERSION = "0.29.0"

SOURCE_PROPS = {
    "KAFKA_TOPIC",
    "VALUE_FORMAT",
    "KEY_FORMAT",
    "FORMAT",
    "PARTITIONS",
    "REPLICAS",
    "VALUE_DELIMITER",
    "KEY_DELIMITER",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
    "WRAP_SINGLE_VALUE",
    "VALUE_AVRO_SCHEMA_FULL_NAME",
    "KEY_SCHEMA_ID",
    "VALUE_SCHEMA_ID",
    "WINDOW_TYPE",
    "WINDOW_SIZE",
    "RETENTION_MS",
    "KEY_SCHEMA_FULL_NAME",
    "VALUE_SCHEMA_FULL_NAME",
    "KEY_PROTOBUF_NULLABLE_REPRESENTATION",
    "VALUE_PROTOBUF_NULLABLE_REPRESENTATION",
}
UNSUPPORTED_PROPS = {
    "WINDOW_TYPE",
    "WINDOW_SIZE",
}
RESERVED_COLUMNS = {"ROWTIME", "ROWPARTITION", "ROWOFFSET", "WINDOWSTART", "WINDOWEND"}


def normalize_properties(props: Mapping[str, Any] | None) -> dict[str, Any]:
    """`ksql.streams.auto.offset.reset` and `auto.offset.reset` mean the same here."""
    out: dict[str, Any] = {}
    for k, v in (props or {}).items():
        key = k[len("ksql.streams.") :] if k.startswith("ksql.streams.") else k
        out[key] = v
    return out


MAX_PUSH_QUERIES_PROPERTY = "ksql.max.push.queries"
DEFAULT_MAX_PUSH_QUERIES = 100
MAX_PUSH_QUERIES_MESSAGE = "Maximum number of push queries exceeded"
CLOSE_WAIT_S = 1.0
"""How long closing a push query waits for its thread to end (it checks every 0.1 s)."""


@dataclass
class _Prepared:
    """A validated statement that changes state: written to the command topic as `command_id`,
    then `apply` runs with its sequence number and returns the statement's entity."""

    command_id: str
    apply: Callable[[int], dict[str, Any]]


class _RunningPush(PushQuery):
    """A PushQuery bound to its runtime: `close()` stops the consumer thread, awaits its end."""

    _runtime: TransientQuery | None = None

    async def close(self) -> None:
        if self._runtime is not None:
            self._runtime.stop()
            if not await self._runtime.wait_closed(CLOSE_WAIT_S):
                LOG.warning(
                    "push query %s still running %.1f s after close", self.query_id, CLOSE_WAIT_S
                )


def _max_push_queries(properties: dict[str, Any]) -> int:
    """`ksql.max.push.queries`: a server property, so taken out of those every query inherits."""
    raw = properties.pop(MAX_PUSH_QUERIES_PROPERTY, DEFAULT_MAX_PUSH_QUERIES)
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{MAX_PUSH_QUERIES_PROPERTY} must be an integer, not {raw!r}") from exc
    if value < 0:
        raise ValueError(f"{MAX_PUSH_QUERIES_PROPERTY} must not be negative")
    return value


class Engine:
    """A ksqlDB-compatible engine over a real Kafka cluster."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        schema_registry_url: str | None = None,
        service_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        topic_prefix: str = "",
        command_topic: bool = True,
        auto_create_source_topics: bool = False,
        fast: bool = False,
        processing_log: bool = True,
    ) -> None:
        settings = get_settings()
        self.bootstrap_servers = bootstrap_servers or settings.bootstrap_servers
        self.schema_registry_url = schema_registry_url or settings.schema_registry_url
        self.service_id = service_id or DEFAULT_SERVICE_ID
        self.properties: dict[str, Any] = {
            "auto.offset.reset": "latest",
            "processing.guarantee": "at_least_once",
        }
        self.properties.update(normalize_properties(properties))
        self.max_push_queries = _max_push_queries(self.properties)
        """Transient (push, and pull over a stream) queries running at once; more get 40003."""
        self._transient_lock = threading.Lock()
        self.auto_create_source_topics = auto_create_source_topics
        self.ctx = KafkaContext(
            self.bootstrap_servers, self.schema_registry_url, topic_prefix, fast
        )
        self.metastore = MetaStore()
        self.queries: dict[str, PersistentQuery] = {}
        self._transient: dict[str, TransientQuery] = {}
        self._lock = threading.RLock()
        self._seq = 0
        self.plog_topic = f"{self.service_id}ksql_processing_log"
        self.plog = ProcessingLog(
            self._plog_produce if processing_log else None, self.ctx.physical(self.plog_topic)
        )
        self._plog_ready = False
        self._commands: CommandTopic | None = None
        self.replay_errors: list[str] = []
        if command_topic:
            self._commands = CommandTopic(self.ctx, self.service_id)
            self._replay()

    # ------------------------------------------------------------------ lifecycle
    def _replay(self) -> None:
        assert self._commands is not None
        commands = self._commands.read_all()
        for cmd in commands:
            self._seq = cmd.seq
            try:
                stmt = parse(cmd.statement)
                self._execute_statement(
                    stmt, cmd.statement, normalize_properties(cmd.properties), replay_seq=cmd.seq
                )
            except Exception as exc:
                LOG.warning("replay of %r failed: %s", redact(cmd.statement), exc)
                self.replay_errors.append(f"{cmd.statement}: {exc}")
        self._seq = self._commands.end_offset()
        if commands:
            LOG.info("replayed %d commands, %d queries running", len(commands), len(self.queries))

    _health: tuple[float, bool] = (0.0, False)

    def healthy(self) -> bool:
        """The broker answers (checked at most every 2 s; backs /healthcheck)."""
        checked_at, ok = self._health
        if time.monotonic() - checked_at > 2.0:
            try:
                self.ctx.admin.list_topics(timeout=2)
                ok = True
            except Exception:
                ok = False
            self._health = (time.monotonic(), ok)
        return ok

    @property
    def kafka_cluster_id(self) -> str | None:
        """The Kafka cluster id reported by /info."""
        try:
            return str(self.ctx.admin.list_topics(timeout=5).cluster_id)
        except Exception:
            return None

    def stop_transient_queries(self) -> None:
        """Tell every push query to end (shutdown): their threads end, their streams finish."""
        for tq in list(self._transient.values()):
            tq.stop()

    def transient_query_ids(self) -> list[str]:
        """Push (and stream pull) queries whose thread is still running."""
        return list(self._transient)

    def close(self) -> None:
        self.stop_transient_queries()
        with self._lock:
            for q in list(self.queries.values()):
                q.stop()
            for tq in list(self._transient.values()):
                tq.join(CLOSE_WAIT_S)
            self.ctx.close()

    def _plog_produce(self, topic: str, value: bytes) -> None:
        if not self._plog_ready:
            with contextlib.suppress(Exception):
                self.ctx.ensure_topic(topic, 1)
            self._plog_ready = True
        self.ctx.producer.produce(topic, value)

    # ------------------------------------------------------------------ /ksql
    def execute(
        self, sql: str, properties: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        entities: list[dict[str, Any]] = []
        props = dict(self.properties)
        props.update(normalize_properties(properties))
        try:
            texts = split_statements(sql)
        except ParseError as exc:
            raise as_statement_error(exc, sql) from exc
        with self._lock:
            for text in texts:
                try:
                    stmt = parse(text)
                except (ParseError, RecursionError) as exc:
                    raise as_statement_error(exc, text, entities) from exc
                if isinstance(stmt, A.Query):
                    raise KsqlStatementError(
                        "The following statement types should be issued to the websocket "
                        "endpoint '/query':\n\t* PRINT\n\t* SELECT",
                        text,
                        40002,
                        entities,
                    )
                if isinstance(stmt, A.SetProperty):
                    props.update(normalize_properties({stmt.name: stmt.value}))
                    continue
                if isinstance(stmt, A.UnsetProperty):
                    key = next(iter(normalize_properties({stmt.name: None})))
                    props[key] = self.properties.get(key)
                    continue
                try:
                    check_recordable(stmt, text)
                    entity = self._execute_statement(stmt, text, props)
                except CommandWriteError as exc:
                    LOG.error("statement not executed, command topic write failed: %s", exc)
                    raise KsqlStatementError(
                        f"Could not write the statement '{clip(text)}' into the command topic.",
                        text,
                        50000,
                        entities,
                    ) from None
                except Exception as exc:
                    error = as_statement_error(exc, text, entities)
                    if error.error_code >= 50000:
                        LOG.exception("statement failed: %s", redact(text))
                    if error is exc:
                        raise
                    try:
                        raise error from exc
                    finally:
                        # the error's traceback holds this frame: without the local, no cycle
                        # keeps the statement (maybe megabytes) alive until the next full GC
                        del error
                if entity is not None:
                    entities.append(entity)
        return entities

    def _execute_statement(
        self, stmt: A.Statement, text: str, props: dict[str, Any], replay_seq: int | None = None
    ) -> dict[str, Any] | None:
        """Run one statement. One that changes state is written to the command topic between
        its validation and its effect; on replay (`replay_seq`: its offset in the topic) it is
        applied with that sequence number and not written again."""
        outcome = self._prepare(stmt, text, props, replay_seq is not None)
        if not isinstance(outcome, _Prepared):
            return outcome
        seq = replay_seq if replay_seq is not None else self._log(outcome.command_id, text, props)
        return outcome.apply(seq)

    def _prepare(
        self, stmt: A.Statement, text: str, props: dict[str, Any], replay: bool
    ) -> dict[str, Any] | _Prepared | None:
        if isinstance(stmt, A.CreateSource):
            if stmt.query is None:
                return self._create_source(stmt, text, props, replay)
            return self._create_as_select(stmt, text, props, replay)
        if isinstance(stmt, A.InsertSelect):
            return self._insert_select(stmt, text, props)
        if isinstance(stmt, A.InsertValues):
            self._insert_values(stmt)
            return None
        if isinstance(stmt, A.DropSource):
            return self._drop(stmt, text, props, replay)
        if isinstance(stmt, A.Terminate):
            return self._terminate(stmt)
        if isinstance(stmt, A.Show):
            return self._show(stmt, text, props)
        if isinstance(stmt, A.Describe):
            return self._describe(stmt, text)
        if isinstance(stmt, A.Explain):
            return self._explain(stmt, text, props)
        raise UnsupportedError(f"statement {type(stmt).__name__}")

    def _log(self, command_id: str, text: str, props: dict[str, Any]) -> int:
        """Write a validated command to the command topic (raises CommandWriteError when it is
        not durably there); returns its sequence number."""
        seq = self._seq
        if self._commands is not None:
            seq = self._commands.append(command_id, text, _command_props(props))
        self._seq = seq + 1
        return seq

    def _already_exists(self, stmt: A.CreateSource, text: str, command_id: str) -> dict[str, Any]:
        """CREATE of a name that exists: a no-op status with IF NOT EXISTS, else an error."""
        if stmt.if_not_exists:
            return E.current_status(
                text,
                command_id,
                f"Cannot add stream '{stmt.name}': A stream with the same name already exists",
                self._seq,
            )
        kind = stmt.kind.lower()
        raise KsqlError(
            f"Cannot add {kind} '{stmt.name}': A {kind} with the same name already exists"
        )

    # ------------------------------------------------------------------ CREATE STREAM
    def _create_source(
        self, stmt: A.CreateSource, text: str, props: dict[str, Any], replay: bool
    ) -> dict[str, Any] | _Prepared:
        kind = stmt.kind
        if kind == "TABLE":
            raise UnsupportedError("tables (CREATE TABLE)")
        existing = self.metastore.get(stmt.name)
        command_id = f"{kind.lower()}/`{stmt.name}`/create"
        if existing is not None and not stmt.or_replace:
            return self._already_exists(stmt, text, command_id)
        source = self._build_source(stmt, text, props)
        topic = self.ctx.physical(source.topic)
        partitions = self.ctx.topic_partitions(topic)
        if partitions is None:
            wanted = stmt.props.get("PARTITIONS")
            if wanted is None and not (self.auto_create_source_topics or replay):
                raise KsqlError(
                    f"Topic '{source.topic}' does not exist. If you want to create a new topic for "
                    f"the {kind.lower()} please re-run the statement providing the required "
                    "'PARTITIONS' configuration in the WITH clause (and optionally 'REPLICAS'). "
                    f"For example: CREATE {kind} {stmt.name} (ID INT) WITH (KAFKA_TOPIC="
                    f"'{source.topic}', PARTITIONS=2, REPLICAS=1, FORMAT='JSON');"
                )
            partitions = int(wanted or 1)
            self.ctx.ensure_topic(topic, partitions, 1)
        elif (
            not replay
            and stmt.props.get("PARTITIONS") is not None
            and int(stmt.props["PARTITIONS"]) != partitions
        ):
            raise KsqlError(
                f"A Kafka topic with the name '{source.topic}' already exists, with different "
                "partition/replica configuration than required. KSQL expects "
                f"{stmt.props['PARTITIONS']} "
                f"partitions (topic has {partitions}), 1 replication factor (topic has 1)."
            )
        source.partitions = partitions

        def apply(seq: int) -> dict[str, Any]:
            self.metastore.put(source)
            return E.current_status(text, command_id, f"{kind.title()} created", seq)

        return _Prepared(command_id, apply)

    def _infer_value_columns(self, fmt: str, wp: dict[str, Any], topic: str) -> list[ColumnDef]:
        """Value columns from the registry (a CREATE without value columns)."""
        info = _format_info(fmt, wp, "VALUE")
        return infer_columns(info, self.ctx.registry, topic, False, wp) or []

    def _build_source(
        self, stmt: A.CreateSource, text: str, props: Mapping[str, Any]
    ) -> DataSource:
        wp = dict(stmt.props)
        _check_props(wp)
        _apply_defaults(wp, props)
        if "KAFKA_TOPIC" not in wp:
            raise KsqlError('Missing required property "KAFKA_TOPIC" which has no default value.')
        key_fmt, value_fmt = _formats(wp, None)
        if value_fmt is None:
            raise KsqlError(
                "Statement is missing the 'VALUE_FORMAT' property from the WITH clause. Either "
                "provide one or set a default via the 'ksql.persistence.default.format.value' "
                "config."
            )
        key_fmt = key_fmt or "KAFKA"
        _format_info(key_fmt, wp, "KEY")
        _format_info(value_fmt.name, wp, "VALUE")
        columns = stmt.columns
        physical = self.ctx.physical(str(wp["KAFKA_TOPIC"]))
        if columns is None or not columns:
            if value_fmt.name not in INFERRING_FORMATS or columns is not None:
                if value_fmt.name not in INFERRING_FORMATS:  # VALUE_SCHEMA_ID's error first
                    infer_columns(_format_info(value_fmt.name, wp, "VALUE"), None, physical, False)
                raise KsqlError("No columns supplied.")
            value_cols = self._infer_value_columns(value_fmt.name, wp, physical)
            if value_cols and value_cols[0][0] == "ROWVAL" and len(value_cols) == 1:
                wp["_WRAP_DEFAULT"] = False
            key_cols: list[ColumnDef] = []
        else:
            key_cols = [(c.name, c.type) for c in columns if c.key]
            value_cols = [(c.name, c.type) for c in columns if not c.key and not c.headers]
            if any(c.headers for c in columns):
                raise UnsupportedError("HEADER columns")
            for which, declared in (("KEY", key_cols), ("VALUE", value_cols)):
                if declared and f"{which}_SCHEMA_ID" in wp:
                    raise KsqlError(
                        f"Table elements and {which}_SCHEMA_ID cannot both exist for create "
                        "statement."
                    )
            if not value_cols and value_fmt.name in INFERRING_FORMATS:
                # only key columns declared: the value columns come from the registry
                value_cols = self._infer_value_columns(value_fmt.name, wp, physical)
            if stmt.kind == "STREAM" and any(c.primary for c in columns):
                raise KsqlError(
                    f"Line: 1, Col: {next(c.pos for c in columns if c.primary) + 1}: "
                    "Column `"
                    + next(c.name for c in columns if c.primary)
                    + "` is a 'PRIMARY KEY' "
                    "column: please use 'KEY' for streams.\nTables have PRIMARY KEYs, which are "
                    "unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL "
                    "constraints."
                )
            seen: set[str] = set()
            for c in columns:
                if c.name in RESERVED_COLUMNS:
                    raise KsqlError(
                        f"'{c.name}' is a reserved column name. You cannot use it as a name for a "
                        "column."
                        if c.name in ("ROWTIME", "ROWPARTITION", "ROWOFFSET")
                        else f"'{c.name}' is a reserved column name."
                    )
                if c.name in seen:
                    raise KsqlError(f"Duplicate column names: {c.name}")
                seen.add(c.name)
        if not key_cols:
            key_registry = self.ctx.registry if key_fmt in INFERRING_FORMATS else None
            key_fmt_info = _format_info(key_fmt, wp, "KEY")
            key_cols = infer_columns(key_fmt_info, key_registry, physical, True, wp) or []
        key_format = _format_info(key_fmt, wp, "KEY")
        value_format = _format_info(value_fmt.name, wp, "VALUE")
        if not key_cols:
            key_format = (
                FormatInfo("NONE") if "KEY_FORMAT" not in wp and "FORMAT" not in wp else key_format
            )
        _check_wrapping(value_format, value_cols, wp)
        validate_format(key_format, key_cols, True) if key_cols else None
        validate_format(value_format, value_cols, False)
        if key_format.name == "NONE" and key_cols:
            raise KsqlError("Key format NONE does not support key columns")
        ts_col = None
        if "TIMESTAMP" in wp:
            ts_col = (
                str(wp["TIMESTAMP"]).upper()
                if not str(wp["TIMESTAMP"]).startswith("`")
                else str(wp["TIMESTAMP"]).strip("`")
            )
            typ = dict(key_cols + value_cols).get(ts_col)
            if typ is None:
                raise KsqlError(
                    f"The TIMESTAMP column set in the WITH clause does not exist in the schema: "
                    f"'{ts_col}'"
                )
            if typ.base not in ("BIGINT", "TIMESTAMP", "STRING"):
                raise KsqlError(
                    f"Timestamp column, `{ts_col}`, should be LONG(INT64), TIMESTAMP, or a "
                    "String with a timestamp_format specified."
                )
            if typ.base == "STRING" and "TIMESTAMP_FORMAT" not in wp:
                raise KsqlError(
                    "A String timestamp field has been specified without also specifying the "
                    "TIMESTAMP_FORMAT property."
                )
        return DataSource(
            name=stmt.name,
            kind=stmt.kind,
            topic=str(wp["KAFKA_TOPIC"]),
            key_columns=key_cols,
            value_columns=value_cols,
            key_format=key_format,
            value_format=value_format,
            sql=text,
            timestamp_column=ts_col,
            timestamp_format=wp.get("TIMESTAMP_FORMAT"),
            replicas=int(wp.get("REPLICAS", 1)),
            is_source=stmt.source_only,
        )

    # ------------------------------------------------------------------ CSAS / INSERT INTO
    def _create_as_select(
        self, stmt: A.CreateSource, text: str, props: dict[str, Any], replay: bool
    ) -> dict[str, Any] | _Prepared:
        assert stmt.query is not None
        kind = stmt.kind
        if kind == "TABLE":
            raise UnsupportedError("tables (CREATE TABLE AS SELECT)")
        existing = self.metastore.get(stmt.name)
        command_id = f"{kind.lower()}/`{stmt.name}`/create"
        if existing is not None and not stmt.or_replace:
            return self._already_exists(stmt, text, command_id)
        if stmt.query.emit_changes is False and stmt.query.limit is not None:
            raise KsqlError("CREATE STREAM AS SELECT statements don't support LIMIT clause.")
        wp = dict(stmt.props)
        _check_props(wp)
        if "TIMESTAMP" in wp:
            _check_sink_timestamp(
                wp, plan_select(stmt.query, self.metastore, persistent=False).output
            )
        plan = plan_select(
            stmt.query,
            self.metastore,
            persistent=True,
            sink_name=stmt.name,
            new_planner=_new_planner(props),
        )
        source = plan.source
        key_name, value_info = _formats(wp, source)
        assert value_info is not None
        key_name = key_name or source.key_format.name
        if key_name == "NONE" and plan.key_columns:
            key_name = "KAFKA"
        if not plan.key_columns:
            if "KEY_FORMAT" in wp and plan.keyless_partition:
                raise KsqlError("Key format specified for stream without key columns.")
            if "KEY_FORMAT" not in wp and "FORMAT" not in wp:
                key_name = "NONE"
        key_format = _format_info(key_name, wp, "KEY")
        if "KEY_DELIMITER" not in wp and key_name == source.key_format.name == "DELIMITED":
            key_format.delimiter = source.key_format.delimiter
        value_format = _format_info(value_info.name, wp, "VALUE")
        if (
            "VALUE_DELIMITER" not in wp
            and value_info.name == source.value_format.name == "DELIMITED"
        ):
            value_format.delimiter = source.value_format.delimiter
        if "WRAP_SINGLE_VALUE" not in wp:
            value_format.wrap_single = _default_wrap(props)
        _check_wrapping(value_format, plan.value_columns, wp)
        if plan.key_columns:
            validate_format(key_format, plan.key_columns, True)
        validate_format(value_format, plan.value_columns, False)
        ts_col = None
        if "TIMESTAMP" in wp:
            ts_col = str(wp["TIMESTAMP"]).upper()
            names = dict(plan.output)
            if ts_col not in names:
                raise KsqlError(
                    f"The TIMESTAMP column set in the WITH clause does not exist in the schema: "
                    f"'{ts_col}'"
                )
        sink = DataSource(
            name=stmt.name,
            kind=kind,
            topic=str(
                wp.get("KAFKA_TOPIC")
                or (props.get("ksql.output.topic.name.prefix") or "") + stmt.name
            ),
            key_columns=plan.key_columns,
            value_columns=plan.value_columns,
            key_format=key_format,
            value_format=value_format,
            sql=text,
            timestamp_column=ts_col,
            timestamp_format=wp.get("TIMESTAMP_FORMAT"),
            replicas=int(wp.get("REPLICAS", 1)),
        )
        src_partitions = self.ctx.topic_partitions(self.ctx.physical(source.topic)) or 1
        sink.partitions = int(wp.get("PARTITIONS", src_partitions))
        # before the write, as ksqlDB's topic injector does: a query needs its sink
        self.ctx.ensure_topic(self.ctx.physical(sink.topic), sink.partitions, 1)

        def apply(seq: int) -> dict[str, Any]:
            if existing is not None and stmt.or_replace:
                for q in self._writers(existing.name):
                    q.stop()
                    self.queries.pop(q.query_id, None)
            query_id = f"CSAS_{stmt.name}_{seq}"
            sink.created_by_query = query_id
            self.metastore.put(sink)
            self._start_query(query_id, text, plan, sink, props)
            return E.current_status(
                text, command_id, f"Created query with ID {query_id}", seq, query_id
            )

        return _Prepared(command_id, apply)

    def _start_query(
        self, query_id: str, text: str, plan: Any, sink: DataSource, props: dict[str, Any]
    ) -> None:
        query = PersistentQuery(
            query_id, text, plan, sink, self.ctx, self.plog, self.service_id, props
        )
        self.queries[query_id] = query
        query.start()

    def _insert_select(self, stmt: A.InsertSelect, text: str, props: dict[str, Any]) -> _Prepared:
        target = self.metastore.get(stmt.target)
        if target is None:
            raise KsqlError(f"Line: 1, Col: 13: {stmt.target} does not exist.")
        if target.kind == "TABLE":
            raise KsqlError(
                f"INSERT INTO can only be used to insert into a stream. {target.name} is a table."
            )
        plan = plan_select(
            stmt.query,
            self.metastore,
            persistent=True,
            sink_name=target.name,
            new_planner=_new_planner(props),
            into_existing=True,
        )
        if plan.key_columns != target.key_columns or plan.value_columns != target.value_columns:
            raise KsqlError(
                "Incompatible schema between results and sink.\n"
                f"Result schema is {_schema_text(plan.key_columns, plan.value_columns)}\n"
                f"Sink schema is {_schema_text(target.key_columns, target.value_columns)}"
            )
        command_id = f"stream/`{target.name}`/create"

        def apply(seq: int) -> dict[str, Any]:
            query_id = f"INSERTQUERY_{seq}"
            self._start_query(query_id, text, plan, target, props)
            return E.current_status(
                text, command_id, f"Created query with ID {query_id}", seq, query_id
            )

        return _Prepared(command_id, apply)

    # ------------------------------------------------------------------ INSERT VALUES
    def _insert_values(self, stmt: A.InsertValues) -> None:
        target = self.metastore.get(stmt.target)
        if target is None:
            raise KsqlError(f"Cannot insert values into an unknown stream/table: {stmt.target}")
        if target.kind == "TABLE":
            raise UnsupportedError("INSERT VALUES into tables")
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
                f"Got {[_value_text(v) for v in stmt.values]}"
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
                    f"{_shorten(repr(value))}({compiled.type})"
                ) from exc
        self._produce_row(target, row)  # a record too large: 40001 (engine_api's mapping)

    def _produce_row(self, target: DataSource, row: Mapping[str, Any]) -> None:
        topic = self.ctx.physical(target.topic)
        registry = (
            self.ctx.registry_or_none()
            if uses_registry(target.key_format.name) or uses_registry(target.value_format.name)
            else None
        )
        key_ser = make_serializer(target.key_format, target.key_columns, topic, True, registry)
        value_ser = make_serializer(
            target.value_format, target.value_columns, topic, False, registry
        )
        key = key_ser([row.get(n) for n, _ in target.key_columns]) if target.key_columns else None
        value = value_ser([row.get(n) for n, _ in target.value_columns])
        ts = row.get("ROWTIME")
        producer = self.ctx.producer
        if ts is None:
            producer.produce(topic, value, key)
        else:
            producer.produce(topic, value, key, timestamp=int(ts))
        producer.flush(30)

    async def insert_row(self, target: str, row: Mapping[str, Any]) -> None:
        """Insert one JSON row (column names matched case-insensitively) into a stream."""
        source = self.metastore.get(target) or self.metastore.get(target.upper())
        if source is None:
            raise KsqlStatementError(
                f"Cannot insert values into an unknown stream: {target}", error_code=40001
            )
        upper = {str(k).upper(): v for k, v in row.items()}
        values: dict[str, Any] = {}
        from services.ksql_server.formats.serdes import coercer

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
        await asyncio.to_thread(self._produce_row, source, values)

    # ------------------------------------------------------------------ DROP / TERMINATE
    def _writers(self, name: str) -> list[PersistentQuery]:
        return [q for q in self.queries.values() if q.sink.name == name]

    def _readers(self, name: str) -> list[PersistentQuery]:
        return [q for q in self.queries.values() if q.plan.source.name == name]

    def _drop(
        self, stmt: A.DropSource, text: str, props: dict[str, Any], replay: bool
    ) -> dict[str, Any] | _Prepared:
        source = self.metastore.get(stmt.name)
        command_id = f"{stmt.kind.lower()}/`{stmt.name}`/drop"
        if source is None:
            if stmt.if_exists:
                return E.current_status(
                    text, command_id, f"Source `{stmt.name}` does not exist.", self._seq
                )
            raise KsqlError(f"Source {stmt.name} does not exist.")
        if source.kind != stmt.kind:
            raise KsqlError(
                f"Incompatible data source type is {source.kind}, but statement was DROP "
                f"{stmt.kind}"
            )
        readers = [q.query_id for q in self._readers(stmt.name)]
        writers = [q for q in self._writers(stmt.name) if q.query_id != source.created_by_query]
        if readers or writers:
            raise KsqlError(
                f"Cannot drop {stmt.name}.\n"
                f"The following queries read from this source: [{', '.join(sorted(readers))}].\n"
                f"The following queries write into this source: "
                f"[{', '.join(sorted(q.query_id for q in writers))}].\n"
                "You need to terminate them before dropping " + stmt.name + "."
            )

        def apply(seq: int) -> dict[str, Any]:
            for q in self._writers(stmt.name):
                q.stop()
                self.queries.pop(q.query_id, None)
            self.metastore.remove(stmt.name)
            # never on replay: a later command may have created the topic again
            if stmt.delete_topic and not replay:
                self._delete_topic(source)
            return E.current_status(
                text, command_id, f"Source `{stmt.name}` (topic: {source.topic}) was dropped.", seq
            )

        return _Prepared(command_id, apply)

    def _delete_topic(self, source: DataSource) -> None:
        self.ctx.delete_topic(self.ctx.physical(source.topic))
        if uses_registry(source.value_format.name):
            with contextlib.suppress(Exception):
                self.ctx.registry.delete_subject(f"{self.ctx.physical(source.topic)}-value")

    def _terminate(self, stmt: A.Terminate) -> _Prepared:
        if stmt.query_id is None:
            targets = list(self.queries.values())
            command_id = "terminate/ALL/execute"
        else:
            q = self.queries.get(stmt.query_id) or self.queries.get(stmt.query_id.upper())
            if q is None:
                raise KsqlError(f"Unknown queryId: {stmt.query_id}")
            targets = [q]
            command_id = f"terminate/{q.query_id}/execute"

        def apply(seq: int) -> dict[str, Any]:
            for q in targets:
                q.stop()
                self.queries.pop(q.query_id, None)
                if q.sink.created_by_query == q.query_id:
                    q.sink.created_by_query = None
            return E.current_status(stmt.text, command_id, "Query terminated.", seq)

        return _Prepared(command_id, apply)

    # ------------------------------------------------------------------ SHOW / DESCRIBE
    def _show(self, stmt: A.Show, text: str, props: dict[str, Any]) -> dict[str, Any]:
        what = stmt.what
        if what in ("STREAMS", "TABLES"):
            kind = "STREAM" if what == "STREAMS" else "TABLE"
            sources = sorted(
                (s for s in self.metastore.sources.values() if s.kind == kind), key=lambda s: s.name
            )
            return E.sources_list(
                text, kind, sources, stmt.extended, lambda s, ext: self.describe_source(s, ext)
            )
        if what == "QUERIES":
            return {
                "@type": "queries",
                "statementText": text,
                "queries": [E.running_query(q) for q in self.queries.values()],
                "warnings": [],
            }
        if what == "TOPICS":
            prefix = self.ctx.topic_prefix
            topics = []
            for name, parts in sorted(self.ctx.list_topics().items()):
                if not name.startswith(prefix):
                    continue
                logical = name[len(prefix) :]
                if logical.startswith("_") and not stmt.extended:
                    continue
                topics.append({"name": logical, "replicaInfo": [1] * parts})
            return {
                "@type": "kafka_topics",
                "statementText": text,
                "topics": topics,
                "warnings": [],
            }
        if what == "PROPERTIES":
            return self._properties_entity(text, props)
        if what == "FUNCTIONS":
            from services.ksql_server.functions import FUNCTIONS
            from services.ksql_server.functions.lambdas import LAMBDA_FUNCTIONS

            names = sorted({*FUNCTIONS, *LAMBDA_FUNCTIONS})
            return {
                "@type": "function_names",
                "statementText": text,
                "functions": [{"name": n, "type": "SCALAR", "category": "OTHER"} for n in names],
                "warnings": [],
            }
        raise UnsupportedError(f"SHOW {what}")

    def _properties_entity(self, text: str, props: dict[str, Any]) -> dict[str, Any]:
        base = {
            "ksql.service.id": self.service_id,
            "ksql.streams.bootstrap.servers": self.bootstrap_servers,
            "ksql.schema.registry.url": self.schema_registry_url,
            "ksql.extension.dir": "ext",
            "ksql.persistent.prefix": "query_",
            "ksql.transient.prefix": "transient_",
            "ksql.output.topic.name.prefix": "",
        }
        for k, v in props.items():
            base[f"ksql.streams.{k}" if not k.startswith("ksql.") else k] = v
        overwritten = [f"ksql.streams.{k}" for k, v in props.items() if self.properties.get(k) != v]
        return {
            "@type": "properties",
            "statementText": text,
            "properties": [
                {"name": k, "scope": "KSQL", "value": None if v is None else str(v)}
                for k, v in sorted(base.items())
            ],
            "overwrittenProperties": overwritten,
            "defaultProperties": [],
            "warnings": [],
        }

    def describe_source(self, source: DataSource, extended: bool) -> dict[str, Any]:
        partitions = self.ctx.topic_partitions(self.ctx.physical(source.topic)) if extended else 0
        return D.source_description(
            source, extended, self.queries.values(), partitions, self.plog.count
        )

    def _describe(self, stmt: A.Describe, text: str) -> dict[str, Any]:
        return D.describe_entity(
            text, stmt.name, self.metastore, lambda s: self.describe_source(s, stmt.extended)
        )

    def _explain(self, stmt: A.Explain, text: str, props: dict[str, Any]) -> dict[str, Any]:
        if stmt.query_id is not None:
            host = urlsplit(get_settings().ksql_url).netloc or "localhost:8088"
            return X.explain_running(text, stmt.query_id, self.queries, host, self.properties)
        assert stmt.statement is not None
        return X.explain_statement(
            text, stmt.statement, self.metastore, self._seq, self.service_id, props
        )

    # ------------------------------------------------------------------ /query
    async def start_query(self, sql: str, properties: Mapping[str, Any] | None = None) -> PushQuery:
        props = dict(self.properties)
        props.update(normalize_properties(properties))
        try:
            texts = split_statements(sql)
            if len(texts) != 1:
                raise KsqlStatementError("Expected exactly one SELECT statement", sql, 40000)
            stmt = parse(texts[0])
        except (ParseError, RecursionError) as exc:
            raise as_statement_error(exc, sql) from exc
        if not isinstance(stmt, A.Query):
            raise KsqlStatementError(
                "The provided statement is not a query (SELECT or PRINT).", sql, 40001
            )
        select = stmt.select
        pull = not select.emit_changes
        try:
            if pull and select.partition_by:
                raise KsqlError("Pull queries don't support PARTITION BY clauses.")
            if pull:
                check_pull_limit(select, props)
            with self._lock:
                plan = plan_select(select, self.metastore, persistent=False)
            if pull:
                _check_pull_columns(select)
            if pull and plan.source.kind == "TABLE":
                raise UnsupportedError("pull queries over tables")
        except (KsqlError, RecursionError, UnicodeError) as exc:
            raise as_statement_error(exc, sql) from exc
        query_id = f"transient_{plan.source.name}_{uuid.uuid4().int % 10**19}"
        runtime = TransientQuery(
            query_id,
            plan,
            self.ctx,
            self.plog,
            self.service_id,
            props,
            pull,
            asyncio.get_running_loop(),
        )
        self._register_transient(runtime, sql)
        try:
            runtime.start()
        except BaseException:  # no thread (the system's limit): the query never ran
            self._transient.pop(query_id, None)
            raise
        push = _RunningPush(
            query_id=query_id,
            column_names=[n for n, _ in plan.output],
            column_types=[str(t) for _, t in plan.output],
            rows=runtime.rows(),
            is_pull=pull,
            properties=dict(properties or {}),
            limit_reached=lambda: runtime.limit_reached,
        )
        push._runtime = runtime
        return push

    def _register_transient(self, runtime: TransientQuery, sql: str) -> None:
        """Count the query against `ksql.max.push.queries` until its thread has ended (not
        merely until it was told to stop), so the cap bounds threads and consumers."""
        query_id = runtime.query_id
        with self._transient_lock:
            if len(self._transient) >= self.max_push_queries:
                raise KsqlStatementError(
                    MAX_PUSH_QUERIES_MESSAGE, sql, ERROR_MAX_PUSH_QUERIES_EXCEEDED
                )
            self._transient[query_id] = runtime

        def forget() -> None:
            self._transient.pop(query_id, None)

        runtime.on_close = forget

    async def close_query(self, query_id: str) -> bool:
        runtime = self._transient.get(query_id)
        if runtime is None:
            return False
        runtime.stop()
        await runtime.wait_closed(CLOSE_WAIT_S)
        return True

    # ------------------------------------------------------------------ helpers for callers
    def wait_until_caught_up(self, timeout: float = 30.0) -> bool:
        """Block until every persistent query has consumed its source to the end (tests and
        the conformance runner use this instead of sleeping)."""
        deadline = time.monotonic() + timeout
        for _round in range(2):
            since = time.monotonic()
            while not all(q.caught_up(since) for q in list(self.queries.values())):
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)
        return True


# ----------------------------------------------------------------------------- WITH helpers


def _command_props(props: Mapping[str, Any]) -> dict[str, Any]:
    return {
        f"ksql.streams.{k}" if not k.startswith("ksql.") else k: v
        for k, v in props.items()
        if v is not None
    }


def _check_props(wp: Mapping[str, Any]) -> None:
    unknown = [k for k in wp if k not in SOURCE_PROPS and not k.startswith("_")]
    if unknown:
        raise KsqlError(f"Invalid config variable(s) in the WITH clause: {','.join(unknown)}")
    for k in wp:
        if k in UNSUPPORTED_PROPS:
            raise UnsupportedError(f"WITH property {k}")
    if "FORMAT" in wp and ("KEY_FORMAT" in wp or "VALUE_FORMAT" in wp):
        raise KsqlError(
            "Cannot supply both 'KEY_FORMAT' and 'FORMAT' properties, as 'FORMAT' sets both key "
            "and value formats. Either use just 'FORMAT', or use 'KEY_FORMAT' and 'VALUE_FORMAT'."
            if "KEY_FORMAT" in wp
            else "Cannot supply both 'VALUE_FORMAT' and 'FORMAT' properties, as 'FORMAT' sets both "
            "key "
            "and value formats. Either use just 'FORMAT', or use 'KEY_FORMAT' and 'VALUE_FORMAT'."
        )


def _apply_defaults(wp: dict[str, Any], props: Mapping[str, Any]) -> None:
    """Server-wide default formats (`ksql.persistence.default.format.*`) for CREATE."""
    if "FORMAT" not in wp:
        if "VALUE_FORMAT" not in wp and props.get("ksql.persistence.default.format.value"):
            wp["VALUE_FORMAT"] = props["ksql.persistence.default.format.value"]
        if "KEY_FORMAT" not in wp and props.get("ksql.persistence.default.format.key"):
            wp["KEY_FORMAT"] = props["ksql.persistence.default.format.key"]
    if "WRAP_SINGLE_VALUE" not in wp and _default_wrap(props) is False:
        wp["_WRAP_DEFAULT"] = False


def _check_pull_columns(select: A.Select) -> None:
    """ksqlDB's pull queries refuse ROWPARTITION/ROWOFFSET."""
    from services.ksql_server.planner.plan import _column_names

    banned = ("ROWPARTITION", "ROWOFFSET")
    for clause, exprs in (
        ("SELECT", [i.expr for i in select.items if i.expr is not None]),
        ("WHERE", [select.where] if select.where is not None else []),
    ):
        used = set()
        for e in exprs:
            used |= _column_names(e)
        bad = [c for c in banned if c in used]
        if bad:
            raise KsqlError(
                f"Pull queries don't support the following columns in {clause} clauses: "
                + ", ".join(f"`{c}`" for c in bad)
            )


def _new_planner(props: Mapping[str, Any]) -> bool:
    return str(props.get("ksql.new.query.planner.enabled", "false")).lower() == "true"


def _default_wrap(props: Mapping[str, Any]) -> bool | None:
    v = props.get("ksql.persistence.wrap.single.values")
    if v is None:
        return None
    return str(v).lower() == "true"


def _check_sink_timestamp(wp: Mapping[str, Any], output: list[ColumnDef]) -> None:
    ts_col = str(wp["TIMESTAMP"]).upper()
    typ = dict(output).get(ts_col)
    if typ is None:
        raise KsqlError(
            f"The TIMESTAMP column set in the WITH clause does not exist in the schema: '{ts_col}'"
        )
    if typ.base not in ("BIGINT", "TIMESTAMP") and not (
        typ.base == "STRING" and "TIMESTAMP_FORMAT" in wp
    ):
        raise KsqlError(
            f"Timestamp column, `{ts_col}`, should be LONG(INT64), TIMESTAMP, or a String with a "
            "timestamp_format specified."
        )


def _formats(
    wp: Mapping[str, Any], source: DataSource | None
) -> tuple[str | None, FormatInfo | None]:
    from services.ksql_server.formats.serdes import KNOWN

    for k in ("KEY_FORMAT", "VALUE_FORMAT", "FORMAT"):
        if k in wp and str(wp[k]).upper() not in KNOWN:
            raise KsqlError(f"Unknown format: {str(wp[k]).upper()}")
    key = wp.get("KEY_FORMAT") or wp.get("FORMAT")
    value = wp.get("VALUE_FORMAT") or wp.get("FORMAT")
    key_name = str(key).upper() if key else None
    if value:
        return key_name, FormatInfo(str(value).upper())
    if source is not None:
        return key_name, FormatInfo(
            source.value_format.name, source.value_format.delimiter, source.value_format.wrap_single
        )
    return key_name, None


def _delimiter(raw: Any, which: str) -> str:
    text = str(raw)
    special = {"TAB": "\t", "SPACE": " "}
    if text.upper() in special:
        return special[text.upper()]
    prefix = f"Failed to prepare statement: Configuration {which}_DELIMITER is invalid: "
    if text.strip() == "" or text in ("\t", " "):
        raise KsqlError(
            prefix + "Delimiter cannot be empty, if you meant to have a tab or space for "
            "delimiter, please use the special values 'TAB' or 'SPACE'\nExample valid value: ';'"
        )
    if len(text) != 1:
        raise KsqlError(
            prefix + f"Invalid delimiter value: '{text}'. Delimiter must be a single character "
            "or TAB,SPACE\nExample valid value: ';'"
        )
    return text


def _format_info(name: str, wp: Mapping[str, Any], which: str) -> FormatInfo:
    fmt = FormatInfo(name.upper())
    delim = wp.get(f"{which}_DELIMITER")
    if delim is not None:
        if fmt.name != "DELIMITED":
            raise KsqlError(f"{fmt.name} does not support the following configs: [delimiter]")
        fmt.delimiter = _delimiter(delim, which)
    if which == "VALUE":
        if "_WRAP_DEFAULT" in wp:
            fmt.wrap_single = False
        if "WRAP_SINGLE_VALUE" in wp:
            fmt.wrap_single = bool(wp["WRAP_SINGLE_VALUE"])
        if "VALUE_AVRO_SCHEMA_FULL_NAME" in wp:
            fmt.schema_name = str(wp["VALUE_AVRO_SCHEMA_FULL_NAME"])
            if fmt.name != "AVRO":
                raise KsqlError(
                    f"{fmt.name} does not support the following configs: [fullSchemaName]"
                )
            if not fmt.schema_name.strip():
                raise KsqlError(
                    "fullSchemaName cannot be empty. Format configuration: {fullSchemaName=}"
                )
        elif "VALUE_SCHEMA_FULL_NAME" in wp:
            fmt.schema_name = str(wp["VALUE_SCHEMA_FULL_NAME"])
    elif "KEY_SCHEMA_FULL_NAME" in wp:
        fmt.schema_name = str(wp["KEY_SCHEMA_FULL_NAME"])
    schema_properties(fmt, wp, which)
    return fmt


def _check_wrapping(fmt: FormatInfo, value_cols: list[ColumnDef], wp: Mapping[str, Any]) -> None:
    if "WRAP_SINGLE_VALUE" not in wp:
        return
    if fmt.name == "DELIMITED" and fmt.wrap_single:
        raise KsqlError("Format 'DELIMITED' does not support 'WRAP_SINGLE_VALUE' set to 'true'.")
    if fmt.name == "KAFKA" and fmt.wrap_single:
        raise KsqlError("Format 'KAFKA' does not support 'WRAP_SINGLE_VALUE' set to 'true'.")
    if len(value_cols) != 1:
        raise KsqlError("'WRAP_SINGLE_VALUE' is only valid for single-field value schemas")


def _schema_text(keys: list[ColumnDef], values: list[ColumnDef]) -> str:
    parts = [f"`{n}` {t} KEY" for n, t in keys] + [f"`{n}` {t}" for n, t in values]
    return ", ".join(parts)


def _shorten(text: str, limit: int = 200) -> str:
    """A value quoted in an error message, cut short: the client sent it, maybe 15 MB of it."""
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def _value_text(e: A.Expr) -> str:
    from services.ksql_server.parser.naming import expr_text

    return expr_text(e)


__all__ = ["DEFAULT_SERVICE_ID", "Engine", "normalize_properties"]
