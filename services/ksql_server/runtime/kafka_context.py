"""Kafka clients shared by every query of one engine (admin, producer, registry)."""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from services.common.errors import code_of
from services.common.kafka import consumer_config, make_admin, producer_config
from services.ksql_server.errors import KsqlError


class KafkaContext:
    """Creates topics and clients; the engine's one idempotent producer is shared by the
    at-least-once queries and INSERT VALUES (exactly-once queries get their own)."""

    def __init__(
        self, bootstrap: str, registry_url: str | None, topic_prefix: str = "", fast: bool = False
    ) -> None:
        self.bootstrap = bootstrap
        self.registry_url = registry_url
        self.topic_prefix = topic_prefix
        self.fast = fast
        self.admin = make_admin(bootstrap)
        self._producer: Producer | None = None
        self._registry: Any = None
        self._lock = threading.Lock()
        self.topic_defaults: dict[str, str] = {}
        """Configs every topic this context creates starts from (a statement's own win). The
        conformance runner keeps records forever here: its cases date them near 1970, and the
        broker's periodic retention check would delete a sink's records before they are read."""

    def physical(self, topic: str) -> str:
        """The real Kafka topic of a logical topic name (a prefix isolates conformance cases)."""
        return self.topic_prefix + topic

    def producer_conf(self, **overrides: Any) -> dict[str, Any]:
        conf = producer_config(self.bootstrap, **{"linger.ms": 5, "partitioner": "murmur2_random"})
        conf.update(overrides)
        return conf

    @property
    def producer(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self.producer_conf())
            return self._producer

    def consumer_conf(self, group: str, **overrides: Any) -> dict[str, Any]:
        conf = consumer_config(
            group,
            self.bootstrap,
            **{
                "fetch.wait.max.ms": 10 if self.fast else 50,
                "max.partition.fetch.bytes": 8 * 1024 * 1024,
                "enable.partition.eof": False,
            },
        )
        conf.update(overrides)
        return conf

    @property
    def registry(self) -> Any:
        if self._registry is None:
            if not self.registry_url:
                raise KsqlError("Schema Registry URL is not configured (ksql.schema.registry.url)")
            from confluent_kafka.schema_registry import SchemaRegistryClient

            from services.common.http.clients import registry_client_conf

            self._registry = SchemaRegistryClient(registry_client_conf(self.registry_url))
        return self._registry

    def registry_or_none(self) -> Any:
        try:
            return self.registry
        except KsqlError:
            return None

    # ------------------------------------------------------------------ topics
    def topic_partitions(self, topic: str) -> int | None:
        """Partition count of a physical topic, or None when it does not exist."""
        # list every topic: asking for one by name would auto-create it on brokers that
        # allow auto-creation
        meta = self.admin.list_topics(timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return None
        return len(meta.partitions)

    def list_topics(self) -> dict[str, int]:
        meta = self.admin.list_topics(timeout=10)
        return {n: len(t.partitions) for n, t in meta.topics.items() if t.error is None}

    def ensure_topic(
        self, topic: str, partitions: int, replicas: int = 1, config: dict[str, str] | None = None
    ) -> bool:
        if self.topic_partitions(topic) is not None:
            return False
        fut = self.admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=partitions,
                    replication_factor=replicas,
                    config={**self.topic_defaults, **(config or {})},
                )
            ],
            operation_timeout=10,
        )[topic]
        try:
            fut.result(15)
        except Exception as exc:
            if code_of(exc) != "kafka_topic_already_exists":
                raise KsqlError(f"Could not create topic {topic}: {exc}") from exc
            return False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            meta = self.admin.list_topics(timeout=5).topics.get(topic)
            if meta and meta.error is None and all(p.leader >= 0 for p in meta.partitions.values()):
                break
            time.sleep(0.05)
        return True

    def delete_topic(self, topic: str) -> None:
        try:
            self.admin.delete_topics([topic], operation_timeout=10)[topic].result(15)
        except Exception as exc:
            if code_of(exc) not in ("kafka_unknown_topic_or_part", "kafka_unknown_topic_id"):
                raise KsqlError(f"Could not delete topic {topic}: {exc}") from exc

    _health: tuple[float, bool] = (0.0, False)

    def healthy(self) -> bool:
        """The broker answers (checked at most every 2 s)."""
        checked_at, ok = self._health
        if time.monotonic() - checked_at > 2.0:
            try:
                self.admin.list_topics(timeout=2)
                ok = True
            except Exception:
                ok = False
            self._health = (time.monotonic(), ok)
        return ok

    def cluster_id(self) -> str | None:
        """The Kafka cluster's id, None when the broker does not answer."""
        try:
            return str(self.admin.list_topics(timeout=5).cluster_id)
        except Exception:
            return None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
