"""The live alerts behind the console's table: one read-committed consumer, many pages.

A background thread reads `fraud_alerts` read-committed (only alerts of committed scorer
transactions), decodes each with the shared Avro decoder (the writer schema named in the record,
so an alert written before the EXPLANATION field existed reads as well as one after), keeps the
newest `recent` in memory and hands every new batch to each connected page (server-sent events,
app.py). It assigns partitions itself and commits nothing: it never moves anyone's offsets.

Every alert gets a `REF` (`partition-offset`): unique and stable, the key of its detail view.
Values are made JSON-safe here (non-finite numbers become null, strings and the explanation are
bounded), so nothing a scorer or an attacker wrote can make a page misbehave; the page still
renders every value as text, never as markup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services.common.avro.codec import AvroDecoder
from services.common.avro.schemas import registry_client
from services.common.avro.wire import WireFormatError
from services.common.errors import FraudstreamError
from services.common.kafka import make_consumer, quiet_logging

log = logging.getLogger("fraudstream.console.alerts")

MAX_TEXT = 200
"""Longest string value of an alert passed to a page (USER, TIMESTAMP, ...)."""
MAX_EXPLANATION = 10
TAIL_BASE = -2000
"""librdkafka's RD_KAFKA_OFFSET_TAIL_BASE: offset TAIL_BASE - n reads the last n records."""
SUBSCRIBER_QUEUE = 256
"""Batches a page may fall behind by before it is dropped (it reconnects and gets a snapshot)."""


def _json_value(value: Any, depth: int = 0) -> Any:
    """A decoded Avro value as bounded, JSON-safe data."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, bytes):
        return value[:MAX_TEXT].hex()
    if depth >= 3:
        return None
    if isinstance(value, dict):
        return {str(k)[:64]: _json_value(v, depth + 1) for k, v in list(value.items())[:64]}
    if isinstance(value, list | tuple):
        return [_json_value(v, depth + 1) for v in value[:MAX_EXPLANATION]]
    return str(value)[:MAX_TEXT]


def clean_alert(record: dict[str, Any], partition: int, offset: int) -> dict[str, Any]:
    """The alert as the pages see it: its fields, bounded, plus REF."""
    alert = {str(k)[:64]: _json_value(v) for k, v in list(record.items())[:64]}
    alert["REF"] = f"{partition}-{offset}"
    return alert


@dataclass
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[list[dict[str, Any]] | None]
    dropped: bool = False


@dataclass
class AlertFeed:
    """Reads the alerts topic in a thread; `snapshot()`, `get(ref)` and `subscribe()`."""

    topic: str
    recent: int = 2000
    consumer_factory: Callable[[], Consumer] | None = None
    decoder: AvroDecoder | None = None
    poll_s: float = 0.1
    _alerts: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    _subscribers: list[_Subscriber] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: str | None = None
    """Why the feed is not reading (topic missing, broker down), for the page's status line."""
    received: int = 0

    # ------------------------------------------------------------------ reading side
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)  # a daemon: a Kafka call in flight may outlast this
        self.end_streams()

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            while not self._stop.is_set():
                try:
                    if consumer is None:
                        consumer = self._open()
                        if consumer is None:
                            self._stop.wait(2.0)
                            continue
                    self._read(consumer)
                except (KafkaException, FraudstreamError) as exc:
                    self.error = str(exc)[:300]
                    log.warning("alerts feed: %s", self.error)
                    self._stop.wait(2.0)
        finally:
            if consumer is not None:
                consumer.close()

    def _open(self) -> Consumer | None:
        """A consumer assigned to the newest `recent` alerts of every partition, or None while
        the topic does not exist yet (no scorer has run)."""
        factory = self.consumer_factory or (
            lambda: make_consumer("fraudstream-console", **quiet_logging())
        )
        consumer = factory()
        try:
            meta = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                self.error = f"topic {self.topic} does not exist yet (has a scorer run?)"
                consumer.close()
                return None
            share = max(1, self.recent // len(meta.partitions))
            # a logical "tail" offset: librdkafka starts `share` records before the end
            consumer.assign(
                [TopicPartition(self.topic, p, TAIL_BASE - share) for p in sorted(meta.partitions)]
            )
        except BaseException:
            consumer.close()
            raise
        if self.decoder is None:
            self.decoder = AvroDecoder(registry_client())
        self.error = None
        return consumer

    def _read(self, consumer: Consumer) -> None:
        batch: list[dict[str, Any]] = []
        for msg in consumer.consume(500, timeout=self.poll_s):
            if msg.error() is not None:
                continue
            partition, offset = msg.partition() or 0, msg.offset() or 0
            assert self.decoder is not None
            try:
                record = self.decoder.decode(msg.value())
            except WireFormatError as exc:
                record = {"ERROR": str(exc)}
            batch.append(clean_alert(record, partition, offset))
        if batch:
            self._add(batch)

    def _add(self, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            for alert in batch:
                self._alerts[alert["REF"]] = alert
            while len(self._alerts) > self.recent:
                self._alerts.popitem(last=False)
            self.received += len(batch)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.loop.call_soon_threadsafe(self._deliver, sub, batch)

    @staticmethod
    def _deliver(sub: _Subscriber, batch: list[dict[str, Any]]) -> None:
        if sub.dropped:
            return
        try:
            sub.queue.put_nowait(batch)
        except asyncio.QueueFull:  # a page that does not read: end its stream
            sub.dropped = True
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.get_nowait()
                sub.queue.put_nowait(None)

    # ------------------------------------------------------------------ serving side
    def snapshot(self, limit: int = 500) -> list[dict[str, Any]]:
        """The newest alerts, newest first."""
        with self._lock:
            items = list(self._alerts.values())
        return items[::-1][:limit]

    def get(self, ref: str) -> dict[str, Any] | None:
        with self._lock:
            return self._alerts.get(ref)

    def newest(self) -> dict[str, Any] | None:
        with self._lock:
            return next(reversed(self._alerts.values()), None)

    def subscribe(self) -> _Subscriber:
        sub = _Subscriber(asyncio.get_running_loop(), asyncio.Queue(SUBSCRIBER_QUEUE))
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def end_streams(self) -> None:
        """Ends every open stream (server shutdown): each gets None."""
        with self._lock:
            subscribers, self._subscribers = list(self._subscribers), []
        for sub in subscribers:
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                sub.loop.call_soon_threadsafe(self._deliver_end, sub)

    @staticmethod
    def _deliver_end(sub: _Subscriber) -> None:
        sub.dropped = True
        with contextlib.suppress(asyncio.QueueFull):
            sub.queue.put_nowait(None)
