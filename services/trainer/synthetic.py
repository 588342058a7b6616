"""Fill a topic with generated, labelled transactions in the layout KSQL writes.

Tests, the trainer benchmark and demos use this where the KSQL server is not part of the picture:
records are serialised by confluent-kafka's own `AvroSerializer` (Confluent wire format, schema
registered under `<topic>-value`) with ksqlDB's record name and nullable upper-case fields, exactly
as `creditcardfraud_preprocessed_avro` carries them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from services.common.avro.schemas import ksql_record_schema
from services.common.kafka import produce
from services.common.topics import V_COLUMNS

PREPROCESSED_FIELDS: list[tuple[str, str]] = [
    ("TIME", "int"),
    *[(v.upper(), "double") for v in V_COLUMNS],
    ("AMOUNT", "double"),
    ("CLASS", "string"),
]
"""The columns of the demo's `CREATE STREAM creditcardfraud_preprocessed_avro AS SELECT Time,
V1..V28, Amount, Class` (Time int, Class string), as KSQL names them in Avro."""


def preprocessed_schema() -> dict[str, Any]:
    return ksql_record_schema(PREPROCESSED_FIELDS)


def generated_arrays(
    rows: int, seed: int = 0, fraud_ratio: float | None = None, family: str = "latent"
) -> tuple[np.ndarray, np.ndarray]:
    """(features float64 [rows, 30] TIME, V1..V28, AMOUNT; labels int8) from a datagen family."""
    from services.common.synthetic_families import chunks_for
    from services.common.synthetic_transactions import CHUNK_ROWS, FRAUD_RATIO

    ratio = FRAUD_RATIO if fraud_ratio is None else fraud_ratio
    feats, labels = [], []
    for times, v, amount, label in chunks_for(family)(rows, seed, ratio, CHUNK_ROWS):
        feats.append(np.column_stack([times, v, amount]))
        labels.append(label)
    if not feats:
        return np.empty((0, 30)), np.empty(0, dtype=np.int8)
    return np.concatenate(feats), np.concatenate(labels)


def fill_topic(
    topic: str,
    rows: int,
    seed: int = 0,
    bootstrap: str | None = None,
    schema_registry_url: str | None = None,
    partitions: int = 1,
    extra: list[dict[str, Any] | None] | None = None,
    fraud_ratio: float | None = None,
    first_key: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Produce `rows` generated records (then the `extra` ones, as given) and return the arrays.

    `extra` lets a test add records with missing fields (None values) to check that they are
    counted and skipped.
    """
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from services.common.avro.schemas import registry_client
    from services.common.kafka import ensure_topic, make_producer

    features, labels = generated_arrays(rows, seed, fraud_ratio)
    ensure_topic(topic, partitions=partitions, bootstrap=bootstrap)
    serializer = AvroSerializer(
        registry_client(schema_registry_url),
        json.dumps(preprocessed_schema()),
        conf={"auto.register.schemas": True},
    )
    ctx = SerializationContext(topic, MessageField.VALUE)
    producer = make_producer(bootstrap)
    names = [name for name, _typ in PREPROCESSED_FIELDS]
    times = features[:, 0].astype(np.int64).tolist()
    rest = features[:, 1:].tolist()
    classes = labels.astype(str).tolist()
    for i in range(rows):
        record = dict(zip(names[1:-1], rest[i], strict=True))
        record["TIME"] = times[i]
        record["CLASS"] = classes[i]
        produce(producer, topic, serializer(record, ctx), str(first_key + i).encode())
    for j, odd in enumerate(extra or []):
        value = serializer(odd, ctx) if odd is not None else None
        produce(producer, topic, value, f"extra-{j}".encode())
    if producer.flush(60) > 0:
        raise RuntimeError(f"could not deliver every record to {topic}")
    return features, labels
