"""The KSQL engine behind the REST layer: statements in, ksqlDB entities and rows out.

`Engine` implements `engine_api.KsqlEngine` and only dispatches: a statement goes parser →
`ddl`/planner → runtime (`rows` writes INSERTs, `transient` holds push queries); `show`,
`describe`, `explain` build the answers. DDL/DML statements are kept in the command topic and
replayed on start (same query ids, so queries resume from their committed offsets).

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
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from services.common.settings import get_settings
from services.ksql_server import ddl
from services.ksql_server import describe as D
from services.ksql_server import entities as E
from services.ksql_server import explain as X
from services.ksql_server import show as S
from services.ksql_server import table_rules as TR
from services.ksql_server.commands import (
    CommandTopic,
    CommandWriteError,
    command_props,
    normalize_properties,
)
from services.ksql_server.engine_api import (
    KsqlStatementError,
    PushQuery,
    as_statement_error,
)
from services.ksql_server.errors import KsqlError, LocatedError, UnsupportedError, clip
from services.ksql_server.formats.factory import infer_columns
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.formats.registry import INFERRING_FORMATS, uses_registry
from services.ksql_server.metastore import DataSource, MetaStore
from services.ksql_server.parser import ParseError, parse, split_statements, split_statements_at
from services.ksql_server.parser import ast as A
from services.ksql_server.parser.lexer import redact
from services.ksql_server.parser.limits import check_recordable
from services.ksql_server.planner.plan import check_pull_columns, plan_select
from services.ksql_server.planner.pull import (
    check_pull_clauses,
    check_pull_table,
    codegen_message,
    plan_pull,
    pull_metastore,
    where_statement,
)
from services.ksql_server.planner.windowing import window_info
from services.ksql_server.pull_rules import check_pull_limit
from services.ksql_server.runtime.join_query import JoinQuery, TransientJoinQuery
from services.ksql_server.runtime.kafka_context import KafkaContext
from services.ksql_server.runtime.processor import ProcessingLog
from services.ksql_server.runtime.pull import table_pull_query
from services.ksql_server.runtime.query import PersistentQuery, QuerySetup, TransientQuery
from services.ksql_server.runtime.repartition import RepartitionedQuery
from services.ksql_server.runtime.rows import json_row, values_row, write_row
from services.ksql_server.runtime.transient import TransientQueries, max_push_queries
from services.ksql_server.types import ColumnDef

LOG = logging.getLogger("fraudstream.ksql.engine")

DEFAULT_SERVICE_ID = "default_"
VERSION = "0.29.0"


@dataclass
class _Prepared:
    """A validated statement that changes state: written to the command topic as `command_id`,
    then `apply` runs with its sequence number and returns the statement's entity."""

    command_id: str
    apply: Callable[[int], dict[str, Any]]


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
        self.transient = TransientQueries(max_push_queries(self.properties))
        """Transient (push, and pull over a stream) queries running at once; more get 40003."""
        self.auto_create_source_topics = auto_create_source_topics
        self.ctx = KafkaContext(
            self.bootstrap_servers, self.schema_registry_url, topic_prefix, fast
        )
        self.metastore = MetaStore()
        self.queries: dict[str, PersistentQuery] = {}
        self._lock = threading.RLock()
        self._seq = 0
        self.plog_topic = f"{self.service_id}ksql_processing_log"
        self.plog = ProcessingLog(
            self._plog_produce if processing_log else None, self.ctx.physical(self.plog_topic)
        )
        self._plog_ready = False
        self._commands: CommandTopic | None = None
        self.replay_errors: list[str] = []
        self._replaying = False
        if command_topic:
            self._commands = CommandTopic(self.ctx, self.service_id)
            self._replay()

    # ------------------------------------------------------------------ lifecycle
    def _replay(self) -> None:
        """Rebuild the metastore and the queries from the command topic, then start the queries
        still there at its end. As in ksqlDB, none starts during the replay: a query a later
        TERMINATE or DROP ends would join its group, fence its transactional id and process
        records only to be stopped again (on a used stack, 43 of 47 s of start-up)."""
        assert self._commands is not None
        commands = self._commands.read_all()
        self._replaying = True
        try:
            for cmd in commands:
                self._seq = cmd.seq
                try:
                    stmt = parse(cmd.statement)
                    self._execute_statement(
                        stmt,
                        cmd.statement,
                        normalize_properties(cmd.properties),
                        replay_seq=cmd.seq,
                    )
                except Exception as exc:
                    LOG.warning("replay of %r failed: %s", redact(cmd.statement), exc)
                    self.replay_errors.append(f"{cmd.statement}: {exc}")
        finally:
            self._replaying = False
        for query in self.queries.values():
            query.start()
        self._seq = self._commands.end_offset()
        if commands:
            LOG.info("replayed %d commands, %d queries running", len(commands), len(self.queries))

    def healthy(self) -> bool:
        """The broker answers (checked at most every 2 s; backs /healthcheck)."""
        return self.ctx.healthy()

    @property
    def kafka_cluster_id(self) -> str | None:
        """The Kafka cluster id reported by /info."""
        return self.ctx.cluster_id()

    def stop_transient_queries(self) -> None:
        """Tell every push query to end (shutdown): their threads end, their streams finish."""
        self.transient.stop_all()

    def transient_query_ids(self) -> list[str]:
        """Push (and stream pull) queries whose thread is still running."""
        return self.transient.ids()

    def close(self) -> None:
        self.stop_transient_queries()
        with self._lock:
            for q in list(self.queries.values()):
                q.stop()
            self.transient.join_all()
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
            texts = split_statements_at(sql)
        except ParseError as exc:
            raise as_statement_error(exc, sql) from exc
        with self._lock:
            for text, line in texts:
                try:
                    stmt = parse(text, line)
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
                    located = exc.located(text, line) if isinstance(exc, LocatedError) else exc
                    error = as_statement_error(located, text, entities)
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
        if isinstance(stmt, A.AlterSource):
            TR.check_alter(stmt, self.metastore.get(stmt.name))
            raise UnsupportedError("ALTER ... ADD COLUMN")
        raise UnsupportedError(f"statement {type(stmt).__name__}")

    def _log(self, command_id: str, text: str, props: dict[str, Any]) -> int:
        """Write a validated command to the command topic (raises CommandWriteError when it is
        not durably there); returns its sequence number."""
        seq = self._seq
        if self._commands is not None:
            seq = self._commands.append(command_id, text, command_props(props))
        self._seq = seq + 1
        return seq

    # ------------------------------------------------------------------ CREATE STREAM
    def _create_source(
        self, stmt: A.CreateSource, text: str, props: dict[str, Any], replay: bool
    ) -> dict[str, Any] | _Prepared:
        kind = stmt.kind
        existing = self.metastore.get(stmt.name)
        command_id = f"{kind.lower()}/`{stmt.name}`/create"
        TR.check_create_source(stmt, existing)
        if existing is not None and not stmt.or_replace:
            return ddl.already_exists(stmt, text, command_id, self._seq)
        source = ddl.build_source(stmt, text, props, self._infer_columns)
        TR.check_table_key(source)
        topic = self.ctx.physical(source.topic)
        partitions = self.ctx.topic_partitions(topic)
        wanted = stmt.props.get("PARTITIONS")
        if partitions is None:
            if wanted is None and not (self.auto_create_source_topics or replay):
                raise ddl.missing_topic(stmt, source.topic)
            partitions = int(wanted or 1)
            self.ctx.ensure_topic(topic, partitions, 1)
        elif not replay and wanted is not None and int(wanted) != partitions:
            raise ddl.partitions_differ(source.topic, wanted, partitions)
        source.partitions = partitions

        def apply(seq: int) -> dict[str, Any]:
            self.metastore.put(source)
            if source.is_source and kind == "TABLE":  # read-only tables are materialised
                self._materialize(source, seq, text, props)
            return E.current_status(text, command_id, f"{kind.title()} created", seq)

        return _Prepared(command_id, apply)

    def _infer_columns(
        self, fmt: FormatInfo, topic: str, is_key: bool, wp: MutableMapping[str, Any]
    ) -> list[ColumnDef] | None:
        """The columns of the schema registered for `topic` (the DDL rules' `ColumnInference`);
        the registry is asked only for a format that can infer."""
        registry = self.ctx.registry if fmt.name in INFERRING_FORMATS else None
        return infer_columns(fmt, registry, self.ctx.physical(topic), is_key, wp)

    # ------------------------------------------------------------------ CSAS / INSERT INTO
    def _create_as_select(
        self, stmt: A.CreateSource, text: str, props: dict[str, Any], replay: bool
    ) -> dict[str, Any] | _Prepared:
        assert stmt.query is not None
        kind = stmt.kind
        existing = self.metastore.get(stmt.name)
        command_id = f"{kind.lower()}/`{stmt.name}`/create"
        if existing is not None and not stmt.or_replace:
            return ddl.already_exists(stmt, text, command_id, self._seq)
        if stmt.query.emit_changes is False and stmt.query.limit is not None:
            raise KsqlError("CREATE STREAM AS SELECT statements don't support LIMIT clause.")
        wp = dict(stmt.props)
        ddl.check_props(wp)
        if "TIMESTAMP" in wp:
            ddl.check_sink_timestamp(
                wp, plan_select(stmt.query, self.metastore, persistent=False).output
            )
        plan = plan_select(
            stmt.query,
            self.metastore,
            persistent=True,
            sink_name=stmt.name,
            new_planner=ddl.new_planner(props),
        )
        TR.check_result_kind(kind, plan.stateful is not None or plan.source.kind == "TABLE")
        sink = ddl.build_sink(stmt, plan, text, props)
        sink.window = window_info(plan)
        src_partitions = self.ctx.topic_partitions(self.ctx.physical(plan.source.topic)) or 1
        sink.partitions = int(wp.get("PARTITIONS", src_partitions))
        # before the write, as ksqlDB's topic injector does: a query needs its sink
        self.ctx.ensure_topic(self.ctx.physical(sink.topic), sink.partitions, 1)

        def apply(seq: int) -> dict[str, Any]:
            if existing is not None and stmt.or_replace:
                for q in self._writers(existing.name):
                    q.stop()
                    self.queries.pop(q.query_id, None)
            query_id = f"{'CTAS' if kind == 'TABLE' else 'CSAS'}_{stmt.name}_{seq}"
            sink.created_by_query = query_id
            self.metastore.put(sink)
            self._start_query(query_id, text, plan, sink, props)
            return E.current_status(
                text, command_id, f"Created query with ID {query_id}", seq, query_id
            )

        return _Prepared(command_id, apply)

    def _materialize(self, source: DataSource, seq: int, text: str, props: dict[str, Any]) -> None:
        """ksqlDB's `CST_<table>_<seq>` query, which keeps a source table in a state store."""
        from services.ksql_server.planner.table import MaterializePlan

        select = A.Select([A.SelectItem(None)], A.Relation(source.name))
        plan = plan_select(select, self.metastore, persistent=False)
        plan.stateful = MaterializePlan()
        query_id = f"CST_{source.name}_{seq}"
        source.created_by_query = query_id
        # the whole topic is the table, whatever the session's auto.offset.reset
        self._start_query(query_id, text, plan, source, {**props, "auto.offset.reset": "earliest"})

    def _start_query(
        self, query_id: str, text: str, plan: Any, sink: DataSource, props: dict[str, Any]
    ) -> None:
        runtime = PersistentQuery if plan.join is None else JoinQuery
        if plan.join is None and getattr(plan.stateful, "repartition", None):  # re-grouped
            runtime = RepartitionedQuery
        query = runtime(
            QuerySetup(query_id, text, plan, sink, self.ctx, self.plog, self.service_id, props)
        )
        self.queries[query_id] = query
        if not self._replaying:  # a replayed query starts when the replay is done
            query.start()

    def _insert_select(self, stmt: A.InsertSelect, text: str, props: dict[str, Any]) -> _Prepared:
        target = self.metastore.get(stmt.target)
        if target is None:
            raise LocatedError(f"Source `{stmt.target}` does not exist.", stmt.target_pos)
        if target.kind == "TABLE":
            raise KsqlError(
                f"INSERT INTO can only be used to insert into a stream. {target.name} is a table."
            )
        plan = plan_select(
            stmt.query,
            self.metastore,
            persistent=True,
            sink_name=target.name,
            new_planner=ddl.new_planner(props),
            into_existing=True,
        )
        ddl.check_insert_schema(plan, target)
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
            raise KsqlError(
                f"Cannot insert values into an unknown stream/table: `{stmt.target}`"
                + self.metastore.alternatives(stmt.target)
            )
        TR.check_insert_values(target)
        # a record too large: 40001 (engine_api's mapping)
        write_row(self.ctx, target, values_row(stmt, target))

    async def insert_row(self, target: str, row: Mapping[str, Any]) -> None:
        """Insert one JSON row (column names matched case-insensitively) into a stream."""
        source = self.metastore.get(target) or self.metastore.get(target.upper())
        if source is None:
            raise KsqlStatementError(
                f"Cannot insert values into an unknown stream: {target}", error_code=40001
            )
        await asyncio.to_thread(write_row, self.ctx, source, json_row(source, row, target))

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
            raise KsqlError(f"{stmt.kind.title()} {stmt.name} does not exist.")
        if source.kind != stmt.kind:
            raise KsqlError(
                f"Incompatible data source type is {source.kind}, but statement was DROP "
                f"{stmt.kind}"
            )
        TR.check_drop(stmt, source)
        readers = [
            q.query_id
            for q in self._readers(stmt.name)
            if q.query_id != source.created_by_query  # a source table's own CST query
        ]
        writers = [q for q in self._writers(stmt.name) if q.query_id != source.created_by_query]
        if readers or writers:
            raise ddl.still_used(stmt.name, readers, [q.query_id for q in writers])

        def apply(seq: int) -> dict[str, Any]:
            for q in self._writers(stmt.name):
                q.stop()
                q.delete_state()
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
                q.delete_state()
                self.queries.pop(q.query_id, None)
                if q.sink.created_by_query == q.query_id:
                    q.sink.created_by_query = None
            return E.current_status(stmt.text, command_id, "Query terminated.", seq)

        return _Prepared(command_id, apply)

    # ------------------------------------------------------------------ SHOW / DESCRIBE
    def _show(self, stmt: A.Show, text: str, props: dict[str, Any]) -> dict[str, Any]:
        identity = {
            "ksql.service.id": self.service_id,
            "ksql.streams.bootstrap.servers": self.bootstrap_servers,
            "ksql.schema.registry.url": self.schema_registry_url,
        }
        view = S.ServerView(
            self.metastore,
            self.queries.values(),
            self.ctx.list_topics,
            self.ctx.topic_prefix,
            self.describe_source,
            self.properties,
            identity,
        )
        return S.show_entity(stmt, text, props, view)

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
                check_pull_clauses(select)
                table = self.metastore.get(select.source.name)
                if table is not None and table.kind == "TABLE":
                    return self._table_pull(select, table, props, properties or {})
            with self._lock:
                plan = plan_select(select, self.metastore, persistent=False)
            if pull:
                check_pull_columns(select)
            if plan.join is not None and pull:
                raise UnsupportedError("pull queries with JOIN")
            if plan.stateful is not None and pull:
                raise UnsupportedError("pull queries with GROUP BY")
        except (KsqlError, RecursionError, UnicodeError) as exc:
            located = exc.located(texts[0]) if isinstance(exc, LocatedError) else exc
            raise as_statement_error(located, sql) from exc
        query_id = f"transient_{plan.source.name}_{uuid.uuid4().int % 10**19}"
        runtime = (TransientQuery if plan.join is None else TransientJoinQuery)(
            query_id,
            plan,
            self.ctx,
            self.plog,
            self.service_id,
            props,
            pull,
            asyncio.get_running_loop(),
        )
        return self.transient.start(runtime, sql, dict(properties or {}))

    def _table_pull(
        self, select: A.Select, table: Any, props: dict[str, Any], given: Mapping[str, Any]
    ) -> PushQuery:
        """A pull query over a table: answered from its materialised state (runtime/pull.py)."""
        try:
            check_pull_table(select, table)
            pull_plan = plan_pull(select, table, props, table.window is not None)
            with self._lock:
                plan = plan_select(select, pull_metastore(self.metastore, table), persistent=False)
                queries = list(self.queries.values())
            check_pull_columns(select)
        except UnsupportedError:
            raise
        except KsqlError as exc:
            message = where_statement(codegen_message(select, str(exc)), select)
            if message == str(exc):
                raise
            raise KsqlError(message) from exc
        query_id = f"transient_{table.name}_{uuid.uuid4().int % 10**19}"
        return table_pull_query(query_id, plan, pull_plan, queries, dict(given))

    async def close_query(self, query_id: str) -> bool:
        return await self.transient.close(query_id)

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


__all__ = ["DEFAULT_SERVICE_ID", "Engine", "normalize_properties"]
