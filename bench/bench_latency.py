"""bench/latency: CSV line → alert latency through the KSQL server and the scorer.

What a fraud team feels is latency, not throughput (issue 16). This produces source CSV lines
(the demo's extended layout, keyed by Id) at a fixed rate into a fresh copy of the pipeline:
  source topic ──KSQL persistent query (ksql/01_source.sql + 03_scoring.sql, renamed, exactly-once)
  ──▶ scoring topic ──scorer (`fraudstream score`, its own process, exactly-once)──▶ alerts topic.
The scorer runs a small model whose threshold is 0, so every record alerts and every record has
a visible output. Two read_committed consumers watch the scoring and alerts topics; each record
is timed from its produce() call until it is visible to them:
  - source → KSQL sink: the record on the scoring topic (the KSQL transaction committed);
  - scoring topic → alert: from there to its alert (the scorer's transaction committed);
  - end to end: produce() → alert.
p50/p95/p99/max of each stage at 2,000 and 20,000 records/s, a histogram plot, and last:
  `latency p99 scorer=X ms end_to_end=Y ms at 2000/s; end_to_end=Z ms at 20000/s`
With several rounds the printed figures are each stage's median over the rounds (and the spread).

`--commit-path N` measures instead what one transactional stage's commit costs: N back-to-back
one-record transactions per `retry.backoff.ms` (librdkafka's 100 against the project's
`TXN_RETRY_BACKOFF_MS`, alternated in one run), with the time of `send_offsets_to_transaction`
and `commit_transaction` and how often the coordinator answered CONCURRENT_TRANSACTIONS (the next
transaction started while the last one's commit markers were still being written).

Usage: .venv/bin/python bench/bench_latency.py [--seconds 10] [--rounds 1]
       [--rates 2000,20000] [--plot docs/latency.png] [--source-linger-ms 1] [--commit-path 40]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_ksql import drop_streams, source_values  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from services.common.checkpoint import (  # noqa: E402
    TXN_RETRY_BACKOFF_MS,
    transactional_producer,
)
from services.common.kafka import (  # noqa: E402
    consume_available,
    consumer_config,
    delete_topics,
    ensure_topic,
    producer_config,
    topic_partitions,
)
from services.common.process import free_port  # noqa: E402
from services.common.settings import get_settings  # noqa: E402
from services.ksql_server.rest.client import KsqlClient  # noqa: E402

KSQL_FILES = ("01_source.sql", "03_scoring.sql")
STAGES = ("source → KSQL sink", "scoring topic → alert", "end to end")
SOURCE_LINGER_MS = 1
"""The source producer's linger: it adds straight to the end-to-end latency (docs/latency.md)."""
SOURCE_WAIT_S = 0.001
"""The source's shortest sleep: waking for every record (one every 50 µs at 20,000/s) took
0.38 of a core in context switches, on the two cores the pipeline under test shares; records
due within a millisecond go out together (the source's linger batches them so anyway), each
timed at its own produce() call."""
WARM_UP_RECORDS = 20
DRAIN_S = 30.0
"""How long after the last record is produced its alert may take before the run gives up."""


@dataclass
class Timings:
    """Per record (index = Id - base): when produced and when first visible downstream."""

    base: int
    produced: np.ndarray
    sink: np.ndarray
    alert: np.ndarray

    @classmethod
    def empty(cls, base: int, n: int) -> Timings:
        return cls(base, *(np.full(n, np.nan) for _ in range(3)))

    def stages(self) -> list[np.ndarray]:
        """Milliseconds per stage, over the records whose alert was seen."""
        done = ~np.isnan(self.alert) & ~np.isnan(self.sink)
        return [
            (self.sink[done] - self.produced[done]) * 1000,
            (self.alert[done] - self.sink[done]) * 1000,
            (self.alert[done] - self.produced[done]) * 1000,
        ]


class Watcher:
    """A read_committed consumer of one topic, noting when each Id (the key) first shows up in
    the current `Timings` (a thread; keys outside the current run are ignored)."""

    def __init__(self, topic: str, field: str, group: str) -> None:
        self.topic, self.field = topic, field
        self.timings: Timings | None = None
        self.seen = 0
        self._stop = threading.Event()
        self._consumer = Consumer(consumer_config(group, None, **{"fetch.wait.max.ms": 100}))
        tps = topic_partitions(self._consumer, topic)
        self._consumer.assign([TopicPartition(topic, tp.partition, OFFSET_BEGINNING) for tp in tps])
        self._thread = threading.Thread(target=self._run, name=f"watch-{field}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # not consume(1000, 0.05): that waits for 1000 records or 50 ms, and the wait
            # would count in every record's latency
            messages = consume_available(self._consumer, 1000, 0.05)
            now = time.perf_counter()
            timings = self.timings
            if timings is None:
                continue
            column = getattr(timings, self.field)
            for message in messages:
                key = message.key() if message.error() is None else None
                if not key:
                    continue
                index = int(key) - timings.base
                if 0 <= index < len(column) and np.isnan(column[index]):
                    column[index] = now
                    self.seen += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


class Pipeline:
    """A fresh source topic, KSQL scoring query and scorer process, torn down by `close`."""

    def __init__(self, tag: str, workdir: Path, scorer_tree: Path = ROOT) -> None:
        self.client = KsqlClient(get_settings().ksql_url)
        self.source, self.scoring = f"lat_{tag}_source", f"lat_{tag}_scoring"
        self.alerts = f"lat_{tag}_alerts"
        self.workdir = workdir
        self._apply_ksql()
        self.version = save_alert_everything_model(workdir / "models")
        self.log = workdir / "scorer.log"
        self.metrics_port = free_port()
        ensure_topic(self.alerts)
        self.scorer = self._start_scorer(tag, scorer_tree)

    def _apply_ksql(self) -> None:
        """The pipeline's own statements, with the bench's topic and stream names, exactly-once."""
        files = []
        for name in KSQL_FILES:
            text = (ROOT / "ksql" / name).read_text(encoding="utf-8")
            text = text.replace("creditcardfraud_scoring_avro", self.scoring)
            text = text.replace("creditcardfraud_source", self.source)
            path = self.workdir / name
            path.write_text(
                "SET 'processing.guarantee' = 'exactly_once_v2';\n" + text, encoding="utf-8"
            )
            files.append(path)
        self.client.apply_files(files)

    def _start_scorer(self, tag: str, tree: Path) -> subprocess.Popen[bytes]:
        env = {**os.environ, "MODELS_DIR": str(self.workdir / "models"), "PYTHONPATH": str(tree)}
        command = [sys.executable, "-m", "services.cli", "score", "--model", self.version]
        command += ["--topic", self.scoring, "--alerts-topic", self.alerts]
        command += ["--group", f"bench-latency-{tag}", "--from-beginning"]
        command += ["--metrics-port", str(self.metrics_port)]
        with self.log.open("wb") as log:
            return subprocess.Popen(command, env=env, stdout=log, stderr=log, cwd=tree)

    def commit_summary(self) -> str:
        """How long the scorer's commits took over the whole run (its /metrics histogram)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError as exc:
            return f"scorer commits: no metrics ({exc})"
        buckets = [
            (float(sample.labels["le"]), sample.value)
            for family in text_string_to_metric_families(text)
            if family.name == "fraudstream_scorer_commit_seconds"
            for sample in family.samples
            if sample.name.endswith("_bucket")
        ]
        if not buckets or buckets[-1][1] == 0:
            return "scorer commits: none measured (a scorer without the commit histogram?)"
        total = buckets[-1][1]
        shares = ", ".join(
            f"<= {le * 1000:g} ms {count / total:.1%}" for le, count in buckets if le <= 0.1
        )
        return f"scorer commits: {total:,.0f} over the run; {shares}"

    def scorer_failed(self) -> str | None:
        if self.scorer.poll() is None:
            return None
        return f"the scorer exited ({self.scorer.returncode}):\n{self.log.read_text()[-3000:]}"

    def close(self) -> None:
        if self.scorer.poll() is None:
            self.scorer.send_signal(signal.SIGTERM)
            try:
                self.scorer.wait(30)
            except subprocess.TimeoutExpired:
                self.scorer.kill()
        drop_streams(self.client, self.scoring, self.source)
        delete_topics([self.source, self.scoring, self.alerts])


def save_alert_everything_model(models_dir: Path) -> str:
    """A small untrained autoencoder with threshold 0: every score is >= 0, so every record
    alerts (the scorer's work per record is the same as with a real model)."""
    import keras

    from services.model_registry.preprocessing import Preprocessing
    from services.model_registry.registry import ModelRegistry

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((30,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(30)]
    )
    sample = np.random.default_rng(0).normal(size=(500, 30))
    return ModelRegistry(models_dir).save_version(
        model,
        Preprocessing.fit(sample),
        {"threshold": 0.0, "rule": "bench latency: every record alerts"},
        {"bench": {}},
        announce=False,
    )


class Source:
    """CSV lines (extended layout) re-numbered from a base Id, produced at a fixed rate."""

    def __init__(self, topic: str, linger_ms: float = SOURCE_LINGER_MS) -> None:
        self.topic = topic
        self.lines = [v.split(b",", 1)[1] for v in source_values(5000)]
        self.producer = Producer(producer_config(None, **{"linger.ms": linger_ms}))
        self.next_id = 1_000_000_000

    def run(self, rate: int, count: int, timings: Timings) -> None:
        """Produce `count` records at `rate`/s, noting each one's produce() time."""
        produce, topic, lines = self.producer.produce, self.topic, self.lines
        started = time.perf_counter()
        for i in range(count):
            due = started + i / rate
            now = time.perf_counter()
            if now < due:
                time.sleep(max(due - now, SOURCE_WAIT_S))
                self.producer.poll(0)
            key = str(timings.base + i).encode()
            timings.produced[i] = time.perf_counter()
            produce(topic, key + b"," + lines[i % len(lines)], key)
        self.producer.flush(30)

    def timings(self, count: int) -> Timings:
        base, self.next_id = self.next_id, self.next_id + count
        return Timings.empty(base, count)


def measure(
    pipeline: Pipeline, source: Source, watchers: list[Watcher], rate: int, count: int
) -> Timings:
    """One phase: produce `count` records at `rate`, wait for their alerts."""
    timings = source.timings(count)
    for watcher in watchers:
        watcher.timings = timings
    source.run(rate, count, timings)
    deadline = time.monotonic() + DRAIN_S
    while np.isnan(timings.alert).any() and time.monotonic() < deadline:
        if (failure := pipeline.scorer_failed()) is not None:
            raise SystemExit(failure)
        time.sleep(0.1)
    return timings


def warm_up(pipeline: Pipeline, source: Source, watchers: list[Watcher]) -> None:
    """Until a few records made it through (scorer started, KSQL query running), so neither
    start-up nor the idempotent producer's first id request counts."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if (failure := pipeline.scorer_failed()) is not None:
            raise SystemExit(failure)
        timings = measure(pipeline, source, watchers, 100, WARM_UP_RECORDS)
        if not np.isnan(timings.alert).any():
            return
        sink, alerts = (int((~np.isnan(c)).sum()) for c in (timings.sink, timings.alert))
        print(f"warming up: {sink} of {WARM_UP_RECORDS} through KSQL, {alerts} alerts", flush=True)
    raise SystemExit(f"no alerts within 300 s; scorer log:\n{pipeline.log.read_text()[-3000:]}")


def quantiles(ms: np.ndarray) -> tuple[float, float, float, float]:
    if not len(ms):  # no record reached an alert
        nan = float("nan")
        return nan, nan, nan, nan
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return float(p50), float(p95), float(p99), float(ms.max())


def report(rate: int, runs: list[Timings]) -> list[tuple[float, float, float, float]]:
    """Print each stage's p50/p95/p99/max (median over rounds) and the spread of p99."""
    seen = [int((~np.isnan(t.alert)).sum()) for t in runs]
    total = sum(len(t.alert) for t in runs)
    print(f"\n{rate:,} records/s: {sum(seen):,} of {total:,} records reached an alert")
    print(f"{'stage (ms)':24}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}   p99 over rounds")
    medians = []
    for stage, name in enumerate(STAGES):
        per_round = [quantiles(t.stages()[stage]) for t in runs]
        m = [statistics.median(q[i] for q in per_round) for i in range(4)]
        median = (m[0], m[1], m[2], m[3])
        p99s = [q[2] for q in per_round]
        medians.append(median)
        print(
            f"{name:24}{median[0]:>8.1f}{median[1]:>8.1f}{median[2]:>8.1f}{median[3]:>8.1f}"
            f"   {min(p99s):.1f}-{max(p99s):.1f}"
        )
    missing = total - sum(seen)
    if missing:
        print(f"  ({missing} records had no alert within {DRAIN_S:.0f} s)")
    return medians


def plot(results: dict[int, list[Timings]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (rate, runs) in zip(axes[0], results.items(), strict=True):
        for stage, name in enumerate(STAGES):
            ms = np.concatenate([t.stages()[stage] for t in runs])
            if len(ms):
                ax.hist(
                    ms,
                    bins=np.linspace(0, max(1.0, float(np.percentile(ms, 99.9))), 60),
                    histtype="step",
                    label=f"{name} (p99 {np.percentile(ms, 99):.0f} ms)",
                )
        ax.set_title(f"{rate:,} records/s")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("records")
        ax.legend(fontsize=8)
    fig.suptitle("CSV line → alert latency (KSQL + scorer, exactly-once)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"histogram: {path}")


class _RetryCounter(logging.Handler):
    """Counts librdkafka's debug lines about a coordinator that refused a transactional call
    while the previous transaction was still completing."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "CONCURRENT_TRANSACTIONS" in record.getMessage():
            self.count += 1


def commit_path(transactions: int, backoffs: list[int], rounds: int) -> None:
    """Back-to-back one-record transactions per retry backoff, alternated over `rounds`."""
    tag = uuid.uuid4().hex[:8]
    topic = f"lat_{tag}_commit"
    ensure_topic(topic)
    consumer = Consumer(consumer_config(f"bench-latency-commit-{tag}", None))
    print(f"{transactions} back-to-back one-record transactions per run (ms)")
    print(
        f"{'retry.backoff.ms':>16}  {'send_offsets p50 p90 max':>26}  "
        f"{'commit p50 p90':>15}  refused"
    )
    try:
        for n in range(rounds):
            for backoff in backoffs:
                sends, commits, refused = _transactions(
                    topic, consumer, transactions, backoff, f"{tag}-{n}-{backoff}"
                )
                s50, s90 = np.percentile(sends, [50, 90])
                c50, c90 = np.percentile(commits, [50, 90])
                print(
                    f"{backoff:>16}  {s50:>8.1f} {s90:>8.1f} {max(sends):>8.1f}  "
                    f"{c50:>7.1f} {c90:>7.1f}  {refused:>7}"
                )
    finally:
        consumer.close()
        delete_topics([topic])


def _transactions(
    topic: str, consumer: Consumer, count: int, backoff: int, tag: str
) -> tuple[list[float], list[float], int]:
    """`count` one-record transactions: the ms of each send_offsets and commit, and how many
    times the coordinator refused a call (CONCURRENT_TRANSACTIONS)."""
    counter = _RetryCounter()
    logger = logging.getLogger(f"fraudstream.bench.rdkafka.{tag}")
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    conf = producer_config(None, **{"linger.ms": 5, "retry.backoff.ms": backoff})
    conf.update({"debug": "eos", "logger": logger})
    producer = transactional_producer(conf, f"bench-latency-commit-{tag}")
    metadata = consumer.consumer_group_metadata()
    sends, commits = [], []
    for i in range(count):
        producer.begin_transaction()
        producer.produce(topic, b"x", b"k")
        started = time.perf_counter()
        producer.send_offsets_to_transaction([TopicPartition(topic, 0, i + 1)], metadata, 10)
        sent = time.perf_counter()
        producer.commit_transaction(10)
        sends.append((sent - started) * 1000)
        commits.append((time.perf_counter() - sent) * 1000)
    producer.flush(10)
    return sends, commits, counter.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per rate and round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rates", default="2000,20000", help="records/s, comma-separated")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "latency.png")
    parser.add_argument(
        "--scorer-tree",
        type=Path,
        default=ROOT,
        help="run the scorer from another checkout (an A/B against an older tree)",
    )
    parser.add_argument(
        "--source-linger-ms",
        type=float,
        default=SOURCE_LINGER_MS,
        help="the source producer's linger.ms (an A/B: fewer, larger produce requests cost the "
        "broker less CPU, but every record waits up to this before it is sent)",
    )
    parser.add_argument(
        "--dump",
        type=Path,
        help="also save every record's produce / sink / alert times (numpy .npz, perf_counter "
        "seconds, `r<rate>_<round>_<field>`), to look for when the slow records came",
    )
    parser.add_argument(
        "--commit-path",
        type=int,
        default=0,
        metavar="N",
        help="measure the transaction commit path instead: N transactions per retry backoff",
    )
    args = parser.parse_args()
    if args.commit_path > 0:
        commit_path(args.commit_path, [100, TXN_RETRY_BACKOFF_MS], args.rounds)
        return
    rates = [int(r) for r in args.rates.split(",")]
    if any(r <= 0 for r in rates) or args.seconds <= 0 or args.rounds <= 0:
        raise SystemExit("rates, seconds and rounds must be positive")

    from services.stack.cli import up

    up("kafka,schema-registry,ksql-server")
    tag = uuid.uuid4().hex[:8]
    results: dict[int, list[Timings]] = {rate: [] for rate in rates}
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        pipeline = Pipeline(tag, Path(tmp), args.scorer_tree.resolve())
        watchers: list[Watcher] = []
        try:
            watchers = [
                Watcher(pipeline.scoring, "sink", f"bench-latency-sink-{tag}"),
                Watcher(pipeline.alerts, "alert", f"bench-latency-alert-{tag}"),
            ]
            source = Source(pipeline.source, args.source_linger_ms)
            warm_up(pipeline, source, watchers)
            for n in range(1, args.rounds + 1):
                for rate in rates:
                    count = int(rate * args.seconds)
                    results[rate].append(measure(pipeline, source, watchers, rate, count))
                    e2e = quantiles(results[rate][-1].stages()[2])
                    print(
                        f"round {n}, {rate:,}/s: end-to-end p50 {e2e[0]:.1f} ms, "
                        f"p99 {e2e[2]:.1f} ms"
                    )
            print(pipeline.commit_summary())
        finally:
            for watcher in watchers:
                watcher.close()
            pipeline.close()
    medians = {rate: report(rate, runs) for rate, runs in results.items()}
    plot(results, args.plot)
    if args.dump is not None:
        dump(results, args.dump)
    print(summary_line(medians))


def dump(results: dict[int, list[Timings]], path: Path) -> None:
    """Every record's times, per rate and round, for a look at the tail's timing."""
    arrays = {
        f"r{rate}_{n}_{field}": getattr(run, field)
        for rate, runs in results.items()
        for n, run in enumerate(runs, 1)
        for field in ("produced", "sink", "alert")
    }
    np.savez_compressed(path, **arrays)
    print(f"record times: {path}")


def summary_line(medians: dict[int, list[tuple[float, float, float, float]]]) -> str:
    """The last line, for scripts (p99 of the scorer stage and end to end)."""
    low, high = medians.get(2000), medians.get(20000)
    parts = []
    if low is not None:
        parts.append(f"scorer={low[1][2]:.0f} ms end_to_end={low[2][2]:.0f} ms at 2000/s")
    if high is not None:
        parts.append(f"end_to_end={high[2][2]:.0f} ms at 20000/s")
    if not parts:
        rate, stages = next(iter(medians.items()))
        parts.append(f"scorer={stages[1][2]:.0f} ms end_to_end={stages[2][2]:.0f} ms at {rate}/s")
    return "latency p99 " + "; ".join(parts)


if __name__ == "__main__":
    main()
