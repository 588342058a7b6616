"""Batch transform shared by persistent and transient queries: messages → rows → outputs.

One call handles a whole consumed batch: deserialize every record (bad ones go to the
processing log and are skipped), run the query's generated batch function over the rows, and
(for persistent queries) serialize keys and values of the results.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from services.ksql_server.errors import KsqlServiceError
from services.ksql_server.formats import make_deserializer, make_serializer
from services.ksql_server.formats.base import deserialize_batch
from services.ksql_server.formats.windowed import flat_key_deserializer, frame
from services.ksql_server.metastore import DataSource
from services.ksql_server.planner.plan import QueryPlan
from services.ksql_server.planner.windowing import key_width, source_columns, window_info
from services.ksql_server.runtime.columnar import ColumnarOutput, ColumnarPlan
from services.ksql_server.values import parse_timestamp

LOG = logging.getLogger("fraudstream.ksql.runtime")

ProcessingLogger = Callable[..., None]
"""`(query_id, component, message, record, *, code)`: see `ProcessingLog.__call__`."""


class TimestampExtractorError(KsqlServiceError):
    """A record's TIMESTAMP column did not parse and `ksql.timestamp.throw.on.invalid` is on:
    ksqlDB's Streams app then stops the query (a StreamsException) instead of skipping it."""


def throw_on_invalid(properties: dict[str, Any]) -> bool:
    """`ksql.timestamp.throw.on.invalid` (default false: such a record is logged and skipped)."""
    value = properties.get("ksql.timestamp.throw.on.invalid", False)
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


@dataclass
class OutRecord:
    key: bytes | None
    value: bytes | None
    timestamp: int
    row: tuple[Any, ...]


class ProcessingLog:
    """Writes ksqlDB-style processing-log entries (JSON) to the processing-log topic.

    Each entry carries, beside ksqlDB's fields, a top-level `code`: the stable name of what went
    wrong (`deserialize_value`, `expression`, ...; docs/errors.md lists them), chosen where the
    record was rejected, so tools count entries by code and people read `errorMessage`."""

    def __init__(self, produce: Callable[[str, bytes], None] | None, topic: str) -> None:
        self._produce = produce
        self.topic = topic
        self.count = 0
        self._lock = threading.Lock()

    def __call__(
        self,
        query_id: str,
        component: str,
        message: str,
        record: bytes | None,
        *,
        code: str = "processing",
    ) -> None:
        with self._lock:
            self.count += 1
        entry = {
            "level": "ERROR",
            "logger": f"processing.{query_id}.{component}",
            "time": int(time.time() * 1000),
            "code": code,
            "message": {
                "type": 0 if component.endswith("deserializer") else 1,
                "deserializationError"
                if component.endswith("deserializer")
                else "recordProcessingError": {
                    "errorMessage": message,
                    "record": None if record is None else base64.b64encode(record).decode(),
                    "cause": [],
                },
            },
        }
        LOG.debug("processing error in %s: %s", query_id, message)
        if self._produce is not None:
            try:
                self._produce(self.topic, json.dumps(entry).encode())
            except Exception:
                LOG.exception("cannot write to the processing log")


class BatchProcessor:
    """Specialised to one plan: deserializers for the source, serializers for the sink."""

    def __init__(
        self,
        query_id: str,
        plan: QueryPlan,
        sink: DataSource | None,
        registry: Any,
        plog: ProcessingLog,
        sink_topic: str = "",
    ) -> None:
        src = plan.source
        self.query_id = query_id
        self.plan = plan
        self.plog = plog
        self.key_deser = make_deserializer(
            src.key_format, src.key_columns, src.topic, True, registry
        )
        self.value_deser = make_deserializer(
            src.value_format, src.value_columns, src.topic, False, registry
        )
        self.n_keys = len(src.key_columns)
        self.n_key_slots = key_width(src)
        """row columns the key fills: the key columns, and a windowed key's WINDOWSTART/END"""
        if src.window is not None:
            self.key_deser = flat_key_deserializer(self.key_deser, src.window, self.n_keys)
        self.null_values: list[Any] = [None] * len(src.value_columns)
        self.tombstones: set[int] = set()
        self.ts_index: int | None = None
        self.ts_format = src.timestamp_format
        if src.timestamp_column:
            names = [n for n, _ in source_columns(src)]
            self.ts_index = names.index(src.timestamp_column)
        self.properties: dict[str, Any] = {}  # the query's, for stateful operators
        self.key_ser: Callable[..., bytes | None] | None = None
        self.value_ser: Callable[..., bytes | None] | None = None
        self.sink_ts: int | None = None
        self.sink_ts_format: str | None = None
        self.null_keys: set[int] = set()
        self.sink_window = window_info(plan) if sink is not None else None
        """a windowed sink of a projection/filter: each key framed with its row's window"""
        if sink is not None:
            self.key_ser = make_serializer(
                sink.key_format, plan.key_columns, sink_topic, True, registry
            )
            self.value_ser = make_serializer(
                sink.value_format, plan.value_columns, sink_topic, False, registry
            )
            if sink.timestamp_column:
                names = [n for n, _ in plan.output]
                self.sink_ts = names.index(sink.timestamp_column)
                self.sink_ts_format = sink.timestamp_format
        self.columnar: ColumnarPlan | None = None
        if sink is not None and plan.stateful is None and self.sink_window is None:
            self.columnar = ColumnarPlan.build(
                plan,
                self.value_deser,
                self.value_ser,
                self.n_keys,
                self.ts_index is not None or self.sink_ts is not None,
                _kafka_string_key(src.key_format, src.key_columns)
                and _kafka_string_key(sink.key_format, plan.key_columns),
            )

    def columnar_batch(self, messages: list[Message]) -> ColumnarOutput | None:
        """Sink values, timestamps and keys of a whole batch through the column-wise path, or None
        when the query or this batch needs the row path (rows → evaluate → serialize)."""
        if self.columnar is None:
            return None
        return self.columnar.run(without_errors(messages))

    def rows(self, messages: list[Message]) -> list[list[Any]]:
        """Deserialize a batch into rows: keys, values, ROWTIME, ROWPARTITION, ROWOFFSET."""
        out: list[list[Any]] = []
        self.tombstones = set()
        self.null_keys = set()
        kd, qid = self.key_deser, self.query_id
        messages = without_errors(messages)
        decoded = deserialize_batch(self.value_deser, [m.value() for m in messages])
        n_keys = self.n_key_slots
        ts_index = self.ts_index
        for m, vals in zip(messages, decoded, strict=True):
            if isinstance(vals, Exception):
                self.plog(
                    qid,
                    "KsqlTopic.Source.deserializer",
                    f"Failed to deserialize value from topic: {m.topic()}. {vals}",
                    m.value(),
                    code="deserialize_value",
                )
                continue
            tombstone = vals is None
            if tombstone:
                # a null value flows through a stream as a null value (ksqlDB keeps the key)
                vals = list(self.null_values)
            raw_key = m.key()
            if n_keys:
                try:
                    keys = kd(raw_key) if raw_key is not None else [None] * n_keys
                except Exception as exc:
                    self.plog(
                        qid,
                        "KsqlTopic.Source.deserializer",
                        f"Failed to deserialize key from topic: {m.topic()}. {exc}",
                        raw_key,
                        code="deserialize_key",
                    )
                    continue
                row = keys + vals
            else:
                row = vals
            ts: int | None = m.timestamp()[1]
            if ts_index is not None:
                try:
                    ts = self._extract_ts(row[ts_index])
                except Exception as exc:
                    if throw_on_invalid(self.properties):
                        raise TimestampExtractorError(
                            "Fatal user code error in TimestampExtractor callback for record "
                            f"(topic={m.topic()}, partition={m.partition()}, "
                            f"offset={m.offset()}): {exc}"
                        ) from exc
                    self.plog(
                        qid,
                        "KsqlTopic.Source.timestamp",
                        f"Failed to extract timestamp: {exc}",
                        m.value(),
                        code="timestamp",
                    )
                    continue
                if ts is None or ts < 0:
                    continue
            row.append(ts)
            row.append(m.partition())
            row.append(m.offset())
            if tombstone:
                self.tombstones.add(id(row))
            if raw_key is None:
                self.null_keys.add(id(row))
            out.append(row)
        return out

    def _extract_ts(self, v: Any) -> int | None:
        """The record time read from the TIMESTAMP column (a string with TIMESTAMP_FORMAT);
        raises on one that does not parse."""
        if v is None:
            return None
        if isinstance(v, str):
            if self.ts_format:
                from services.ksql_server.functions.timefmt import parse_millis

                return parse_millis(v, self.ts_format)
            return parse_timestamp(v)
        return int(v)

    def evaluate(self, rows: list[list[Any]]) -> list[tuple[Any, tuple[Any, ...] | None]]:
        """Filter + project a batch. A null-valued record skips the WHERE (it is dropped when
        there is one) and flows on as a null value (values None)."""
        qid = self.query_id

        def log(row: Any, column: str, exc: BaseException) -> None:
            self.plog(
                qid,
                "Project" if column != "WHERE" else "Filter",
                f"Error computing expression {column}: {exc}",
                None,
                code="expression",
            )

        tombs = self.tombstones
        if not tombs:
            return list(self.plan.batch(rows, log))
        out: list[tuple[Any, tuple[Any, ...] | None]] = []
        has_where = self.plan.select.where is not None
        pending: list[list[Any]] = []
        for row in rows:
            if id(row) in tombs:
                if pending:
                    out += self.plan.batch(pending, log)
                    pending = []
                if not has_where:
                    out.append((row, None))
            else:
                pending.append(row)
        if pending:
            out += self.plan.batch(pending, log)
        return out

    def serialize(self, results: list[tuple[Any, tuple[Any, ...] | None]]) -> list[OutRecord]:
        assert self.key_ser is not None and self.value_ser is not None
        key_idx = self.plan.key_indexes
        val_idx = self.plan.value_indexes
        ks, vs = self.key_ser, self.value_ser
        ts_pos = len(self.plan.row_columns) - 3
        partitioned = self.plan.partition_by
        n_keys = self.n_keys
        single_key = len(key_idx) == 1
        all_values = val_idx == list(range(len(self.plan.output)))
        out: list[OutRecord] = []
        for row, values in results:
            try:
                if values is None:  # null value: the source key, or the PARTITION BY key
                    if partitioned:
                        kv = self._tombstone_key(row)
                        key = None if single_key and kv[0] is None else ks(kv)
                    else:
                        kv = row[:n_keys]
                        key = ks(kv) if kv and any(k is not None for k in kv) else None
                    value = None
                else:
                    kv = [values[i] for i in key_idx]
                    if (
                        not key_idx
                        or (single_key and kv[0] is None)
                        or (not partitioned and id(row) in self.null_keys)
                    ):
                        key = None
                    else:
                        key = ks(kv)
                    value = vs(values if all_values else [values[i] for i in val_idx])
                if key is not None and self.sink_window is not None:
                    key = frame(key, self.sink_window, row[n_keys], row[n_keys + 1])
            except Exception as exc:
                self.plog(
                    self.query_id,
                    "KsqlTopic.Sink.serializer",
                    f"Failed to serialize: {exc}",
                    None,
                    code="serialize",
                )
                continue
            ts = row[ts_pos]
            if self.sink_ts is not None and values is not None:
                t = values[self.sink_ts]
                try:
                    ts = self._sink_timestamp(t)
                except Exception as exc:
                    self.plog(
                        self.query_id,
                        "KsqlTopic.Sink.timestamp",
                        f"Bad timestamp: {exc}",
                        None,
                        code="sink_timestamp",
                    )
                    continue
                if ts is None or ts < 0:
                    continue
            out.append(OutRecord(key, value, ts, values or ()))
        return out

    def _tombstone_key(self, row: list[Any]) -> list[Any]:
        plan = self.plan
        assert plan.key_batch is not None
        result = plan.key_batch([row], lambda *_: None)
        values = list(result[0][1]) if result else [None] * len(plan.key_indexes)
        return [None if dep else v for v, dep in zip(values, plan.key_value_dependent, strict=True)]

    def _sink_timestamp(self, t: Any) -> int | None:
        if t is None:
            return None
        if isinstance(t, str):
            if self.sink_ts_format:
                from services.ksql_server.functions.timefmt import parse_millis

                return parse_millis(t, self.sink_ts_format)
            return parse_timestamp(t)
        return int(t)


def without_errors(messages: list[Message]) -> list[Message]:
    """The records of a consumed batch, error events left out; the batch itself when it has
    none (the usual case, checked in one C-level pass: no Python frame per record)."""
    if not any(map(Message.error, messages)):
        return messages
    return [m for m in messages if m.error() is None]


def _kafka_string_key(key_format: Any, key_columns: list[Any]) -> bool:
    """One STRING key column in the KAFKA format: its bytes are the UTF-8 text, unframed."""
    return (
        key_format.name == "KAFKA" and len(key_columns) == 1 and key_columns[0][1].base == "STRING"
    )
