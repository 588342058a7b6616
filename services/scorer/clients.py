"""The scorer's clients: a read-committed consumer in the scorer's group (static member), a
producer, transactional under exactly-once, its output topics and the alert schema. Built here
so the loop in scorer.py only uses them; the transactional id is stable per (group, input
topic, instance), so a restarted scorer's `init_transactions()` aborts whatever its killed
predecessor left open."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from services.common.avro.codec import AvroEncoder
from services.common.checkpoint import TRANSACTION_TIMEOUT_MS, transactional_producer
from services.common.errors import FraudstreamError
from services.common.kafka import consumer_config, ensure_topic, producer_config
from services.scorer.config import ScorerConfig
from services.scorer.records import alert_schema

Rebalance = Callable[[Consumer, list[TopicPartition]], None]

PREFETCH_KBYTES = 16 * 1024
"""A few batches of prefetch, not librdkafka's 64 MB: the scorer's memory budget (< 1 GB) is
mostly TensorFlow's already."""


def scorer_consumer(cfg: ScorerConfig, bootstrap: str) -> Consumer:
    """The consumer, not subscribed yet (see `subscribe`)."""
    return Consumer(
        consumer_config(
            cfg.group,
            bootstrap,
            **{
                "auto.offset.reset": "earliest" if cfg.from_beginning else "latest",
                "enable.partition.eof": True,
                # Static membership: a restarted scorer (same instance id) takes its
                # partitions back at once instead of waiting out the session timeout.
                "group.instance.id": cfg.transactional_id,
                "queued.max.messages.kbytes": PREFETCH_KBYTES,
            },
        )
    )


def scorer_producer(cfg: ScorerConfig, bootstrap: str) -> Producer:
    """Transactional (and initialised) under exactly-once, idempotent otherwise."""
    config = producer_config(bootstrap, **{"linger.ms": 5})
    if not cfg.exactly_once:
        return Producer(config)
    return transactional_producer(
        config, cfg.transactional_id, TRANSACTION_TIMEOUT_MS, init_timeout_s=60
    )


def subscribe(
    cfg: ScorerConfig, consumer: Consumer, on_assign: Rebalance, on_revoke: Rebalance
) -> None:
    """Join the group; a lost assignment is handled as a revocation."""
    consumer.subscribe([cfg.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)


def setup_topics(cfg: ScorerConfig, bootstrap: str) -> None:
    """The alerts and dead-letter topics exist before the first transaction writes to them."""
    for topic in (cfg.alerts_topic, cfg.dlq_topic):
        ensure_topic(topic, bootstrap=bootstrap)


def alert_encoder(cfg: ScorerConfig, registry: Any) -> AvroEncoder:
    """The alert schema, registered under `<alerts topic>-value`."""
    subject = f"{cfg.alerts_topic}-value"
    try:
        return AvroEncoder(registry, subject, alert_schema())
    except Exception as exc:
        raise FraudstreamError(f"cannot register the alert schema under {subject}: {exc}") from exc


__all__ = ["alert_encoder", "scorer_consumer", "scorer_producer", "setup_topics", "subscribe"]
