"""Analysts' verdicts on alerts: the `fraud_feedback` topic, its record, one writer, one reader.

The console writes a verdict when an analyst marks an alert "confirmed fraud" or "false
positive"; the trainer reads them back as labels. Both sides meet here so the record cannot
drift between them. The value is Avro in the Confluent wire format with ksqlDB-style nullable
upper-case fields (so `CREATE STREAM fraud_feedback WITH (VALUE_FORMAT='AVRO', ...)` reads it
as is); the key is the transaction ID as text, like an alert's, so every verdict on one
transaction lands in one partition and the last one written is the one that counts.

Everything here arrives from a web form: the verdict is one of two words, the analyst and the
note are bounded, and a bad value is a `FeedbackRejected` (a client mistake, HTTP 400 in the
console) raised before anything is produced.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Producer, TopicPartition

from services.common.avro.codec import AvroDecoder, AvroEncoder
from services.common.avro.schemas import ksql_record_schema, registry_client
from services.common.avro.wire import WireFormatError
from services.common.errors import FraudstreamError, ServiceUnavailable
from services.common.kafka import ensure_topic, make_consumer, make_producer, watermarks
from services.common.topics import FEEDBACK_TOPIC

CONFIRMED_FRAUD = "CONFIRMED_FRAUD"
FALSE_POSITIVE = "FALSE_POSITIVE"
VERDICTS: tuple[str, ...] = (CONFIRMED_FRAUD, FALSE_POSITIVE)
LABELS: dict[str, int] = {CONFIRMED_FRAUD: 1, FALSE_POSITIVE: 0}
"""A verdict as a training label (the trainer's CLASS convention: 1 = fraud)."""
MAX_ANALYST_CHARS = 128
MAX_NOTE_CHARS = 2000
MAX_VERSION_CHARS = 64

FEEDBACK_FIELDS: tuple[tuple[str, str], ...] = (
    ("ID", "long"),
    ("VERDICT", "string"),
    ("ANALYST", "string"),
    ("NOTE", "string"),
    ("DECIDED_AT", "long"),
    ("MODEL_VERSION", "string"),
    ("SCORE", "double"),
)
"""ID is the alert's (and the transaction's) ID; DECIDED_AT is epoch milliseconds (UTC);
MODEL_VERSION and SCORE say what the analyst was shown (null when unknown)."""


class FeedbackRejected(FraudstreamError, ValueError):
    """A verdict that cannot be written as given (a client mistake: HTTP 400)."""

    default_code = "bad_feedback"


def feedback_schema() -> dict[str, Any]:
    """The Avro value schema of `fraud_feedback`, registered under `<topic>-value`."""
    return ksql_record_schema(list(FEEDBACK_FIELDS))


@dataclass(frozen=True)
class Feedback:
    """One verdict on one transaction."""

    id: int
    verdict: str
    analyst: str
    note: str | None = None
    decided_at: int = 0
    model_version: str | None = None
    score: float | None = None

    @property
    def label(self) -> int:
        """1 for confirmed fraud, 0 for a false positive."""
        return LABELS[self.verdict]

    def to_record(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "VERDICT": self.verdict,
            "ANALYST": self.analyst,
            "NOTE": self.note,
            "DECIDED_AT": self.decided_at,
            "MODEL_VERSION": self.model_version,
            "SCORE": self.score,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Feedback:
        """A verdict read back from the topic; FeedbackRejected when it breaks the rules."""
        return make_feedback(
            record.get("ID"),
            record.get("VERDICT"),
            record.get("ANALYST"),
            record.get("NOTE"),
            decided_at=record.get("DECIDED_AT"),
            model_version=record.get("MODEL_VERSION"),
            score=record.get("SCORE"),
        )


def make_feedback(
    transaction_id: Any,
    verdict: Any,
    analyst: Any,
    note: Any = None,
    *,
    decided_at: Any = None,
    model_version: Any = None,
    score: Any = None,
) -> Feedback:
    """A checked verdict (FeedbackRejected otherwise); `decided_at` defaults to now."""
    if isinstance(transaction_id, bool) or not isinstance(transaction_id, int):
        raise FeedbackRejected("ID must be an integer transaction id")
    if not -(2**63) <= transaction_id < 2**63:
        raise FeedbackRejected("ID is out of the long range")
    if verdict not in VERDICTS:
        raise FeedbackRejected(f"VERDICT must be one of {', '.join(VERDICTS)}")
    analyst = _text(analyst, "ANALYST", MAX_ANALYST_CHARS)
    if analyst is None or not analyst.strip():
        raise FeedbackRejected("ANALYST must name who decided")
    if decided_at is None:
        decided_at = int(time.time() * 1000)
    if isinstance(decided_at, bool) or not isinstance(decided_at, int) or decided_at < 0:
        raise FeedbackRejected("DECIDED_AT must be epoch milliseconds")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise FeedbackRejected("SCORE must be a number")
        score = float(score)
        if not math.isfinite(score):
            raise FeedbackRejected("SCORE must be finite")
    return Feedback(
        id=transaction_id,
        verdict=str(verdict),
        analyst=analyst,
        note=_text(note, "NOTE", MAX_NOTE_CHARS),
        decided_at=decided_at,
        model_version=_text(model_version, "MODEL_VERSION", MAX_VERSION_CHARS),
        score=score,
    )


def _text(value: Any, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise FeedbackRejected(f"{name} must be text")
    if len(value) > limit:
        raise FeedbackRejected(f"{name} is longer than {limit} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise FeedbackRejected(f"{name} holds control characters")
    return value


def feedback_key(transaction_id: int) -> bytes:
    """The record key: the ID as text (the alert's key format)."""
    return str(transaction_id).encode()


class FeedbackWriter:
    """Writes verdicts, one delivered record per call (a long-lived writer for the console:
    the schema is registered and the producer made once)."""

    def __init__(
        self,
        topic: str = FEEDBACK_TOPIC,
        bootstrap: str | None = None,
        schema_registry_url: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.topic = topic
        self.timeout = timeout
        ensure_topic(topic, bootstrap=bootstrap, timeout=timeout)
        self._encoder = AvroEncoder(
            registry_client(schema_registry_url), f"{topic}-value", feedback_schema()
        )
        self._producer: Producer = make_producer(bootstrap, **{"linger.ms": 0})

    def write(self, feedback: Feedback) -> Feedback:
        """Produce the verdict and wait until the broker has it (ServiceUnavailable if not).
        The producer is idempotent, so its own retries never duplicate the record."""
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        self._producer.produce(
            self.topic,
            self._encoder.encode(feedback.to_record()),
            feedback_key(feedback.id),
            on_delivery=delivered,
        )
        if self._producer.flush(self.timeout) > 0 or errors:
            reason = errors[0] if errors else f"not delivered within {self.timeout:.0f}s"
            raise ServiceUnavailable(f"cannot write feedback on {self.topic}: {reason}")
        return feedback

    def close(self) -> None:
        self._producer.flush(self.timeout)


def write_feedback(
    transaction_id: int,
    verdict: str,
    analyst: str,
    note: str | None = None,
    *,
    model_version: str | None = None,
    score: float | None = None,
    decided_at: int | None = None,
    topic: str = FEEDBACK_TOPIC,
    bootstrap: str | None = None,
    schema_registry_url: str | None = None,
) -> Feedback:
    """Check and write exactly one verdict; returns what was written. FeedbackRejected for
    bad input (nothing produced), ServiceUnavailable when Kafka does not take it."""
    feedback = make_feedback(
        transaction_id,
        verdict,
        analyst,
        note,
        decided_at=decided_at,
        model_version=model_version,
        score=score,
    )
    writer = FeedbackWriter(topic, bootstrap, schema_registry_url)
    try:
        return writer.write(feedback)
    finally:
        writer.close()


def iter_feedback(
    topic: str = FEEDBACK_TOPIC,
    bootstrap: str | None = None,
    schema_registry_url: str | None = None,
    timeout: float = 10.0,
) -> Iterator[Feedback]:
    """Every committed verdict on the topic now, in partition then offset order (no group:
    nothing is committed). A missing topic yields nothing; records that are not verdicts
    (bad framing, a broken field) are skipped."""
    consumer = make_consumer(
        "fraudstream-feedback-reader", bootstrap, **{"enable.partition.eof": True}
    )
    try:
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p, (low, high) in watermarks(consumer, topic, timeout).items():
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))
        if not starts:
            return
        consumer.assign(starts)
        yield from _read_until(consumer, ends, schema_registry_url, timeout)
    finally:
        consumer.close()


def _read_until(
    consumer: Any, ends: dict[int, int], schema_registry_url: str | None, timeout: float
) -> Iterator[Feedback]:
    decoder = AvroDecoder(registry_client(schema_registry_url))
    pending = dict(ends)
    deadline = time.monotonic() + timeout
    while pending:
        messages = consumer.consume(500, timeout=0.5)
        if not messages and time.monotonic() > deadline:
            raise ServiceUnavailable(f"feedback topic not read to its end within {timeout:.0f}s")
        for msg in messages:
            err, partition = msg.error(), msg.partition() or 0
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.pop(partition, None)
                continue
            deadline = time.monotonic() + timeout
            if (msg.offset() or 0) + 1 >= pending.get(partition, 0):
                pending.pop(partition, None)
            try:
                yield Feedback.from_record(decoder.decode(msg.value()))
            except (WireFormatError, FeedbackRejected):
                continue


def read_feedback(
    topic: str = FEEDBACK_TOPIC,
    bootstrap: str | None = None,
    schema_registry_url: str | None = None,
    timeout: float = 10.0,
) -> dict[int, Feedback]:
    """The latest verdict per transaction ID (the last one written wins: one ID's verdicts
    share a partition, so offset order is decision order)."""
    latest: dict[int, Feedback] = {}
    for feedback in iter_feedback(topic, bootstrap, schema_registry_url, timeout):
        latest[feedback.id] = feedback
    return latest


def feedback_count(topic: str = FEEDBACK_TOPIC, bootstrap: str | None = None) -> int:
    """Records on the topic now (0 when it does not exist): cheap, no decoding (the trainer's
    `--watch` polls it to see whether enough new verdicts arrived)."""
    from services.common.kafka import count_records

    try:
        return count_records(topic, bootstrap)
    except ServiceUnavailable:
        return 0
