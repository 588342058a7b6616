"""`fraudstream produce` against the real broker: every good line on the topic with its key,
bad lines in the DLQ with their reason, pacing, the CLI summary, and Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException, Message, TopicPartition
from typer.testing import CliRunner

from services.cli import app
from services.common.dlq import read_dlq_headers
from services.common.errors import FraudstreamError
from services.common.kafka import (
    count_records,
    delete_topics,
    ensure_topic,
    make_admin,
    make_consumer,
)
from services.producer.csv_source import CsvSource
from services.producer.datagen import write_csv
from services.producer.replay import produce_csv

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
EXTENDED = ROOT.parent / "shared" / "data" / "creditcard_extended.csv"
SUMMARY = re.compile(r"^produced (\d+) records in [\d.]+ s \(\d+ rec/s\)$")


def consume_all(topic: str, expected: int, group: str, timeout: float = 30.0) -> list[Message]:
    consumer = make_consumer(group)
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                records.append(msg)
    finally:
        consumer.close()
    return records


@pytest.fixture
def topics(topic_name: str, kafka_bootstrap: str) -> Iterator[tuple[str, str]]:
    names = (topic_name, f"{topic_name}_dlq")
    yield names
    delete_topics(names)


def test_good_rows_on_topic_bad_rows_in_dlq(
    tmp_path: Path, topics: tuple[str, str], unique: str
) -> None:
    topic, dlq = topics
    path = tmp_path / "gen.csv"
    write_csv(path, 5000, seed=21)
    lines = path.read_bytes().splitlines()
    lines[10] = lines[10].replace(b",", b",oops,", 1)  # 32 fields
    lines[2000] = b",".join(
        [b"NaN?" if i == 5 else f for i, f in enumerate(lines[2000].split(b","))]
    )
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected: dict[bytes, bytes] = {}
    for batch in CsvSource(path).batches():
        expected.update(zip(batch.keys, batch.values, strict=True))
    assert len(expected) == 4998

    result = produce_csv(path, topic, dlq_topic=dlq)

    assert (result.records, result.bad, result.failed) == (4998, 2, 0)
    assert len(make_admin().list_topics(topic, timeout=10).topics[topic].partitions) == 3
    got = consume_all(topic, 4998, f"test-{unique}")
    assert len(got) == 4998 and count_records(topic) == 4998
    assert {m.key(): m.value() for m in got} == expected
    letters = consume_all(dlq, 2, f"test-dlq-{unique}")
    found = [read_dlq_headers(m.headers()) for m in letters]  # type: ignore[arg-type]
    headers = sorted(found, key=lambda h: h["error"])
    assert [h["error"] for h in headers] == [
        "line 11: expected 31 fields, found 32",
        "line 2001: non-numeric V5 'NaN?'",
    ]
    assert [h["reason"] for h in headers] == ["csv_columns", "csv_value"]
    assert {m.value() for m in letters} == {lines[10], lines[2000]}
    assert all(h["service"] == "producer" and h["source.topic"] == f"file:{path}" for h in headers)


def test_cli_on_shared_extended_sample_with_limit_and_rate(
    topics: tuple[str, str], unique: str
) -> None:
    topic, _dlq = topics
    started = time.monotonic()
    result = CliRunner().invoke(
        app, ["produce", "--csv", str(EXTENDED), "--topic", topic, "--limit", "8", "--rate", "10"]
    )
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert SUMMARY.match(result.output.strip().splitlines()[-1])
    assert result.output.strip().splitlines()[-1].startswith("produced 8 records")
    assert elapsed >= 0.65  # 8 records at 10/s: the last one is due after 0.7 s
    got = consume_all(topic, 8, f"test-{unique}")
    lines = EXTENDED.read_bytes().splitlines()
    assert sorted((m.key(), m.value()) for m in got) == sorted(
        (str(i).encode(), line) for i, line in enumerate(lines[:8], start=1)
    )


def test_speedup_replays_by_time_column(topics: tuple[str, str]) -> None:
    topic, _dlq = topics
    started = time.monotonic()
    result = produce_csv(EXTENDED, topic, speedup=10.0)
    elapsed = time.monotonic() - started
    assert result.records == 10
    assert 0.65 <= elapsed < 15  # Time spans 0..7 s: 0.7 s at 10x


def test_a_paced_replay_waits_instead_of_spinning(tmp_path: Path, topics: tuple[str, str]) -> None:
    """At 2,000 records/s a record is due every 0.5 ms, below librdkafka's millisecond poll:
    waiting for each one with a shorter poll spun a core (CPU time = wall time); the replay now
    waits at least a millisecond and sends what fell due together."""
    topic, _dlq = topics
    path = tmp_path / "gen.csv"
    write_csv(path, 3000, seed=5, extended=True)
    started, cpu_started = time.monotonic(), time.process_time()
    result = produce_csv(path, topic, rate=2000.0)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    assert result.records == 3000
    assert elapsed >= 1.4  # the last record is due after 1.5 s
    assert cpu < 0.5 * elapsed, f"{cpu:.2f} s of CPU in {elapsed:.2f} s"
    assert count_records(topic) == 3000


def test_ctrl_c_flushes_and_reports(tmp_path: Path, topics: tuple[str, str]) -> None:
    topic, _dlq = topics
    path = tmp_path / "gen.csv"
    write_csv(path, 5000, seed=1, extended=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "produce", "--csv", str(path), "--topic", topic,
         "--rate", "200"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # interrupt once records flow
        try:
            if count_records(topic) > 0:
                break
        except (FraudstreamError, KafkaException):
            pass  # the topic does not exist yet
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    match = SUMMARY.match(out.strip().splitlines()[-1])
    assert match, out
    sent = int(match.group(1))
    assert 0 < sent < 5000
    assert count_records(topic) == sent


def test_records_the_broker_refuses_are_counted_and_fail_the_command(
    topics: tuple[str, str],
) -> None:
    topic, _dlq = topics
    ensure_topic(topic, 1, config={"max.message.bytes": "300"})  # every sample line is longer
    result = CliRunner().invoke(app, ["produce", "--csv", str(EXTENDED), "--topic", topic])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("produced 0 records")
    assert "10 records and 0 dead letters were refused" in result.output
    assert "MSG_SIZE_TOO_LARGE" in result.output


def test_an_existing_topic_costs_no_second_admin_client(
    tmp_path: Path, topics: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up: the reachability probe's own metadata answers the topic check, so `produce`
    into an existing topic starts one admin client, not two (and leaves the topic as it is)."""
    from services.common import kafka

    topic, dlq = topics
    ensure_topic(topic, 2)
    built: list[bool] = []
    real = kafka.make_admin

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append(bool(kwargs.get("quiet")))
        return real(*args, **kwargs)

    monkeypatch.setattr(kafka, "make_admin", counted)
    path = tmp_path / "one.csv"
    write_csv(path, 3, seed=1)
    assert produce_csv(path, topic, dlq_topic=dlq, limit=1).records == 1
    assert built == [True]  # the quiet probe only
    assert len(make_admin().list_topics(topic, timeout=10).topics[topic].partitions) == 2


def test_records_refused_before_sending_are_counted(
    tmp_path: Path, topics: tuple[str, str]
) -> None:
    """Lines longer than the producer's message.max.bytes are refused by produce_batch itself."""
    topic, dlq = topics
    line = b",".join([b"1", *[b"0." + b"1" * 40] * 28, b"2.5", b'"0"'])
    path = tmp_path / "long.csv"
    path.write_bytes(b"\n".join([line] * 5 + [b"1,2"]) + b"\n")
    result = produce_csv(path, topic, dlq_topic=dlq, producer_overrides={"message.max.bytes": 1000})
    assert (result.records, result.failed, result.bad, result.dlq_failed) == (0, 5, 1, 0)
    assert "MSG_SIZE_TOO_LARGE" in result.last_error


def test_bench_producer_smoke(capsys: pytest.CaptureFixture[str], kafka_bootstrap: str) -> None:
    """The benchmark's code runs end to end on a few rows and prints its ratio line."""
    import runpy

    bench = runpy.run_path(str(ROOT / "bench" / "bench_producer.py"))
    ratio = bench["run"](2000, 1)
    out = capsys.readouterr().out
    assert ratio > 0 and re.search(r"^producer: ratio \d+\.\d\d ", out, re.MULTILINE), out
    assert "reader: compiled fast path" in out, out  # what `make setup` builds is what it times


def test_bench_producer_startup_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """The start-up part runs the light commands in fresh interpreters (no broker needed with
    `with_broker=False`) and prints one line a command and its verdict."""
    import runpy

    bench = runpy.run_path(str(ROOT / "bench" / "bench_producer.py"))
    worst = bench["startup"](runs=1, with_broker=False)
    out = capsys.readouterr().out
    assert worst > 0 and "datagen --rows 1" in out and "produce --limit 1" not in out, out
    assert re.search(r"^start-up: light commands at most \d+\.\d\d s CPU", out, re.M), out


def test_long_lines_go_to_the_dlq_cut_short_and_the_replay_goes_on(
    tmp_path: Path, topics: tuple[str, str], unique: str
) -> None:
    """The issue's case: a 2 MB line aborted the replay with a traceback, nothing sent. Now it
    is a dead letter (first bytes, length, line number) and every good line goes through; a bad
    line too big for the DLQ topic's max.message.bytes is cut to fit and marked truncated."""
    topic, dlq = topics
    ensure_topic(dlq, 1, config={"max.message.bytes": "20000"})
    path = tmp_path / "long.csv"
    write_csv(path, 300, seed=5)
    lines = path.read_bytes().splitlines()
    lines[50] = b"1," + b"9" * 2_000_000  # line 51: over the 1 MB default
    lines[120] = b"x" * 60_000  # line 121: under the limit, but not under the DLQ's 20000
    path.write_bytes(b"\n".join(lines) + b"\n")

    out = CliRunner().invoke(app, ["produce", "--csv", str(path), "--topic", topic], env=None)
    assert out.exit_code == 0, out.output
    assert SUMMARY.match(out.stdout.strip().splitlines()[-1])
    assert count_records(topic) == 298

    # the CLI writes to the default DLQ; the Python API takes the test's own
    result = produce_csv(path, f"{topic}_again", dlq_topic=dlq)
    delete_topics([f"{topic}_again"])
    assert (result.records, result.bad, result.failed, result.dlq_failed) == (298, 2, 0, 0)
    letters = sorted(consume_all(dlq, 2, f"test-{unique}"), key=lambda m: m.offset() or 0)
    found = [read_dlq_headers(m.headers()) for m in letters]  # type: ignore[arg-type]
    assert [h["source.offset"] for h in found] == ["51", "121"]
    assert found[0]["error"] == "line 51: line of 2000002 bytes is over the limit of 1000000 bytes"
    assert found[0]["original.size"] == "2000002" and found[0]["truncated"] == "true"
    assert [h["reason"] for h in found] == ["line_too_long", "csv_columns"]
    assert letters[0].value() == lines[50][:4096]
    assert found[1]["original.size"] == "60000" and found[1]["truncated"] == "true"
    cut = letters[1].value() or b""
    assert 10_000 < len(cut) < 20_000 and lines[120].startswith(cut)
