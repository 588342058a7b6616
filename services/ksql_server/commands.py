"""The command topic: the log every DDL/DML statement is written to before it takes effect.

ksqlDB's order (its `DistributingExecutor` and `CommandStore`): validate a statement, write it to
the command topic in a Kafka transaction, and only then execute it. A statement whose write fails
therefore leaves no stream or query behind, and what runs is always what a restart replays.

Records follow Confluent's shape (key: the command id, e.g. "stream/`S1`/create"; value: JSON
with `statement` and `streamsProperties`), in one partition so offsets are the command sequence
numbers. The writes are transactional (transactional.id = the topic's name): the commit markers
take offsets too, so sequence numbers step by two as ksqlDB's do (CSAS_X_1, CSAS_Y_3, …), and a
second server with the same service id fences the first instead of interleaving with it.
Readers use read_committed, so an aborted write is never replayed. Replaying the records in
order rebuilds the metastore and restarts persistent queries with the same query ids, hence the
same consumer groups, transactional ids and committed offsets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from services.common.checkpoint import retry_retriable
from services.ksql_server.errors import KsqlServiceError
from services.ksql_server.runtime.kafka_context import KafkaContext

LOG = logging.getLogger("fraudstream.ksql.commands")

WRITE_TIMEOUT_S = 30.0


def normalize_properties(props: Mapping[str, Any] | None) -> dict[str, Any]:
    """`ksql.streams.auto.offset.reset` and `auto.offset.reset` mean the same here."""
    out: dict[str, Any] = {}
    for k, v in (props or {}).items():
        key = k[len("ksql.streams.") :] if k.startswith("ksql.streams.") else k
        out[key] = v
    return out


def command_props(props: Mapping[str, Any]) -> dict[str, Any]:
    """Session properties as the command topic keeps them (ksqlDB's `ksql.streams.` names)."""
    return {
        f"ksql.streams.{k}" if not k.startswith("ksql.") else k: v
        for k, v in props.items()
        if v is not None
    }


class CommandWriteError(KsqlServiceError):
    """The command could not be made durable: nothing of the statement took effect."""

    default_code = "command_write"


@dataclass
class Command:
    seq: int
    command_id: str
    statement: str
    properties: dict[str, Any]


class CommandTopic:
    def __init__(self, ctx: KafkaContext, service_id: str) -> None:
        self.ctx = ctx
        self.topic = ctx.physical(f"_confluent-ksql-{service_id}_command_topic")
        ctx.ensure_topic(self.topic, 1, 1, {"retention.ms": "-1", "min.insync.replicas": "1"})
        self._producer: Producer | None = None

    def read_all(self) -> list[Command]:
        consumer = Consumer(
            self.ctx.consumer_conf("_ksql_command_reader", **{"enable.auto.commit": False})
        )
        tp = TopicPartition(self.topic, 0)
        try:
            lo, hi = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            if hi <= lo:
                return []
            consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
            out: list[Command] = []
            while True:
                msgs = consumer.consume(500, 1.0)
                for m in msgs:
                    if m.error() is not None:
                        continue
                    command = _decode(m.offset() or 0, m.key(), m.value())
                    if command is not None:
                        out.append(command)
                # read_committed: the position passes the last commit marker, so it reaches
                # the high watermark once every committed command has been read
                pos = consumer.position([tp])[0].offset
                if pos >= hi:
                    return out
        finally:
            consumer.close()

    def end_offset(self) -> int:
        consumer = Consumer(self.ctx.consumer_conf("_ksql_command_reader"))
        try:
            return consumer.get_watermark_offsets(
                TopicPartition(self.topic, 0), timeout=10, cached=False
            )[1]
        finally:
            consumer.close()

    def append(self, command_id: str, statement: str, properties: dict[str, Any]) -> int:
        """Write one command in its own transaction; its offset once committed. Raises
        CommandWriteError when it is not durably in the topic (the transaction is aborted)."""
        value = {
            "statement": statement,
            "streamsProperties": properties,
            "originalProperties": properties,
            "plan": None,
            "version": 0,
        }
        delivered: dict[str, Any] = {}

        def done(err: Any, msg: Any) -> None:
            if err is None:
                delivered["offset"] = msg.offset()
            else:
                delivered["error"] = err

        try:
            producer = self._transactional_producer()
            producer.begin_transaction()
            producer.produce(
                self.topic, json.dumps(value).encode(), command_id.encode(), on_delivery=done
            )
            retry_retriable(lambda: producer.commit_transaction(WRITE_TIMEOUT_S))
        except KafkaException as exc:
            self._abandon(exc)
            raise CommandWriteError(str(exc.args[0])) from exc
        if "offset" not in delivered:  # committed, yet no delivery report: cannot happen
            raise CommandWriteError(str(delivered.get("error", "no delivery report")))
        return int(delivered["offset"])

    def _transactional_producer(self) -> Producer:
        if self._producer is None:
            producer = Producer(
                self.ctx.producer_conf(
                    **{
                        "transactional.id": self.topic,
                        "linger.ms": 0,
                        "transaction.timeout.ms": int(WRITE_TIMEOUT_S * 2000),
                    }
                )
            )
            producer.init_transactions(WRITE_TIMEOUT_S)
            self._producer = producer
        return self._producer

    def _abandon(self, exc: KafkaException) -> None:
        """After a failed write: abort the open transaction (unless the producer is in a fatal
        state) and drop the producer, so the next write starts with a fresh one: records the
        broker refused leave librdkafka's sequence numbers out of step ("requires epoch bump"),
        and `init_transactions` with the same id fences whatever the old one still holds."""
        err = exc.args[0]
        producer, self._producer = self._producer, None
        if producer is None or (isinstance(err, KafkaError) and err.fatal()):
            return
        try:
            producer.abort_transaction(WRITE_TIMEOUT_S)
        except KafkaException:
            LOG.warning("could not abort the command topic transaction", exc_info=True)


def _decode(offset: int, key: bytes | None, value: bytes | None) -> Command | None:
    """A command record, or None for one that is not a JSON object (skipped, as ksqlDB does)."""
    try:
        body = json.loads(value or b"{}")
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    properties = body.get("streamsProperties") or {}
    return Command(
        offset,
        (key or b"").decode(errors="replace"),
        str(body.get("statement", "")),
        properties if isinstance(properties, dict) else {},
    )
