"""Reading `fraud_alerts`: committed alerts only, decoded with their registered writer schema.

The viewer assigns every partition from the beginning and commits nothing, so it never moves
another consumer's offsets and always shows the whole history (then follows new alerts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from services.common.avro.codec import AvroDecoder
from services.common.avro.schemas import registry_client
from services.common.avro.wire import WireFormatError
from services.common.errors import ServiceUnavailable
from services.common.kafka import make_consumer, wait_for_broker
from services.common.topics import ALERTS_TOPIC


def iter_alerts(
    topic: str = ALERTS_TOPIC,
    follow: bool = False,
    limit: int | None = None,
    group: str = "fraudstream-alerts",
    bootstrap: str | None = None,
    schema_registry_url: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    poll_s: float = 0.5,
) -> Iterator[dict[str, Any]]:
    """Yield alerts (dicts) in partition order; without `follow`, stop at the current end."""
    wait_for_broker(bootstrap, timeout=15)
    decoder = AvroDecoder(registry_client(schema_registry_url))
    consumer: Consumer = make_consumer(group, bootstrap, **{"enable.partition.eof": True})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ServiceUnavailable(f"topic {topic!r} does not exist (has a scorer run yet?)")
        consumer.assign([TopicPartition(topic, p, 0) for p in sorted(meta.partitions)])
        at_end: set[int] = set()
        shown = 0
        while not should_stop():
            if not follow and len(at_end) == len(meta.partitions):
                return
            for msg in consumer.consume(500, timeout=poll_s):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition() or 0)
                    continue
                try:
                    alert = decoder.decode(msg.value())
                except WireFormatError as exc:
                    alert = {"error": str(exc), "offset": msg.offset()}
                yield alert
                shown += 1
                if limit is not None and shown >= limit:
                    return
            if follow:
                time.sleep(0)
    finally:
        consumer.close()


def format_time_ms(ms: Any) -> str:
    if not isinstance(ms, int):
        return ""
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"
