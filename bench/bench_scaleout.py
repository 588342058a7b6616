"""bench/scaleout: 1, 2 and 4 `fraudstream score` processes in one consumer group over a
12-partition scoring topic; records/s and per-partition balance for each count.

Each scorer is a real `fraudstream score` subprocess (exactly-once, static membership: its own
`--instance-id`, which makes its `group.instance.id` and its transactional id). A fair start for
every process count: the N input records are written inside one open Kafka transaction, so the
scorers (read_committed) see nothing while they start (TensorFlow import, model load) and join
the group; once the group is stable with every process holding partitions, the transaction is
committed and all N records become visible at once. The rate is N / (time from that commit until
the group's committed offsets reach the end of every partition). Balance: the partitions each
process was assigned and the records it scored (its own `scored N` line), and max/mean of those.

On the 2-core build machine, more processes cannot add CPU; the table shows how the group
spreads the work and what the transactions of more producers cost (see docs/scaling.md for the
planning past one machine).

    .venv/bin/python bench/bench_scaleout.py [--records 240000] [--counts 1,2,4] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "bench"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench_scorer import records, save_model  # noqa: E402
from confluent_kafka import ConsumerGroupState, Producer, TopicPartition  # noqa: E402

from services.common.avro.codec import AvroEncoder  # noqa: E402
from services.common.avro.schemas import ksql_record_schema, registry_client  # noqa: E402
from services.common.kafka import (  # noqa: E402
    delete_topics,
    ensure_topic,
    make_admin,
    make_consumer,
    produce_many,
    producer_config,
)
from services.common.topics import SCORING_FIELDS  # noqa: E402

PARTITIONS = 12
JOIN_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 600.0


@dataclass
class Run:
    """One process count's result."""

    processes: int
    records: int
    seconds: float
    assignment: dict[str, list[int]] = field(default_factory=dict)
    """instance id → partitions it held when the records were released."""
    scored: dict[str, int] = field(default_factory=dict)
    """instance id → records it scored (its `scored N` line)."""

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def balance(self) -> float:
        """max/mean of the records per process (1.0 = even)."""
        counts = list(self.scored.values())
        return max(counts) / (sum(counts) / len(counts)) if counts and sum(counts) else 0.0


def held_input(topic: str, keys: list[bytes], values: list[bytes]) -> Producer:
    """`values` written to `topic` in a transaction left open: invisible to read_committed
    consumers until the caller commits it."""
    producer = Producer(
        producer_config(
            None,
            **{
                "transactional.id": f"bench-scaleout-{uuid.uuid4().hex[:8]}",
                "transaction.timeout.ms": 600_000,
                "linger.ms": 20,
            },
        )
    )
    producer.init_transactions(60)
    producer.begin_transaction()
    produce_many(producer, topic, values, keys)
    if producer.flush(120):
        raise SystemExit("the held input was not written within 120 s")
    return producer


def score_process(
    instance: str, topic: str, alerts: str, group: str, version: str, models_dir: Path
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "services.cli",
        "score",
        *("--model", version, "--topic", topic, "--alerts-topic", alerts, "--group", group),
        *("--instance-id", instance, "--from-beginning", "--metrics-port", "0"),
    ]
    env = {**os.environ, "MODELS_DIR": str(models_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def group_assignment(group: str, topic: str, members: int) -> dict[str, list[int]] | None:
    """instance id → partitions, once the group is stable with `members` members that each
    hold partitions of `topic`; None before."""
    admin = make_admin(quiet=True)
    try:
        description = admin.describe_consumer_groups([group])[group].result(10)
    except Exception:  # not formed yet
        return None
    if description.state != ConsumerGroupState.STABLE or len(description.members) != members:
        return None
    out: dict[str, list[int]] = {}
    for member in description.members:
        parts = [tp.partition for tp in member.assignment.topic_partitions if tp.topic == topic]
        if not parts:
            return None
        out[str(member.group_instance_id).rsplit(".", 1)[-1]] = sorted(parts)
    return out


def committed(group: str, topic: str) -> int:
    consumer = make_consumer(group, None, **{"isolation.level": "read_uncommitted"})
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
    finally:
        consumer.close()


def wait(condition_name: str, timeout: float, check: object, procs: list) -> object:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        value = check()  # type: ignore[operator]
        if value:
            return value
        for proc in procs:
            if proc.poll() is not None:
                err = proc.communicate()[1].decode()[-2000:]
                raise SystemExit(f"a scorer exited while waiting for {condition_name}: {err}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {condition_name}")
        time.sleep(0.2)


def scored_count(out: bytes) -> int:
    for line in reversed(out.decode().splitlines()):
        if line.startswith("scored "):
            return int(line.split()[1])
    return 0


def run_count(
    processes: int, keys: list[bytes], values: list[bytes], version: str, models_dir: Path
) -> Run:
    tag = uuid.uuid4().hex[:8]
    topic, alerts = f"bench_scaleout_in_{tag}", f"bench_scaleout_alerts_{tag}"
    group = f"bench-scaleout-{processes}-{tag}"
    ensure_topic(topic, PARTITIONS)
    ensure_topic(alerts, PARTITIONS)
    producer = held_input(topic, keys, values)
    procs = [
        score_process(str(i), topic, alerts, group, version, models_dir) for i in range(processes)
    ]
    try:
        assignment = wait(
            f"{processes} scorers in a stable group",
            JOIN_TIMEOUT_S,
            lambda: group_assignment(group, topic, processes),
            procs,
        )
        started = time.perf_counter()
        producer.commit_transaction(60)
        # fresh topic: the records sit at offsets 0..n-1 of each partition, so the scorers'
        # committed offsets add up to N once every record is scored (the commit markers after
        # them are no records: a consumer's position passes them, its commits do not count them)
        wait("the scorers to commit every record", RUN_TIMEOUT_S,
             lambda: committed(group, topic) >= len(values), procs)  # fmt: skip
        seconds = time.perf_counter() - started
        scored: dict[str, int] = {}
        for i, proc in enumerate(procs):
            proc.send_signal(signal.SIGTERM)
            out, _err = proc.communicate(timeout=60)
            scored[str(i)] = scored_count(out)
        return Run(processes, len(values), seconds, assignment, scored)  # type: ignore[arg-type]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        delete_topics([topic, alerts])


def report(runs: list[Run]) -> None:
    print(f"{'processes':>9} {'rec/s':>10} {'x one':>6} {'balance':>8}  per process")
    one = runs[0].rate if runs and runs[0].processes == 1 else None
    for run in runs:
        scale = f"{run.rate / one:.2f}" if one else "-"
        spread = "  ".join(
            f"#{i}: {len(run.assignment.get(i, []))}p {run.scored.get(i, 0):,}"
            for i in sorted(run.scored)
        )
        print(f"{run.processes:>9} {run.rate:>10,.0f} {scale:>6} {run.balance:>8.2f}  {spread}")
    best = {r.processes: r.rate for r in runs}
    summary = ", ".join(f"{p} proc {rate:,.0f} rec/s" for p, rate in sorted(best.items()))
    print(f"scaleout: {summary} over {PARTITIONS} partitions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=240_000)
    parser.add_argument("--counts", default="1,2,4", help="process counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per count (best kept)")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    models_dir = Path(tempfile.mkdtemp(prefix="bench-scaleout-models-"))
    version = save_model(models_dir)
    schema_topic = f"bench_scaleout_schema_{uuid.uuid4().hex[:8]}"
    encoder = AvroEncoder(
        registry_client(), f"{schema_topic}-value", ksql_record_schema(list(SCORING_FIELDS))
    )
    rows = records(args.records)
    keys = [str(row["ID"]).encode() for row in rows]
    values = [encoder.encode(row) for row in rows]
    del rows
    print(f"input: {args.records:,} Avro records, {PARTITIONS} partitions, counts {counts}")
    runs: list[Run] = []
    for count in counts:
        best: Run | None = None
        for r in range(1, args.rounds + 1):
            run = run_count(count, keys, values, version, models_dir)
            print(f"  {count} process(es), round {r}: {run.rate:,.0f} rec/s in {run.seconds:.1f} s")
            best = run if best is None or run.rate > best.rate else best
        assert best is not None
        runs.append(best)
    report(runs)


if __name__ == "__main__":
    main()
