"""bench/trainer: topic → feature array against a bare consume, ingest vs fit, peak memory.

Measured in one run, on a fresh topic of the running broker and Schema Registry filled with N
generated transactions (default 284,807, the Kaggle size) in KSQL's Avro layout:
  1. a bare confluent-kafka consumer that only counts the records (the ceiling);
  2. the trainer's ingest: the same records decoded into the float32 feature matrix;
     both run twice, alternating, and the faster run of each counts;
  3. `fraudstream train` on the whole topic in a subprocess: wall time, the share of it spent
     reading versus fitting (from the version's metrics.json), and its peak resident memory.

Usage: .venv/bin/python bench/bench_trainer.py [--rows 284807] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from confluent_kafka import TopicPartition  # noqa: E402

from services.common.kafka import delete_topics, make_consumer, topic_partitions  # noqa: E402
from services.trainer.ingest import ingest  # noqa: E402
from services.trainer.synthetic import fill_topic  # noqa: E402

RSS_TARGET_MB = 1536
RATIO_TARGET = 0.5


def bare_consume(topic: str, n: int) -> float:
    """Seconds for a bare consumer (assigned from offset 0) to receive n records."""
    started = time.perf_counter()
    consumer = make_consumer(f"bench-bare-{uuid.uuid4().hex[:8]}")
    consumer.assign(
        [TopicPartition(topic, tp.partition, 0) for tp in topic_partitions(consumer, topic)]
    )
    seen = 0
    while seen < n:
        for msg in consumer.consume(10_000, timeout=1.0):
            if msg.error() is None and msg.value() is not None:
                seen += 1
    consumer.close()
    return time.perf_counter() - started


def trainer_ingest(topic: str) -> tuple[float, int]:
    started = time.perf_counter()
    ds = ingest(topic, f"bench-ingest-{uuid.uuid4().hex[:8]}", from_beginning=True)
    return time.perf_counter() - started, len(ds)


def train_subprocess(topic: str, epochs: int, models_dir: Path) -> tuple[float, int, dict]:
    """Run `fraudstream train` alone in a child: wall seconds, peak RSS (MB), metrics.json."""
    env = {**os.environ, "MODELS_DIR": str(models_dir)}
    cmd = [
        sys.executable, "-m", "services.cli", "train", "--topic", topic, "--from-beginning",
        "--group", f"bench-train-{uuid.uuid4().hex[:8]}", "--epochs", str(epochs),
        "--models-topic", f"{topic}_models",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"train failed: {done.stderr[-2000:]}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    version = (models_dir / "LATEST").read_text().strip()
    metrics = json.loads((models_dir / version / "metrics.json").read_text())
    print(f"  {done.stdout.strip().splitlines()[-1]}")
    return wall, peak_mb, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=284_807)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    topic = f"bench_trainer_{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    fill_topic(topic, args.rows, seed=2019)
    print(f"filled {topic} with {args.rows} records in {time.perf_counter() - t0:.1f} s")
    try:
        bare, ours, rows = [], [], 0
        for _ in range(2):
            bare.append(bare_consume(topic, args.rows))
            seconds, rows = trainer_ingest(topic)
            ours.append(seconds)
        assert rows == args.rows, f"ingest kept {rows} of {args.rows} rows"
        bare_rate, our_rate = args.rows / min(bare), args.rows / min(ours)
        with tempfile.TemporaryDirectory() as tmp:
            wall, peak_mb, metrics = train_subprocess(topic, args.epochs, Path(tmp))
    finally:
        delete_topics([topic, f"{topic}_models"])

    ingest_s = metrics["source"]["ingest_seconds"]
    timings = metrics["timings"]
    fit_s = timings["total_s"]
    print()
    print(f"{'':34}{'records/s':>12}{'seconds':>10}")
    print(f"{'bare confluent-kafka consume':34}{bare_rate:>12,.0f}{min(bare):>10.2f}")
    print(f"{'trainer ingest → float32 matrix':34}{our_rate:>12,.0f}{min(ours):>10.2f}")
    print()
    print(
        f"fraudstream train, {args.rows} rows, up to {args.epochs} epochs "
        f"({metrics['training']['epochs_run']} run): wall {wall:.1f} s (incl. start-up)"
    )
    print(
        f"  ingest {ingest_s:.1f} s ({100 * ingest_s / wall:.0f} % of wall) | "
        f"fit+evaluate {fit_s:.1f} s ({100 * fit_s / wall:.0f} %): autoencoder "
        f"{timings['fit_s']:.1f} s, baselines {timings.get('baselines_fit_s', 0):.1f} s"
    )
    print(
        f"  ingest : fit+evaluate = {ingest_s / (ingest_s + fit_s):.2f} : "
        f"{fit_s / (ingest_s + fit_s):.2f}"
    )
    verdict = "ok" if peak_mb < RSS_TARGET_MB else "OVER TARGET"
    print(f"  peak resident memory {peak_mb} MB (target < {RSS_TARGET_MB} MB: {verdict})")
    ratio = our_rate / bare_rate
    print(f"trainer ingest / bare consume = {ratio:.2f} (target >= {RATIO_TARGET})")  # fmt: skip


if __name__ == "__main__":
    main()
