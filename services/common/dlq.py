"""Dead-lettering: a record that cannot be processed is kept, as received, with the reason.

Every consumer (producer's CSV reader included) sends such records to `creditcardfraud_dlq` so
nothing is lost and an operator can replay them after a fix. Headers say where the record came
from and why it failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Producer

from services.common.topics import DLQ_TOPIC


@dataclass(frozen=True)
class DeadLetter:
    """What went wrong with one record, and where it came from."""

    error: str
    source_topic: str = ""
    partition: int = -1
    offset: int = -1
    service: str = ""


def dlq_headers(letter: DeadLetter) -> list[tuple[str, str | bytes | None]]:
    return [
        ("fraudstream.error", letter.error.encode()),
        ("fraudstream.source.topic", letter.source_topic.encode()),
        ("fraudstream.source.partition", str(letter.partition).encode()),
        ("fraudstream.source.offset", str(letter.offset).encode()),
        ("fraudstream.service", letter.service.encode()),
        ("fraudstream.failed.at", str(int(time.time() * 1000)).encode()),
    ]


def send_to_dlq(
    producer: Producer,
    value: bytes | None,
    key: bytes | None,
    letter: DeadLetter,
    topic: str = DLQ_TOPIC,
) -> None:
    """Queue the record on the DLQ topic (the caller's flush or transaction commit sends it)."""
    producer.produce(topic, value=value, key=key, headers=dlq_headers(letter))


def read_dlq_headers(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """The fraudstream.* headers of a DLQ record as a plain dict (for tests and tools)."""
    return {
        k.removeprefix("fraudstream."): (v or b"").decode()
        for k, v in headers or []
        if k.startswith("fraudstream.")
    }
