"""Dead-lettering: a record that cannot be processed is kept, as received, with the reason.

Every consumer (producer's CSV reader included) sends such records to `creditcardfraud_dlq` so
nothing is lost and an operator can replay them after a fix. Headers say where the record came
from and why it failed.

A dead letter must itself be accepted by the DLQ topic: a record bigger than the topic's
`max.message.bytes` (or the producer's `message.max.bytes`) would be refused, and the reason the
original failed would be lost with it. So the value (and, if it alone is too big, the key) is cut
to fit, and the `fraudstream.truncated` / `fraudstream.original.size` headers say so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Producer

from services.common.kafka import produce
from services.common.topics import DLQ_TOPIC

DLQ_MAX_RECORD_BYTES = 1_000_000
"""Default ceiling of one dead letter (key + value + headers): librdkafka's default
`message.max.bytes`, below the broker's default topic `max.message.bytes` (1,048,588)."""
RECORD_OVERHEAD_BYTES = 512
"""Room kept for the record's framing (lengths, offsets, timestamps, the batch header)."""
KEY_KEEP_BYTES = 1024
"""A key that alone leaves no room for the value is cut to this many bytes."""
ERROR_TEXT_CHARS = 1000
"""The reason header is cut to this many characters (reasons quote bits of bad input)."""

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class DeadLetter:
    """What went wrong with one record, and where it came from."""

    error: str
    source_topic: str = ""
    partition: int = -1
    offset: int = -1
    service: str = ""
    reason: str = "other"
    """The rejection's stable code (`RecordRejected.code`): what tools and metrics match on."""


def dlq_headers(letter: DeadLetter) -> Headers:
    return [
        ("fraudstream.error", letter.error[:ERROR_TEXT_CHARS].encode()),
        ("fraudstream.reason", letter.reason.encode()),
        ("fraudstream.source.topic", letter.source_topic.encode()),
        ("fraudstream.source.partition", str(letter.partition).encode()),
        ("fraudstream.source.offset", str(letter.offset).encode()),
        ("fraudstream.service", letter.service.encode()),
        ("fraudstream.failed.at", str(int(time.time() * 1000)).encode()),
    ]


def _headers_size(headers: Headers) -> int:
    return sum(len(name) + len(value or b"") + 8 for name, value in headers)


def fit_dead_letter(
    value: bytes | None,
    key: bytes | None,
    headers: Headers,
    max_record_bytes: int = DLQ_MAX_RECORD_BYTES,
    original_size: int | None = None,
) -> tuple[bytes | None, bytes | None, Headers]:
    """(value, key, headers) cut so the record stays under `max_record_bytes`.

    `original_size` is the size of the bad input when the caller already holds only its start
    (a CSV line too long to read whole); the record is then marked truncated as well.
    """
    value_size = len(value or b"")
    original = max(original_size or 0, value_size)
    room = max_record_bytes - RECORD_OVERHEAD_BYTES - _headers_size(headers) - 64
    if key is not None and len(key) > room // 2:
        headers = [*headers, ("fraudstream.key.original.size", str(len(key)).encode())]
        key = key[:KEY_KEEP_BYTES]
    room -= len(key or b"")
    if value is not None and value_size > room:
        value = value[: max(room, 0)]
    if value is not None and original > len(value):
        headers = [
            *headers,
            ("fraudstream.truncated", b"true"),
            ("fraudstream.original.size", str(original).encode()),
        ]
    return value, key, headers


def send_to_dlq(
    producer: Producer,
    value: bytes | None,
    key: bytes | None,
    letter: DeadLetter,
    topic: str = DLQ_TOPIC,
    *,
    max_record_bytes: int = DLQ_MAX_RECORD_BYTES,
    original_size: int | None = None,
) -> None:
    """Queue the record on the DLQ topic (the caller's flush or transaction commit sends it),
    cut to fit `max_record_bytes` (see `fit_dead_letter`)."""
    value, key, headers = fit_dead_letter(
        value, key, dlq_headers(letter), max_record_bytes, original_size
    )
    produce(producer, topic, value, key, headers=headers)


def read_dlq_headers(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """The fraudstream.* headers of a DLQ record as a plain dict (for tests and tools)."""
    return {
        k.removeprefix("fraudstream."): (v or b"").decode()
        for k, v in headers or []
        if k.startswith("fraudstream.")
    }
