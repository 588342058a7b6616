"""Kafka client factories and small admin helpers shared by every service.

One place decides client defaults (idempotence, compression, read-committed), so the producer,
the trainer, the scorer and the KSQL runtime behave alike. It is also the one place that adds
the client's security settings (SASL user and password, from `Settings.kafka_security`), so a
broker with authentication needs no code change in the services.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    ClusterMetadata,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from services.common.errors import FraudstreamError, ServiceUnavailable, kafka_error_code
from services.common.settings import get_settings

Config = dict[str, Any]


_QUIET = logging.getLogger("fraudstream.kafka.probe")
_QUIET.setLevel(logging.CRITICAL)


class KafkaAuthenticationFailed(FraudstreamError):
    """The broker refused the client's credentials (wrong user, password or mechanism)."""

    default_code = "kafka_authentication"


def client_config(bootstrap: str | None = None) -> Config:
    """What every client needs: the bootstrap address and the security settings (SASL). A
    client built by hand starts from this, so no service forgets the credentials."""
    settings = get_settings()
    return {
        "bootstrap.servers": bootstrap or settings.bootstrap_servers,
        **settings.kafka_security.client_config(),
    }


def producer_config(bootstrap: str | None = None, **overrides: Any) -> Config:
    """An idempotent, batching, compressing producer (acks=all): no duplicates on retry."""
    conf: Config = {
        **client_config(bootstrap),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 512 * 1024,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
    }
    conf.update(overrides)
    return conf


def consumer_config(group: str, bootstrap: str | None = None, **overrides: Any) -> Config:
    """A manually committing, read-committed consumer that starts at the earliest offset."""
    conf: Config = {
        **client_config(bootstrap),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.min.bytes": 1,
        "enable.partition.eof": False,
        # librdkafka stops fetching a partition whose local queue is full and, by default,
        # looks again only after 1 s: a consumer that drains its queue quickly then idles for
        # up to a second (seen as 0.5 s stalls in the scorer every ~100k records).
        "fetch.queue.backoff.ms": 10,
    }
    conf.update(overrides)
    return conf


def make_producer(bootstrap: str | None = None, **overrides: Any) -> Producer:
    return Producer(producer_config(bootstrap, **overrides))


def make_consumer(group: str, bootstrap: str | None = None, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(group, bootstrap, **overrides))


def make_admin(bootstrap: str | None = None, quiet: bool = False, **overrides: Any) -> AdminClient:
    """An admin client; `quiet` silences librdkafka's connection errors (for health probes)."""
    conf = client_config(bootstrap)
    if quiet:
        conf.update(quiet_logging())
    conf.update(overrides)
    return AdminClient(conf)


def quiet_logging() -> Config:
    """Overrides that silence librdkafka's logs, for probes whose failures raise anyway. A
    consumer that reads offsets and closes at once needs them too: closed while its group
    coordinator connection is still in the SASL handshake, librdkafka logs a "SASL
    authentication error … Broker transport failure" that is no error at all."""
    return {"logger": _QUIET, "log_level": 0}  # log_level 0: nor notes on unserved events


class _AuthenticationErrors:
    """librdkafka's error callback: keeps the last authentication failure, which it otherwise
    only logs while it retries, so a wrong password would look like a broker that never answers."""

    def __init__(self) -> None:
        self.last: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        if error.code() == KafkaError._AUTHENTICATION:
            self.last = error


def _probe(bootstrap: str | None, timeout: float, overrides: Mapping[str, Any]) -> ClusterMetadata:
    """One metadata request (all topics), returned so a caller can check its topics without a
    client of its own; raises KafkaAuthenticationFailed as soon as the broker refuses the
    credentials, KafkaException when it does not answer within `timeout`."""
    errors = _AuthenticationErrors()
    admin = make_admin(bootstrap, quiet=True, error_cb=errors, **overrides)
    deadline = time.monotonic() + timeout
    while True:
        step = min(0.5, max(0.05, deadline - time.monotonic()))
        try:
            return admin.list_topics(timeout=step)
        except KafkaException:
            admin.poll(0)  # serves the error callback
            if errors.last is not None:
                raise _authentication_failed(bootstrap, overrides, errors.last) from None
            if time.monotonic() >= deadline:
                raise


def _authentication_failed(
    bootstrap: str | None, overrides: Mapping[str, Any], error: KafkaError
) -> KafkaAuthenticationFailed:
    where = bootstrap or get_settings().bootstrap_servers
    user = overrides.get("sasl.username") or get_settings().kafka_security.sasl_username
    detail = error.str().split(": ", 1)[-1]
    return KafkaAuthenticationFailed(
        f"Kafka broker at {where} refused the credentials of user {user!r} ({detail}); "
        "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
    )


def wait_for_broker(bootstrap: str | None = None, timeout: float = 30.0, **overrides: Any) -> None:
    """Block until the broker answers a metadata request, or raise ServiceUnavailable
    (KafkaAuthenticationFailed at once if it refuses the credentials)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            _probe(bootstrap, min(5.0, max(0.5, deadline - time.monotonic())), overrides)
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.5)
    where = bootstrap or get_settings().bootstrap_servers
    raise ServiceUnavailable(
        f"Kafka broker at {where} did not answer within {timeout:.0f}s ({last})"
    )


def broker_reachable(bootstrap: str | None = None, timeout: float = 3.0, **overrides: Any) -> bool:
    """Whether the broker answers; a broker that refuses our credentials raises
    KafkaAuthenticationFailed (it is reachable, and waiting would not help)."""
    try:
        _probe(bootstrap, timeout, overrides)
        return True
    except KafkaException:
        return False


def broker_topics(bootstrap: str | None = None, timeout: float = 3.0) -> set[str]:
    """The broker's topic names, from the reachability probe's own metadata request: a command
    that probes and then checks its topic (`produce`) passes them to `ensure_topic` instead of
    starting a second admin client (threads, connection, round trip) for the same answer.
    Raises ServiceUnavailable when the broker does not answer, KafkaAuthenticationFailed (from
    `_probe`) when it refuses the credentials."""
    try:
        return set(_probe(bootstrap, timeout, {}).topics)
    except KafkaException:
        where = bootstrap or get_settings().bootstrap_servers
        raise ServiceUnavailable(f"Kafka broker at {where} is not reachable") from None


def ensure_topic(
    name: str,
    partitions: int = 1,
    bootstrap: str | None = None,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    *,
    known: Collection[str] | None = None,
) -> bool:
    """Create the topic if it does not exist; returns True when this call created it. `known`:
    the topic names the caller has just listed (`broker_topics`), so an existing topic costs
    no client and no round trip, and a missing one is created without listing again (a topic
    made meanwhile by someone else is still answered False)."""
    if known is not None and name in known:
        return False
    admin = make_admin(bootstrap)
    if known is None and name in admin.list_topics(timeout=timeout).topics:
        return False
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))]
    )
    try:
        futures[name].result(timeout)
    except KafkaException as exc:
        if kafka_error_code(exc) != "kafka_topic_already_exists":
            raise
        return False
    _wait_for_leaders(admin, name, timeout)
    return True


def topic_max_message_bytes(
    name: str, bootstrap: str | None = None, timeout: float = 10.0
) -> int | None:
    """The topic's `max.message.bytes` (the largest record batch it accepts), None if unknown."""
    admin = make_admin(bootstrap)
    resource = ConfigResource(ResourceType.TOPIC, name)
    try:
        configs = admin.describe_configs([resource])[resource].result(timeout)
    except KafkaException:
        return None
    entry = configs.get("max.message.bytes")
    try:
        return int(entry.value) if entry is not None and entry.value else None
    except ValueError:
        return None


def _wait_for_leaders(admin: AdminClient, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = admin.list_topics(name, timeout=timeout).topics.get(name)
        if (
            meta
            and meta.error is None
            and meta.partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        ):
            return
        time.sleep(0.1)


def delete_topics(
    names: Iterable[str], bootstrap: str | None = None, timeout: float = 30.0
) -> None:
    names = list(names)
    if not names:
        return
    admin = make_admin(bootstrap)  # keep the handle alive until every future has resolved
    for fut in admin.delete_topics(names, operation_timeout=timeout).values():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if kafka_error_code(exc) != "kafka_unknown_topic_or_part":
                raise


def topic_partitions(consumer: Consumer, topic: str, timeout: float = 10.0) -> list[TopicPartition]:
    meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        raise ServiceUnavailable(f"topic {topic!r} does not exist")
    return [TopicPartition(topic, p) for p in sorted(meta.partitions)]


def end_offsets(consumer: Consumer, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """The high watermark of every partition now: what `--stop-at-end` reads up to."""
    ends: dict[int, int] = {}
    for tp in topic_partitions(consumer, topic, timeout):
        _low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
        ends[tp.partition] = high
    return ends


def watermarks(consumer: Consumer, topic: str, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """(low, high) of every partition of `topic` now, by partition; empty when the topic does
    not exist (the readers that show or sample a topic treat that as "nothing yet")."""
    meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        return {}
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
        for p in sorted(meta.partitions)
    }


def count_records(topic: str, bootstrap: str | None = None, timeout: float = 10.0) -> int:
    """Records currently on a topic (sum of high - low watermarks; exact for non-compacted,
    non-transactional topics)."""
    consumer = make_consumer("fraudstream-count", bootstrap, **quiet_logging())
    try:
        total = 0
        for tp in topic_partitions(consumer, topic, timeout):
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            total += high - low
        return total
    finally:
        consumer.close()


def consume_available(consumer: Consumer, size: int, idle_timeout: float) -> list[Message]:
    """Whatever the consumer has already fetched (up to `size`) without waiting; when nothing
    is, wait at most `idle_timeout` for the first record, then take what else is fetched.

    The latency-first rule of every consume-transform-produce loop here (docs/latency.md):
    `consume(n, timeout)` alone waits for n records *or* the whole timeout, which adds the
    timeout to every record's latency at low rates; this returns as soon as one record is
    there. An empty list from a call with `idle_timeout=0` means the consumer has nothing more
    right now: a loop that is caught up closes its batch and commits."""
    messages = consumer.consume(size, 0)
    if messages or idle_timeout <= 0:
        return messages
    messages = consumer.consume(1, idle_timeout)
    if messages and size > 1:
        messages += consumer.consume(size - 1, 0)
    return messages


def first_offsets(messages: Sequence[Message], partitions: int) -> dict[int, int]:
    """The offset of the first record of each partition in a consumed batch (error events
    skipped). A consumer returns each partition's records in order, so scanning stops as soon
    as `partitions` (how many are assigned) have been seen: a handful of records when the batch
    holds every assigned partition, the whole batch when it does not (the two scans then cost
    ~0.09 µs a record in the scorer)."""
    return _edge_offsets(messages, partitions)


def next_offsets(messages: Sequence[Message], partitions: int) -> dict[int, int]:
    """The offset after the last record of each partition in a consumed batch: what to commit.
    Scans from the end, stopping like `first_offsets`."""
    return {p: o + 1 for p, o in _edge_offsets(reversed(messages), partitions).items()}


def _edge_offsets(messages: Iterable[Message], partitions: int) -> dict[int, int]:
    found: dict[int, int] = {}
    for m in messages:
        partition = m.partition()
        if m.error() is None and partition is not None and partition not in found:
            found[partition] = m.offset() or 0
            if len(found) == partitions:
                break
    return found


BACKPRESSURE_LIMIT_S = 60.0
"""How long a producer's full local queue may keep a record out before `produce` gives up."""


class ProducerStuck(FraudstreamError):
    """The producer's local queue stayed full: the broker has not taken records for a while."""

    default_code = "producer_stuck"


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    *,
    headers: Any = None,
    timestamp: int = 0,
    limit_s: float = BACKPRESSURE_LIMIT_S,
) -> None:
    """Produce one record, waiting out a full local queue (BufferError: poll, so delivery
    reports are served and the queue drains, then retry) for at most `limit_s`."""
    try:
        producer.produce(topic, value, key, headers=headers, timestamp=timestamp)
        return
    except BufferError:
        pass
    deadline = time.monotonic() + limit_s
    while True:
        _wait_for_room(producer, topic, deadline, limit_s)
        try:
            producer.produce(topic, value, key, headers=headers, timestamp=timestamp)
            return
        except BufferError:
            continue


def produce_many(
    producer: Producer,
    topic: str,
    values: Sequence[bytes | None],
    keys: Sequence[bytes | None] | None = None,
    *,
    timestamps: Sequence[int] | None = None,
    limit_s: float = BACKPRESSURE_LIMIT_S,
    on_refused: Callable[[int, KafkaException], None] | None = None,
) -> int:
    """Produce records in order (`keys`, `timestamps` parallel to `values`), resuming at the
    record a full queue refused; the queue may stay full for at most `limit_s` at a stretch.
    A record librdkafka refuses for another reason (too large, say) raises, unless
    `on_refused(index, error)` is given: then it is reported there and skipped. Returns how
    many were queued."""
    count = len(values)
    key_list = keys if keys is not None else [None] * count
    done, stalled_at, deadline, refused = 0, -1, 0.0, 0
    send = producer.produce
    while done < count:
        try:
            if timestamps is None:
                for value, key in zip(values[done:], key_list[done:], strict=True):
                    send(topic, value, key)
                    done += 1
            else:
                # positional (partition -1: the partitioner's choice; no callbacks): keyword
                # parsing cost ~0.4 µs a record, a quarter of the call
                for value, key, ts in zip(
                    values[done:], key_list[done:], timestamps[done:], strict=True
                ):
                    send(topic, value, key, -1, None, None, ts)
                    done += 1
        except BufferError:
            if done > stalled_at:  # records went through since the last stall
                stalled_at, deadline = done, time.monotonic() + limit_s
            _wait_for_room(producer, topic, deadline, limit_s)
        except KafkaException as exc:
            if on_refused is None:
                raise
            on_refused(done, exc)
            done, refused = done + 1, refused + 1
    return count - refused


def _wait_for_room(producer: Producer, topic: str, deadline: float, limit_s: float) -> None:
    if time.monotonic() >= deadline:
        raise ProducerStuck(
            f"the producer's queue for {topic!r} stayed full for {limit_s:.0f} s: "
            "is the broker reachable?"
        )
    producer.poll(0.05)
