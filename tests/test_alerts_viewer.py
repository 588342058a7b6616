"""The alerts viewer: formatting (unit) and following a live alerts topic (real broker)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from services.alerts.cli import _cells, format_line
from services.alerts.viewer import format_time_ms, iter_alerts


def alert(i: int) -> dict[str, Any]:
    return {
        "ID": i,
        "USER": f"u{i}",
        "TIMESTAMP": "2026-11-26 10:00:00",
        "AMOUNT": 12.5,
        "SCORE": 3.14159,
        "THRESHOLD": 2.0,
        "MODEL_VERSION": "v1",
        "SCORED_AT": 1_795_700_000_123,
        "CLASS": None,
    }


def test_cells_format_numbers_times_and_nulls() -> None:
    cells = _cells(alert(7))
    assert cells[0] == "7" and cells[3] == "12.50" and cells[4] == "3.1416"
    assert cells[7] == format_time_ms(1_795_700_000_123) and cells[7].endswith(".123")
    assert cells[8] == ""


def test_a_line_per_alert_when_stdout_is_not_a_terminal() -> None:
    """What `alerts --follow` prints in a pipe or `docker compose logs`: every column, one line."""
    line = format_line(alert(7))
    assert line.startswith("ID=7 USER=u7 TIMESTAMP=2026-11-26 10:00:00 AMOUNT=12.50 SCORE=3.1416")
    assert line.endswith("CLASS=") and "\n" not in line and "\x1b" not in line
    bad = format_line({"error": "bad magic", "offset": 3})
    assert bad.startswith("undecodable alert at offset 3")


@pytest.mark.slow
def test_follow_shows_alerts_written_after_it_started(
    kafka_bootstrap: str, schema_registry_url: str, topic_name: str
) -> None:
    from services.common.avro.codec import AvroEncoder
    from services.common.avro.schemas import registry_client
    from services.common.kafka import ensure_topic, make_producer
    from services.scorer.records import alert_schema

    ensure_topic(topic_name, bootstrap=kafka_bootstrap)
    encoder = AvroEncoder(
        registry_client(schema_registry_url), f"{topic_name}-value", alert_schema()
    )
    producer = make_producer(kafka_bootstrap)
    producer.produce(topic_name, value=encoder.encode(alert(1)))
    producer.flush(10)
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def follow() -> None:
        for item in iter_alerts(topic_name, follow=True, should_stop=stop.is_set, poll_s=0.1):
            seen.append(item)

    reader = threading.Thread(target=follow)
    reader.start()
    deadline = time.monotonic() + 30
    while len(seen) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    producer.produce(topic_name, value=encoder.encode(alert(2)))
    producer.flush(10)
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    reader.join(10)
    assert [a["ID"] for a in seen] == [1, 2]
    assert seen[0]["MODEL_VERSION"] == "v1" and seen[0]["CLASS"] is None
    # without --follow the reader stops at the end; --limit stops early
    assert [a["ID"] for a in iter_alerts(topic_name)] == [1, 2]
    assert [a["ID"] for a in iter_alerts(topic_name, limit=1)] == [1]
