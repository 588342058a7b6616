"""Integration tests of the scorer against the real broker and Schema Registry: exactly-once
under SIGKILL, hot reload mid-stream, dead letters inside the transaction, the CLI contracts."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict, cast

import pytest
from confluent_kafka import Message, TopicPartition
from test_scorer_support import (
    input_schema,
    make_records,
    offline_alert_ids,
    produce_raw,
    produce_records,
    read_all,
    save_model,
    serialize_records,
    wait_until,
)

from services.common.avro.codec import AvroDecoder
from services.common.avro.schemas import registry_client
from services.common.dlq import read_dlq_headers
from services.common.kafka import ensure_topic, make_consumer, make_producer
from services.scorer.scorer import Scorer, ScorerConfig

ROOT = Path(__file__).resolve().parent.parent
CRASH_RECORDS = int(os.environ.get("FRAUDSTREAM_CRASH_RECORDS", "100000"))
"""The issue's 100,000 records (about 40 s here); lower it with the variable for a quick loop."""


def decode_alerts(topic: str, bootstrap: str, sr_url: str) -> list[dict[str, Any]]:
    decoder = AvroDecoder(registry_client(sr_url))
    return [decoder.decode(m.value()) for m in read_all(topic, bootstrap)]


class Names(TypedDict):
    """The per-test topics and group, spread into ScorerConfig(**names(unique))."""

    topic: str
    alerts_topic: str
    dlq_topic: str
    group: str


def names(unique: str) -> Names:
    return {
        "topic": f"t_score_in_{unique}",
        "alerts_topic": f"t_score_alerts_{unique}",
        "dlq_topic": f"t_score_dlq_{unique}",
        "group": f"t-score-{unique}",
    }


def dlq_key(msg: Message) -> bytes:
    key = msg.key()
    assert key is not None  # every dead letter keeps its source record's key
    return key


def dlq_headers(msg: Message) -> dict[str, str]:
    """read_dlq_headers of a consumed record: a consumer's headers() are (str, bytes) pairs."""
    return read_dlq_headers(cast("list[tuple[str, bytes]] | None", msg.headers()))


@pytest.mark.slow
def test_dlq_each_bad_record_kind_in_the_transaction(
    kafka_bootstrap: str, schema_registry_url: str, unique: str, tmp_path: Path
) -> None:
    version = save_model(tmp_path)
    n = names(unique)
    records = make_records(3000, seed=11)
    produce_records(n["topic"], records[:1500], schema_registry_url, kafka_bootstrap)
    good = AvroEncoderForTest(schema_registry_url, f"{n['topic']}-value")
    bad: list[tuple[bytes, bytes | None]] = [
        (b"bad-magic", b"\x07" + good.encode(records[0])[1:]),
        (b"bad-id", b"\x00\x7f\xff\xff\xf0" + good.encode(records[0])[5:]),
        (b"bad-missing", good.encode({**records[1], "V4": None})),
        (b"bad-nan", good.encode({**records[2], "V9": float("nan")})),
        (b"bad-text", good.encode_text_v2({**records[3], "V2": "twelve"})),
        (b"bad-short", b"\x00\x01"),
    ]
    produce_raw(n["topic"], bad, kafka_bootstrap)
    produce_records(n["topic"], records[1500:], schema_registry_url, kafka_bootstrap)

    cfg = ScorerConfig(
        **n,
        models_topic=None,
        model=version,
        from_beginning=True,
        stop_at_end=True,
        models_dir=tmp_path,
        batch_size=700,
    )
    scorer = Scorer(cfg)
    result = scorer.run()

    assert result.scored == 3000 and result.dead_letters == len(bad)
    metric = scorer.metrics.registry.get_sample_value
    assert metric("fraudstream_scorer_records_total") == 3000 + len(bad)
    assert metric("fraudstream_scorer_alerts_total") == result.alerts
    kinds = ("magic_byte", "schema_id", "missing_feature", "non_finite", "non_numeric", "framing")
    for label in kinds:
        assert metric("fraudstream_scorer_dlq_total", {"reason": label}) == 1, label
    dlq_total = sum(
        s.value
        for m in scorer.metrics.dlq.collect()
        for s in m.samples
        if s.name.endswith("_total")
    )
    assert dlq_total == len(bad)
    assert metric("fraudstream_scorer_model_info", {"version": version}) == 1
    commits = metric("fraudstream_scorer_commit_seconds_count")
    assert commits is not None and 1 <= commits <= result.batches  # a commit may span batches
    assert (metric("fraudstream_scorer_commit_seconds_sum") or 0) > 0
    letters = read_all(n["dlq_topic"], kafka_bootstrap)
    by_key = {dlq_key(m): m for m in letters}
    assert sorted(by_key) == sorted(k for k, _ in bad)
    reasons = {k: dlq_headers(m)["error"] for k, m in by_key.items()}
    assert reasons[b"bad-magic"] == "unknown magic byte 7"
    assert reasons[b"bad-id"].startswith("unknown schema id")
    assert reasons[b"bad-missing"] == "missing feature V4"
    assert reasons[b"bad-nan"] == "non-finite feature V9=nan"
    assert reasons[b"bad-text"] == "non-numeric feature V2='twelve'"
    assert "too short" in reasons[b"bad-short"]
    codes = {k: dlq_headers(m)["reason"] for k, m in by_key.items()}
    assert codes[b"bad-magic"] == "magic_byte" and codes[b"bad-short"] == "framing"
    assert codes[b"bad-id"] == "schema_id" and codes[b"bad-text"] == "non_numeric"
    for key, value in bad:
        headers = dlq_headers(by_key[key])
        assert headers["source.topic"] == n["topic"] and headers["source.partition"] == "0"
        assert by_key[key].value() == value  # the bytes as received
    offsets = sorted(int(dlq_headers(m)["source.offset"]) for m in letters)
    assert offsets == list(range(1500, 1506))
    alerts = decode_alerts(n["alerts_topic"], kafka_bootstrap, schema_registry_url)
    assert {a["ID"] for a in alerts} == offline_alert_ids(tmp_path, version, records)
    assert all(a["MODEL_VERSION"] == version for a in alerts)
    # The DLQ records were written in the scorer's transactions: committed, so readable under
    # read_committed, and a second run of the group finds nothing left to do.
    again = Scorer(
        ScorerConfig(**n, models_topic=None, model=version, stop_at_end=True, models_dir=tmp_path)
    ).run()
    assert again.scored == 0 and again.dead_letters == 0


class AvroEncoderForTest:
    """Frames records with the registered input schema (and a variant with V2 as text)."""

    def __init__(self, sr_url: str, subject: str) -> None:
        from services.common.avro.codec import AvroEncoder

        client = registry_client(sr_url)
        self._v1 = AvroEncoder(client, subject, input_schema())
        text = input_schema()
        text["fields"] = [
            {**f, "type": ["null", "string"]} if f["name"] == "V2" else f for f in text["fields"]
        ]
        self._text = AvroEncoder(client, f"{subject}-text", text)

    def encode(self, record: dict[str, Any]) -> bytes:
        return self._v1.encode(record)

    def encode_text_v2(self, record: dict[str, Any]) -> bytes:
        return self._text.encode(record)


def committed_total(group: str, topic: str, partitions: int, bootstrap: str) -> int:
    consumer = make_consumer(group, bootstrap, **{"isolation.level": "read_uncommitted"})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        consumer.close()


def score_process(
    n: Names, version: str, models_dir: Path, *extra: str, stop_at_end: bool = True
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "services.cli",
        "score",
        "--model",
        version,
        "--topic",
        n["topic"],
        "--alerts-topic",
        n["alerts_topic"],
        "--group",
        n["group"],
        "--from-beginning",
        "--batch-size",
        "1000",
        "--metrics-port",
        "0",
        *(["--stop-at-end"] if stop_at_end else []),
        *extra,
    ]
    env = {**os.environ, "MODELS_DIR": str(models_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def produce_paced(
    topic: str,
    items: list[tuple[bytes | None, bytes | None]],
    bootstrap: str,
    per_second: int,
    release_rest: threading.Event,
    held_back: int,
) -> threading.Thread:
    """Produce `items` in the background at about `per_second`, the last `held_back` of them only
    once `release_rest` is set: a live stream the scorer cannot reach the end of too early."""

    def run() -> None:
        producer = make_producer(bootstrap)
        chunk = max(per_second // 20, 1)
        head = len(items) - held_back
        for start in range(0, head, chunk):
            for key, value in items[start : min(start + chunk, head)]:
                producer.produce(topic, key=key, value=value)
            producer.flush(30)
            time.sleep(0.05)
        release_rest.wait(timeout=600)
        produce_raw(topic, items[head:], bootstrap)
        assert producer.flush(30) == 0

    thread = threading.Thread(target=run, name="paced-producer", daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_crash_test_sigkill_three_times_gives_exactly_the_offline_alerts(
    kafka_bootstrap: str, schema_registry_url: str, unique: str, tmp_path: Path
) -> None:
    version = save_model(tmp_path, seed=3)
    n = names(unique)
    partitions = 3
    records = make_records(CRASH_RECORDS, seed=21)
    ensure_topic(n["topic"], partitions=partitions, bootstrap=kafka_bootstrap)
    items = serialize_records(n["topic"], records, schema_registry_url)
    # A live stream, as in production: the scorer is faster than any fixed kill point over a
    # prefilled topic (~400k records/s), so the records arrive at a pace, and the last tenth only
    # after the third kill, which therefore always lands before the end of the stream. Each
    # restart meets a backlog (full batches, transactions over several batches), then catches up.
    all_killed = threading.Event()
    held_back = CRASH_RECORDS // 10
    producer = produce_paced(
        n["topic"], items, kafka_bootstrap, CRASH_RECORDS // 20, all_killed, held_back
    )
    rng = random.Random(unique)
    targets = [rng.uniform(0.1 + 0.25 * i, 0.3 + 0.25 * i) * CRASH_RECORDS for i in range(3)]
    short_transactions = ("--commit-interval-ms", "20")  # several per backlog
    kills = []
    for target in targets:
        proc = score_process(n, version, tmp_path, *short_transactions, stop_at_end=False)
        deadline = time.monotonic() + 240
        while committed_total(n["group"], n["topic"], partitions, kafka_bootstrap) < target:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "scorer made no progress"
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.05))  # land anywhere inside a batch or a transaction
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(committed_total(n["group"], n["topic"], partitions, kafka_bootstrap))
    all_killed.set()
    producer.join(timeout=120)
    assert not producer.is_alive()
    final = score_process(n, version, tmp_path, *short_transactions)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip().splitlines()[-1].startswith("scored ")
    # every kill came before the end: the last tenth was produced after the third (a kill may
    # find the scorer caught up with what had arrived, at up to 90 %)
    assert kills == sorted(kills) and all(0 < k < CRASH_RECORDS for k in kills), kills

    alerts = decode_alerts(n["alerts_topic"], kafka_bootstrap, schema_registry_url)
    ids = Counter(a["ID"] for a in alerts)
    expected = offline_alert_ids(tmp_path, version, records)
    assert [i for i, c in ids.items() if c > 1] == []  # none twice
    assert set(ids) == expected  # none missing, none extra
    assert committed_total(n["group"], n["topic"], partitions, kafka_bootstrap) == CRASH_RECORDS


@pytest.mark.slow
def test_hot_reload_mid_stream_switches_between_batches(
    kafka_bootstrap: str, schema_registry_url: str, unique: str, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    from services.common.kafka import ensure_topic
    from services.model_registry.api import MODEL_NAME
    from services.model_registry.registry import ModelRegistry, announcement_to_json

    v1 = save_model(tmp_path, seed=1)
    n = names(unique)
    models_topic = f"t_score_models_{unique}"
    ensure_topic(models_topic, bootstrap=kafka_bootstrap)
    records = make_records(8000, seed=31)
    produce_records(n["topic"], records[:2000], schema_registry_url, kafka_bootstrap)
    scorer = Scorer(
        ScorerConfig(
            **n,
            models_topic=models_topic,
            from_beginning=True,
            models_dir=tmp_path,
            batch_size=250,
            batch_timeout_ms=50,
            model_poll_interval_s=0.2,
        )
    )
    thread = threading.Thread(target=scorer.run)
    thread.start()
    try:
        # A new version, announced but not made LATEST: only the announcement can trigger it.
        v2 = save_model(tmp_path, seed=2, make_latest=False)
        feeder = threading.Thread(
            target=_feed,
            args=(n["topic"], records[2000:5000], schema_registry_url, kafka_bootstrap),
        )
        feeder.start()  # records flow while the announcement arrives and the model loads
        wait_until(lambda: scorer.result.scored >= 2400, 60)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        event = ModelRegistry(tmp_path).announcement(v2)
        producer.produce(models_topic, key=MODEL_NAME.encode(), value=announcement_to_json(event))
        producer.flush(10)
        in_use = scorer.metrics.registry.get_sample_value
        wait_until(lambda: in_use("fraudstream_scorer_model_info", {"version": v2}) == 1, 60)
        feeder.join()
        produce_records(n["topic"], records[5000:], schema_registry_url, kafka_bootstrap)
        wait_until(lambda: scorer.result.scored >= len(records), 120)
    finally:
        scorer.stop()
        thread.join(60)
    result = scorer.result
    assert set(result.versions) == {v1, v2}, result.versions
    switch = result.versions[v1]  # one partition, in order: the first `switch` records were v1
    assert 2400 <= switch <= 5000 and result.scored == len(records)
    alerts = decode_alerts(n["alerts_topic"], kafka_bootstrap, schema_registry_url)
    assert Counter(a["ID"] for a in alerts).most_common(1)[0][1] == 1
    got = {(a["ID"], a["MODEL_VERSION"]) for a in alerts}
    expected = {(i, v1) for i in offline_alert_ids(tmp_path, v1, records[:switch])} | {
        (i, v2) for i in offline_alert_ids(tmp_path, v2, records[switch:])
    }
    assert got == expected


def _feed(
    topic: str, records: list[dict[str, Any]], sr_url: str, bootstrap: str, chunk: int = 100
) -> None:
    """Produce in small chunks over a few seconds (a stream, not one burst)."""
    for start in range(0, len(records), chunk):
        produce_records(topic, records[start : start + chunk], sr_url, bootstrap)
        time.sleep(0.05)


@pytest.mark.slow
def test_cli_score_and_alerts_last_lines_and_sigterm(
    kafka_bootstrap: str, schema_registry_url: str, unique: str, tmp_path: Path
) -> None:
    version = save_model(tmp_path, seed=4)
    n = names(unique)
    records = make_records(2000, seed=41)
    produce_records(n["topic"], records, schema_registry_url, kafka_bootstrap)
    # Without --stop-at-end the scorer runs until SIGTERM, which commits and exits cleanly.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "score",
            "--topic",
            n["topic"],
            "--alerts-topic",
            n["alerts_topic"],
            "--group",
            n["group"],
            "--from-beginning",
            "--metrics-port",
            "0",
        ],
        cwd=ROOT,
        env={**os.environ, "MODELS_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: committed_total(n["group"], n["topic"], 1, kafka_bootstrap) >= 2000, 120)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    expected = offline_alert_ids(tmp_path, version, records)
    last = out.decode().strip().splitlines()[-1]
    assert last.startswith(f"scored 2000 alerts {len(expected)} (") and last.endswith(" ev/s)")

    shown = (
        subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "alerts",
                "--topic",
                n["alerts_topic"],
                "--json",
                "--limit",
                "5",
            ],
            cwd=ROOT,
            capture_output=True,
            timeout=120,
            check=True,
        )
        .stdout.decode()
        .strip()
        .splitlines()
    )
    assert shown[-1] == "5 alerts" and len(shown) == 6
    import json

    assert all(json.loads(line)["ID"] in expected for line in shown[:-1])
    table = (
        subprocess.run(
            [sys.executable, "-m", "services.cli", "alerts", "--topic", n["alerts_topic"]],
            cwd=ROOT,
            capture_output=True,
            timeout=120,
            check=True,
        )
        .stdout.decode()
        .strip()
        .splitlines()
    )
    assert table[-1] == f"{len(expected)} alerts"


@pytest.mark.slow
def test_rebalance_mid_stream_second_scorer_joins_exactly_once(
    kafka_bootstrap: str, schema_registry_url: str, unique: str, tmp_path: Path
) -> None:
    """A second scorer joins the group while the first is mid-stream: partitions are revoked
    from the first between (or during) its batches; still every alert exactly once."""
    version = save_model(tmp_path, seed=5)
    n = names(unique)
    partitions = 4
    total = 30_000
    records = make_records(total, seed=51)
    produce_records(n["topic"], records[:5_000], schema_registry_url, kafka_bootstrap, partitions)
    first = score_process(n, version, tmp_path, "--instance-id", "a", stop_at_end=False)
    committed = lambda: committed_total(n["group"], n["topic"], partitions, kafka_bootstrap)  # noqa: E731
    wait_until(lambda: committed() >= 5_000, 120)
    feeder = threading.Thread(
        target=_feed,
        args=(n["topic"], records[5_000:20_000], schema_registry_url, kafka_bootstrap, 300),
    )
    feeder.start()  # records keep flowing while the group rebalances
    log_b = tmp_path / "b.log"
    second = score_process(
        n, version, tmp_path, "--instance-id", "b", "--log-file", str(log_b), stop_at_end=False
    )
    wait_until(lambda: log_b.exists() and "partitions assigned" in log_b.read_text(), 120)
    feeder.join()
    produce_records(n["topic"], records[20_000:], schema_registry_url, kafka_bootstrap)
    wait_until(lambda: committed() >= total, 120)
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    for proc, (_out, err) in zip((first, second), outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
    scored = [int(out.decode().strip().splitlines()[-1].split()[1]) for out, _ in outputs]
    assert sum(scored) == total and min(scored) > 0, scored  # both scored a share
    alerts = decode_alerts(n["alerts_topic"], kafka_bootstrap, schema_registry_url)
    ids = Counter(a["ID"] for a in alerts)
    assert [i for i, c in ids.items() if c > 1] == []
    assert set(ids) == offline_alert_ids(tmp_path, version, records)


@pytest.mark.slow
def test_a_transaction_spanning_full_batches_commits_once_the_input_is_caught_up(
    kafka_bootstrap: str, schema_registry_url: str, unique: str, tmp_path: Path
) -> None:
    """Full batches share one transaction (a long commit interval here); the first poll that
    finds no full batch commits it while the scorer keeps running: alerts must not wait for
    the interval, a stop or the transaction timeout."""
    version = save_model(tmp_path, seed=3)
    n = names(unique)
    records = make_records(1000, seed=41)  # ten full batches of 100, then nothing more
    produce_records(n["topic"], records, schema_registry_url, kafka_bootstrap)
    scorer = Scorer(
        ScorerConfig(
            **n,
            model=version,
            models_dir=tmp_path,
            models_topic=None,
            from_beginning=True,
            batch_size=100,
            batch_timeout_ms=200,
            commit_interval_ms=600_000,
        )
    )
    thread = threading.Thread(target=scorer.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while scorer.result.scored < len(records):
            assert time.monotonic() < deadline, scorer.result
            time.sleep(0.05)
        # committed (counted) while still running, all in few transactions
        assert thread.is_alive()
        assert scorer.result.batches >= 10
        alerts = decode_alerts(n["alerts_topic"], kafka_bootstrap, schema_registry_url)
    finally:
        scorer.stop()
        thread.join(60)
    assert {a["ID"] for a in alerts} == offline_alert_ids(tmp_path, version, records)
    assert len(alerts) == len({a["ID"] for a in alerts})
