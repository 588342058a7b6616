"""The labelled Avro stream → preallocated float32 feature and label arrays.

Reading is bounded before it starts: the end offsets are captured first (and `--max-records`
caps the count), so the result is a fixed data set even while producers keep writing. Partitions
are *assigned*, not subscribed, so no group rebalance or `max.poll.interval.ms` eviction can hit
the trainer however long the fit takes afterwards; the group id only stores offsets (committed
after a version is registered, see `commit`). Values are decoded a batch at a time by
`FeatureDecoder` (with the label column) straight into the arrays; rows that cannot be used are
counted by reason.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from services.common.avro.decoder import DecodedBatch, FeatureDecoder
from services.common.avro.features import N_FEATURES
from services.common.avro.schemas import registry_client
from services.common.errors import ServiceUnavailable
from services.common.kafka import make_consumer, topic_partitions
from services.common.settings import get_settings
from services.common.waiting import poll_until
from services.trainer.errors import TrainerError

BATCH = 10_000
MISSING_ID = np.iinfo(np.int64).min
IDLE_TIMEOUT_S = 30.0
"""Give up waiting for offsets below the captured end after this long without any record."""


@dataclass
class Dataset:
    """Rows in (partition, offset) order with where they came from and what was skipped."""

    features: np.ndarray
    labels: np.ndarray
    partitions: np.ndarray
    offsets: np.ndarray
    topic: str
    consumed: int
    rejected: Counter[str] = field(default_factory=Counter)
    next_offsets: dict[int, int] = field(default_factory=dict)
    """Per partition, the offset after the last record read (what `commit` stores)."""
    start_offsets: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    fast_rows: int = 0
    ids: np.ndarray | None = None
    """int64 transaction ID per row (MISSING_ID where the record had none; None: not read,
    e.g. arrays from a CSV): how analysts' feedback is joined to the rows."""

    def __len__(self) -> int:
        return len(self.features)

    def summary(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "consumed": self.consumed,
            "rows": len(self),
            "rejected": dict(self.rejected),
            "start_offsets": {str(p): o for p, o in sorted(self.start_offsets.items())},
            "end_offsets": {str(p): o for p, o in sorted(self.next_offsets.items())},
            "ingest_seconds": round(self.seconds, 3),
            "records_per_second": round(self.consumed / self.seconds, 1) if self.seconds else None,
        }

    @classmethod
    def from_arrays(cls, features: np.ndarray, labels: np.ndarray, topic: str = "") -> Dataset:
        """Wrap arrays made elsewhere (notebook, tests) so they train like ingested data."""
        n = len(features)
        return cls(
            features=np.asarray(features, dtype=np.float32),
            labels=np.asarray(labels, dtype=np.int8),
            partitions=np.zeros(n, dtype=np.int32),
            offsets=np.arange(n, dtype=np.int64),
            topic=topic,
            consumed=n,
        )


def _start_positions(
    consumer: Consumer, tps: list[TopicPartition], from_beginning: bool, timeout: float
) -> dict[int, int]:
    lows = {
        tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)[0]
        for tp in tps
    }
    if from_beginning:
        return lows
    committed = consumer.committed(tps, timeout=timeout)
    return {
        tp.partition: tp.offset
        if tp.offset not in (OFFSET_INVALID,) and tp.offset >= 0
        else lows[tp.partition]
        for tp in committed
    }


def _reachable_registry(url: str | None) -> SchemaRegistryClient:
    """A registry client, or ServiceUnavailable now rather than a rejection per record."""
    client = registry_client(url)
    try:
        client.get_subjects()
    except Exception as exc:
        where = url or get_settings().schema_registry_url
        raise ServiceUnavailable(f"Schema Registry at {where} is not reachable ({exc})") from exc
    return client


def ingest(
    topic: str,
    group: str,
    max_records: int | None = None,
    from_beginning: bool = False,
    bootstrap: str | None = None,
    schema_registry_url: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    timeout: float = 10.0,
    idle_timeout: float = IDLE_TIMEOUT_S,
) -> Dataset:
    """Read `topic` from the group's offsets (or the beginning) up to the end captured now."""
    started = time.perf_counter()
    consumer = make_consumer(group, bootstrap, **{"fetch.max.bytes": 64 * 1024 * 1024})
    try:
        try:
            tps = topic_partitions(consumer, topic, timeout)
        except ServiceUnavailable:
            raise
        except Exception as exc:
            raise ServiceUnavailable(f"cannot read topic {topic!r}: {exc}") from exc
        ends = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)[1]
            for tp in tps
        }
        starts = _start_positions(consumer, tps, from_beginning, timeout)
        available = sum(max(0, ends[p] - starts[p]) for p in ends)
        capacity = available if max_records is None else min(available, max_records)
        registry = _reachable_registry(schema_registry_url)
        decoder = FeatureDecoder(registry, label_field="CLASS")
        ds = _read(consumer, topic, starts, ends, capacity, decoder, on_progress, idle_timeout)
    finally:
        consumer.close()
    ds.seconds = time.perf_counter() - started
    return ds


def _read(
    consumer: Consumer,
    topic: str,
    starts: dict[int, int],
    ends: dict[int, int],
    capacity: int,
    decoder: FeatureDecoder,
    on_progress: Callable[[int, int], None] | None,
    idle_timeout: float,
) -> Dataset:
    features = np.empty((capacity, N_FEATURES), dtype=np.float32)
    labels = np.empty(capacity, dtype=np.int8)
    partitions = np.empty(capacity, dtype=np.int32)
    offsets = np.empty(capacity, dtype=np.int64)
    ids = np.empty(capacity, dtype=np.int64)
    rejected: Counter[str] = Counter()
    next_offsets = dict(starts)
    pending = {p for p in ends if starts[p] < ends[p]}
    consumed = rows = fast = 0
    if pending and capacity > 0:
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(pending)])
    last_progress = time.monotonic()
    while pending and consumed < capacity:
        messages = consumer.consume(min(BATCH, capacity - consumed), timeout=1.0)
        values: list[bytes | None] = []
        keys: list[bytes | None] = []
        parts: list[int] = []
        offs: list[int] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ServiceUnavailable(f"consuming {topic}: {err}")
            p, o = int(msg.partition() or 0), int(msg.offset() or 0)
            if p not in pending or o >= ends[p]:
                continue  # written after the run started: not part of this data set
            values.append(msg.value())
            keys.append(msg.key())
            parts.append(p)
            offs.append(o)
            next_offsets[p] = o + 1
        if values:
            last_progress = time.monotonic()
            # consume() was asked for at most capacity - consumed records: all of them fit
            batch = decoder.decode(values)
            n = len(batch.kept)
            features[rows : rows + n] = batch.features
            labels[rows : rows + n] = batch.labels
            partitions[rows : rows + n] = np.asarray(parts, dtype=np.int32)[batch.kept]
            offsets[rows : rows + n] = np.asarray(offs, dtype=np.int64)[batch.kept]
            ids[rows : rows + n] = batch_ids(batch, keys)
            rejected.update(str(why) for _i, why in batch.rejected)
            rows += n
            consumed += len(values)
            fast += batch.fast_rows
            if on_progress is not None:
                on_progress(consumed, capacity)
        pending = _still_pending(consumer, topic, pending, ends, next_offsets)
        if pending and time.monotonic() - last_progress > idle_timeout:
            raise TrainerError(
                f"no records from {topic} for {idle_timeout:.0f}s while offsets below the end "
                f"remain on partitions {sorted(pending)}",
                code="ingest_stalled",
            )
    order = np.lexsort((offsets[:rows], partitions[:rows]))
    return Dataset(
        features=features[:rows][order],
        labels=labels[:rows][order],
        partitions=partitions[:rows][order],
        offsets=offsets[:rows][order],
        topic=topic,
        consumed=consumed,
        rejected=rejected,
        next_offsets=next_offsets,
        start_offsets=dict(starts),
        fast_rows=fast,
        ids=ids[:rows][order],
    )


def batch_ids(batch: DecodedBatch, keys: list[bytes | None]) -> np.ndarray:
    """The transaction ID of each usable row of a decoded batch (int64, MISSING_ID where
    unknown): the ID field, column-wise for the rows a compiled path read, per record for the
    few fastavro read; else the record key when it is the ID as text (the demo's layout has no
    ID column, and the source topic is keyed by Id)."""
    inputs = batch.kept
    ids = np.full(len(inputs), MISSING_ID, dtype=np.int64)
    done = np.zeros(len(inputs), dtype=np.bool_)
    for columns, rows, which in batch.columnar_rows(inputs):
        done[which] = True
        column = columns.column("ID")
        if column is None or column.type not in ("int", "long") or column.values is None:
            continue
        present = column.present[rows]
        ids[which[present]] = column.values[rows][present]
    for w in np.flatnonzero(~done).tolist():
        ident = batch.record(int(inputs[w]), ("ID",)).get("ID")
        if isinstance(ident, int) and not isinstance(ident, bool) and MISSING_ID < ident < 2**63:
            ids[w] = ident
    for w in np.flatnonzero(ids == MISSING_ID).tolist():
        key = keys[int(inputs[w])]
        if key is not None and 0 < len(key) <= 20 and key.isdigit():
            ids[w] = min(int(key), 2**63 - 1)
    return ids


def _still_pending(
    consumer: Consumer,
    topic: str,
    pending: set[int],
    ends: dict[int, int],
    next_offsets: dict[int, int],
) -> set[int]:
    """Partitions not yet read to their end; the consumer's position also counts, since
    transaction markers occupy offsets that are never delivered as records."""
    done = {p for p in pending if next_offsets[p] >= ends[p]}
    rest = pending - done
    if rest:
        for tp in consumer.position([TopicPartition(topic, p) for p in rest]):
            if tp.offset >= ends[tp.partition]:
                done.add(tp.partition)
                next_offsets[tp.partition] = max(next_offsets[tp.partition], tp.offset)
    return pending - done


def commit(dataset: Dataset, group: str, bootstrap: str | None = None) -> None:
    """Store the group's offsets after the data set (call once its version is registered)."""
    if not dataset.next_offsets:
        return
    consumer = make_consumer(group, bootstrap)
    try:
        consumer.commit(
            offsets=[
                TopicPartition(dataset.topic, p, o) for p, o in sorted(dataset.next_offsets.items())
            ],
            asynchronous=False,
        )
    finally:
        consumer.close()


def available_records(
    topic: str,
    group: str,
    from_beginning: bool = False,
    bootstrap: str | None = None,
    timeout: float = 10.0,
) -> int:
    """Offsets `ingest` would read now: from the group's offsets (or the beginning) to the end;
    0 while the topic does not exist. On a transactional topic (KSQL exactly-once) the commit
    markers count too, a few per thousand records."""
    consumer = make_consumer(group, bootstrap)
    try:
        try:
            tps = topic_partitions(consumer, topic, timeout)
        except ServiceUnavailable:
            return 0
        ends = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)[1]
            for tp in tps
        }
        starts = _start_positions(consumer, tps, from_beginning, timeout)
        return sum(max(0, ends[p] - starts[p]) for p in ends)
    finally:
        consumer.close()


def wait_for_records(
    topic: str,
    group: str,
    rows: int,
    timeout: float,
    say: Callable[[str], None],
    from_beginning: bool = False,
    bootstrap: str | None = None,
) -> int:
    """Block until `available_records` reaches `rows` (KSQL converts the labelled stream while
    the trainer waits); FraudstreamError after `timeout` seconds, naming how far it got."""
    return poll_until(
        lambda: available_records(topic, group, from_beginning, bootstrap),
        rows,
        timeout,
        lambda n: f"waiting for {topic}: {n}/{rows} records",
        lambda n: (
            f"{topic}: only {n} of {rows} records within {timeout:.0f}s (is the KSQL server "
            'running its persistent queries? see `fraudstream ksql query "SHOW QUERIES;"`)'
        ),
        say,
    )
