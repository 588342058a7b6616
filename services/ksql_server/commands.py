"""The command topic: every successful DDL/DML statement, replayed on start.

Records follow Confluent's shape (key: the command id, e.g. "stream/`S1`/create"; value: JSON
with `statement` and `streamsProperties`), in one partition so offsets are the command sequence
numbers. Replaying them in order rebuilds the metastore and restarts persistent queries with the
same query ids, hence the same consumer groups and committed offsets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from services.ksql_server.runtime.kafka_context import KafkaContext


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
        self._producer = Producer(ctx.producer_conf(**{"linger.ms": 0}))

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
                    try:
                        body = json.loads(m.value() or b"{}")
                    except ValueError:
                        continue
                    out.append(
                        Command(
                            m.offset() or 0,
                            (m.key() or b"").decode(),
                            body.get("statement", ""),
                            body.get("streamsProperties", {}) or {},
                        )
                    )
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
        result: dict[str, int] = {}

        def done(err: Any, msg: Any) -> None:
            if err is None:
                result["offset"] = msg.offset()
            else:
                result["error"] = -1

        value = {
            "statement": statement,
            "streamsProperties": properties,
            "originalProperties": properties,
            "plan": None,
            "version": 0,
        }
        self._producer.produce(
            self.topic, json.dumps(value).encode(), command_id.encode(), on_delivery=done
        )
        self._producer.flush(30)
        if "offset" not in result:
            raise RuntimeError("could not write to the command topic")
        return result["offset"]
