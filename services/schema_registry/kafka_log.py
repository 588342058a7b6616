"""The `_schemas` topic as the registry's log: a reader that folds every record into the state,
and a single writer elected through a Kafka consumer group.

Reading: every instance assigns itself the topic's one partition from the beginning and applies
each record; it answers requests only once it has read up to the end offset it saw on start.

Writing: only the elected leader writes (the election is in `leadership.py`: a consumer group
over `_schemas`, a fixed `transactional.id` that fences an older leader, the log read to its end
before the first write), so two instances can never hand out the same id. Followers forward
writes to the leader's URL.

Failing: a write the broker refuses is aborted and only that request fails; the leader keeps
leading (losing the writer over one oversize record used to leave every later write at 50004).
A producer that cannot abort is replaced, but only while the coordinator still assigns this
instance the partition, so an old leader never fences the one that replaced it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource

from services.common.kafka import client_config, ensure_topic, make_admin, wait_for_broker
from services.schema_registry import errors
from services.schema_registry.errors import SchemaRegistryError
from services.schema_registry.leadership import ELECTION_WAIT_S, REBUILD_RETRY_S, WriterElection
from services.schema_registry.state import Record, RegistryState, decode, encode

log = logging.getLogger("fraudstream.schema_registry.kafka")

TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
RECORD_OVERHEAD_BYTES = 512
"""What a record batch adds around one record (header, transactional markers, with room)."""


class WriteFailed(SchemaRegistryError):
    """A transaction that did not commit; `recovered` says whether the producer aborted it and
    can take the next one (else it is fenced or broken and must be replaced)."""

    default_code = "write_failed"

    def __init__(self, detail: str, recovered: bool) -> None:
        super().__init__(detail)
        self.recovered = recovered


__all__ = [
    "ELECTION_WAIT_S",
    "REBUILD_RETRY_S",
    "RECORD_OVERHEAD_BYTES",
    "TOPIC_CONFIG",
    "KafkaLog",
    "NotLeader",
    "WriteFailed",
]


class NotLeader(SchemaRegistryError):
    """This instance is not the writer; the HTTP layer forwards the request to `leader_url`."""

    default_code = "not_leader"

    def __init__(self, leader_url: str | None) -> None:
        super().__init__(leader_url or "unknown leader")
        self.leader_url = leader_url


class KafkaLog(WriterElection):
    """Reads `_schemas` into `state`, and writes to it while this instance is the leader (the
    election itself: `leadership.WriterElection`)."""

    def __init__(
        self,
        state: RegistryState,
        lock: threading.RLock,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        advertised_url: str,
        write_timeout: float = 20.0,
    ) -> None:
        self.state = state
        self.lock = lock
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.advertised_url = advertised_url
        self.write_timeout = write_timeout
        self.position = 0
        self.caught_up = threading.Event()
        """Set once the reader has reached the end offset the topic had on start."""
        self.ready = threading.Event()
        """Set once caught up and the writer election has settled: requests are answered."""
        self.is_leader = False
        self.max_message_bytes: int | None = None
        """The storage topic's max.message.bytes, read on start (None if it could not be)."""
        self.failure: str | None = None
        self._owns_partition = False
        """Our election consumer holds the partition (set and cleared by its callbacks)."""
        self._rebuild = False
        """The producer was lost by a failed write: make a new one if the group still says we
        lead (a fenced writer must not fence the instance that replaced it)."""
        self._applied = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._producer: Producer | None = None
        self._threads: list[threading.Thread] = []
        self._leader_cache: tuple[float, str | None] = (0.0, None)
        self._admin: AdminClient | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, elect: bool = True) -> None:
        """Create the topic if needed, then read (and, with `elect`, join the writer election)
        in background threads."""
        wait_for_broker(self.bootstrap, timeout=30)
        ensure_topic(self.topic, 1, self.bootstrap, TOPIC_CONFIG)
        self._admin = make_admin(self.bootstrap)
        meta = self._admin.list_topics(self.topic, timeout=10).topics[self.topic]
        if len(meta.partitions) != 1:
            raise SchemaRegistryError(
                f"topic {self.topic} has {len(meta.partitions)} partitions; the registry's "
                "storage topic must have exactly one (record order is the registry's history)",
                code="storage_topic",
            )
        self.max_message_bytes = self._topic_max_message_bytes()
        loops = [(self._read_loop, "reader")] + ([(self._elect_loop, "election")] if elect else [])
        for target, name in loops:
            thread = threading.Thread(
                target=self._guard(target), name=f"registry-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _topic_max_message_bytes(self) -> int | None:
        """The largest record batch the storage topic takes (its own or the broker's setting)."""
        assert self._admin is not None
        resource = ConfigResource(ConfigResource.Type.TOPIC, self.topic)
        try:
            configs = self._admin.describe_configs([resource])[resource].result(timeout=10)
            return int(configs["max.message.bytes"].value)
        except Exception as exc:  # KafkaException, KeyError, ValueError: keep the default limit
            log.warning("cannot read max.message.bytes of %s: %s", self.topic, exc)
            return None

    def record_limit(self, default: int) -> int:
        """The largest `_schemas` record (key + value) the topic takes, at most `default`."""
        if self.max_message_bytes is None:
            return default
        return max(1, min(default, self.max_message_bytes - RECORD_OVERHEAD_BYTES))

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # the HTTP layer reports it as 50001
                log.exception("registry %s thread failed", threading.current_thread().name)
                self.failure = f"{type(exc).__name__}: {exc}"

        return run

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    # -- reading ------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        consumer = Consumer(
            {
                **client_config(self.bootstrap),
                "group.id": f"{self.group}-reader",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": False,
            }
        )
        try:
            tp = TopicPartition(self.topic, 0)
            end = self._end_offset(consumer, tp)
            consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
            if end <= 0:
                self.caught_up.set()
            while not self._stop.is_set():
                # poll() returns as soon as a record arrives (consume() would wait for a full
                # batch or the timeout); then drain what is already fetched.
                first = consumer.poll(0.2)
                if first is not None:
                    self._apply(first)
                    for msg in consumer.consume(500, timeout=0):
                        self._apply(msg)
                if not self.caught_up.is_set():
                    # Control records (transaction markers) take offsets too: ask where we are.
                    position = consumer.position([tp])[0].offset
                    if max(position, self.position) >= end:
                        self.caught_up.set()
        finally:
            consumer.close()

    def _end_offset(self, consumer: Consumer, tp: TopicPartition) -> int:
        """The topic's end offset now, retried while the broker is slow to answer."""
        while True:
            try:
                return int(consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1])
            except KafkaException as exc:
                if self._stop.is_set():
                    raise
                log.warning("cannot read the end offset of %s yet: %s", self.topic, exc)

    def _apply(self, msg: Message) -> None:
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("reading %s: %s", self.topic, error)
            return
        try:
            key, value = decode(msg.key()), decode(msg.value())
            with self.lock:
                self.state.apply(key, value)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            log.warning("skipping malformed record at offset %s: %s", msg.offset(), exc)
        with self._applied:
            self.position = (msg.offset() or 0) + 1
            self._applied.notify_all()

    def wait_applied(self, offset: int, timeout: float) -> None:
        """Block until the record at `offset` is folded into the state, or 50002."""
        deadline = time.monotonic() + timeout
        with self._applied:
            while self.position <= offset:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.timeout(f"record {offset} of {self.topic} not read back")
                self._applied.wait(left)

    # -- writing ------------------------------------------------------------------------------

    def write(self, records: list[Record]) -> None:
        """Append records in one transaction and wait until this instance has applied them.

        A write the broker refuses (a record too large, a timeout) is aborted and answered
        50001, and this instance stays the leader: the next write goes through. Only a producer
        that cannot abort (fenced by a newer leader, or broken) is dropped; the election thread
        replaces it if this instance still leads. The state is never touched here: it changes
        only when the reader applies committed records."""
        if self.failure:
            raise errors.store_error(self.failure)
        producer = self._producer
        if not self.is_leader or producer is None:
            raise NotLeader(self.leader_url())
        try:
            offset = self._produce_committed(producer, records)
        except WriteFailed as exc:
            if not exc.recovered:
                self._step_down()
                self._rebuild = True
            raise errors.store_error(f"write to {self.topic} failed: {exc}") from None
        if offset is not None:
            self.wait_applied(offset, self.write_timeout)

    def _produce_committed(self, producer: Producer, records: list[Record]) -> int | None:
        """Write `records` (or one NOOP) in a transaction; the offset of the last one, or
        WriteFailed after aborting it."""
        batch: list[tuple[Any, Any]] = [(encode(k), encode(v)) for k, v in records] or [
            (encode({"keytype": "NOOP", "magic": 0}), None)
        ]
        offsets: list[int] = []
        failures: list[KafkaError] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            # Only keep the error here: formatting it inside librdkafka's callback after a
            # fatal (fenced) error trips a pending exception.
            if err is not None:
                failures.append(err)
            else:
                offsets.append(msg.offset() or 0)

        try:
            producer.begin_transaction()
            for key, value in batch:
                producer.produce(
                    self.topic, key=key, value=value, partition=0, on_delivery=delivered
                )
            producer.flush(self.write_timeout)
            if failures:
                raise KafkaException(failures[0])
            producer.commit_transaction(self.write_timeout)
        except Exception as exc:
            recovered = self._abort(producer, exc)
            raise WriteFailed(_describe(exc), recovered) from None
        return max(offsets) if offsets else None

    def _abort(self, producer: Producer, exc: Exception) -> bool:
        """Abort the open transaction; True when the producer can take the next one."""
        error = _kafka_error(exc)
        if error is not None and error.fatal():
            return False  # fenced or broken: aborting would only wait out the timeout
        try:
            producer.abort_transaction(self.write_timeout)
        except Exception as abort_exc:
            log.warning("aborting a failed write to %s failed: %s", self.topic, abort_exc)
            return False
        return True


def _kafka_error(exc: Exception) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def _describe(exc: Exception) -> str:
    error = _kafka_error(exc)
    if error is None:
        return f"{type(exc).__name__}: {exc}"
    return f"{error.name()}: {error.str()}"
