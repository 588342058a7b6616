"""Helpers for the scorer and alerts tests (no tests here): transaction records in the KSQL Avro
layout, a small registered model, and read-committed topic readers."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from services.common.avro.schemas import ksql_record_schema
from services.common.kafka import make_consumer
from services.common.topics import SCORING_FIELDS, V_COLUMNS


@dataclass
class StubModel:
    """A model that scores everything 0: for tests of which version is in use, not of scoring."""

    version: str
    threshold: float = 1.0

    def score(self, features: np.ndarray) -> np.ndarray:
        return np.zeros(len(features), dtype=np.float32)


def input_schema() -> dict[str, Any]:
    """The scoring stream's value schema as ksqlDB writes it."""
    return ksql_record_schema(list(SCORING_FIELDS))


def make_records(n: int, seed: int = 0, start_id: int = 0) -> list[dict[str, Any]]:
    """Transactions: mostly normal rows, some far-out ones (which the model should flag)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1, size=(n, 28))
    outliers = rng.random(n) < 0.03
    v[outliers] *= 6
    amounts = np.round(rng.lognormal(3, 1, n), 2)
    times = rng.integers(0, 172_800, n)
    records = []
    for i in range(n):
        rec: dict[str, Any] = {
            "ID": start_id + i,
            "TIMESTAMP": f"2026-11-26 10:{(i // 60) % 60:02d}:{i % 60:02d}",
            "USER": f"user{(start_id + i) % 97}",
            "TIME": int(times[i]),
            "AMOUNT": float(amounts[i]),
            "CLASS": "1" if outliers[i] else "0",
        }
        for j, name in enumerate(V_COLUMNS):
            rec[name] = float(v[i, j])
        records.append(rec)
    return records


def feature_matrix(records: Sequence[dict[str, Any]]) -> np.ndarray:
    from services.common.avro.features import extract_features

    batch = extract_features(records)
    assert not batch.rejected
    return batch.features


def save_model(
    models_dir: Path,
    seed: int = 0,
    alert_fraction: float = 0.05,
    make_latest: bool = True,
    announce: bool = False,
    bootstrap: str | None = None,
) -> str:
    """A small (untrained) autoencoder registered as a real version; threshold set so that about
    `alert_fraction` of make_records() rows alert."""
    import keras

    from services.model_registry.preprocessing import Preprocessing
    from services.model_registry.registry import ModelRegistry

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((30,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(30)]
    )
    sample = feature_matrix(make_records(2000, seed=seed + 1000))
    pre = Preprocessing.fit(sample)
    errors = np.mean((pre.transform(sample) - model(pre.transform(sample)).numpy()) ** 2, axis=1)
    threshold = float(np.quantile(errors, 1 - alert_fraction))
    return ModelRegistry(models_dir).save_version(
        model,
        pre,
        {"threshold": threshold, "rule": "test quantile"},
        {"test": {}},
        make_latest=make_latest,
        announce=announce,
        bootstrap=bootstrap,
    )


def offline_alert_ids(
    models_dir: Path, version: str, records: Sequence[dict[str, Any]]
) -> set[int]:
    """What scoring the records offline with the same model and rule gives."""
    from services.model_registry.registry import ModelRegistry
    from services.scorer.records import alert_mask

    model = ModelRegistry(models_dir).load(version)
    scores = model.score(feature_matrix(records))
    mask = alert_mask(scores, model.threshold)
    return {int(r["ID"]) for r, hit in zip(records, mask, strict=True) if hit}


def produce_records(
    topic: str, records: Sequence[dict[str, Any]], sr_url: str, bootstrap: str, partitions: int = 1
) -> None:
    """Fill the input topic with confluent-kafka's AvroSerializer (what ksqlDB would write)."""
    from services.common.kafka import ensure_topic

    ensure_topic(topic, partitions=partitions, bootstrap=bootstrap)
    produce_raw(topic, serialize_records(topic, records, sr_url), bootstrap)


def serialize_records(
    topic: str, records: Sequence[dict[str, Any]], sr_url: str
) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) pairs as confluent-kafka's AvroSerializer writes them, keyed by ID."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    serializer = AvroSerializer(SchemaRegistryClient({"url": sr_url}), json.dumps(input_schema()))
    ctx = SerializationContext(topic, MessageField.VALUE)
    return [(str(rec["ID"]).encode(), serializer(rec, ctx)) for rec in records]


def produce_raw(
    topic: str, items: Sequence[tuple[bytes | None, bytes | None]], bootstrap: str
) -> None:
    from services.common.kafka import make_producer, produce_many

    producer = make_producer(bootstrap)
    produce_many(producer, topic, [value for _key, value in items], [key for key, _value in items])
    assert producer.flush(60) == 0


def read_all(topic: str, bootstrap: str, timeout: float = 60.0) -> list[Message]:
    """Every committed record of a topic now (read_committed, from the beginning, to EOF)."""
    import time

    consumer: Consumer = make_consumer(
        f"t-read-{random.random()}", bootstrap, **{"enable.partition.eof": True}
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        out: list[Message] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(meta.partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout}s"
            for msg in consumer.consume(1000, timeout=0.5):
                error = msg.error()
                if error is None:
                    out.append(msg)
                elif error.code() == KafkaError._PARTITION_EOF:
                    partition = msg.partition()
                    assert partition is not None  # a partition EOF event names its partition
                    done.add(partition)
        return out
    finally:
        consumer.close()


def is_nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


def wait_until(predicate: Callable[[], Any], timeout: float) -> None:
    """Poll `predicate` every 50 ms; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
