"""Benchmark: `fraudstream produce` against a bare confluent-kafka loop, same run, same broker.

Both sides send the same 500k DELIMITED values (generated rows, Kaggle layout, so `produce` also
builds Id/Timestamp/User) to fresh 3-partition topics with the same producer settings
(`services.common.kafka.make_producer`). The bare loop gets its keys and values pre-encoded in
memory; `produce` reads, checks and converts the CSV as it goes. Rounds alternate and the best
of each side is kept, so a noisy neighbour on the machine hurts both alike; every round's ratio
is printed too, for the spread, with the CPU time a record of each side (all threads of this
process: the client's, librdkafka's, the reader's; not the broker's), steadier than rates.
500k rows, not 200k: at 200k a side lasts under a second and the bare loop's rate swung
threefold between rounds. `--numpy-reader` measures `produce` without its compiled fast path
(`services/producer/_kaggle_records.c`), as a tree built without a C compiler runs it.

Then start-up: the CPU time (user + system) of whole light commands (the help pages of
`produce`, `alerts`, `ksql`, `stack`; `datagen --rows 1`, the lightest command that does work;
`fraudstream --help`, which loads every service) against a bare `python -c pass`, 5
interleaved runs, best / median / worst of each (`--startup-runs`); `--startup-baseline DIR`
runs the same commands from another checkout in the same rounds (before/after). The target is
under 0.3 s for the commands that neither train nor score.

    .venv/bin/python bench/bench_producer.py [--rows N] [--rounds R] [--numpy-reader]
        [--startup-only] [--startup-baseline DIR]
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.common.kafka import delete_topics, ensure_topic, make_producer, produce_many
from services.producer import csv_source
from services.producer.csv_source import CsvSource
from services.producer.datagen import write_csv
from services.producer.replay import produce_csv

TARGET = 0.9
STARTUP_TARGET_S = 0.3
ROOT = Path(__file__).resolve().parent.parent


def bare_loop(topic: str, keys: list[bytes], values: list[bytes]) -> float:
    """Records/s of the plainest correct loop: produce, poll on a full queue, flush."""
    producer = make_producer()
    started = time.perf_counter()
    produce_many(producer, topic, values, keys)
    producer.flush(60)
    return len(values) / (time.perf_counter() - started)


def _ours(path: Path, topic: str, expected: int) -> float:
    """Records/s of `fraudstream produce`'s replay of `path` into `topic`."""
    result = produce_csv(path, topic)
    if result.records != expected or result.bad:
        raise SystemExit(f"produce sent {result.records} records, expected {expected}")
    return result.rate


def _reader() -> str:
    if csv_source._kaggle_records is not None:
        return "compiled fast path (services/producer/_kaggle_records.c)"
    return "numpy path (the compiled fast path is not built or is switched off)"


def _timed(side: Callable[[], float], records: int) -> tuple[float, float]:
    """(records/s, CPU µs a record of this whole process) of one side's run."""
    cpu = time.process_time()
    rate = side()
    return rate, (time.process_time() - cpu) / records * 1e6


def run(rows: int, rounds: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.csv"
        gen = write_csv(path, rows, seed=42)
        keys: list[bytes] = []
        values: list[bytes] = []
        for batch in CsvSource(path).batches():
            keys += batch.keys
            values += batch.values
        print(f"rows: {gen.rows} ({path.stat().st_size / 2**20:.0f} MiB, Kaggle layout)")
        print(f"reader: {_reader()}")
        best_bare = best_ours = 0.0
        ratios: list[float] = []
        topics: list[str] = []
        try:
            for r in range(1, rounds + 1):
                bare_topic = f"bench_producer_bare_{uuid.uuid4().hex[:8]}"
                ours_topic = f"bench_producer_ours_{uuid.uuid4().hex[:8]}"
                topics += [bare_topic, ours_topic]
                ensure_topic(bare_topic, 3)
                # alternate which side goes first: the first to run after a pause (page cache,
                # the broker's new segments) was the slower in most rounds
                sides = [
                    functools.partial(bare_loop, bare_topic, keys, values),
                    functools.partial(_ours, path, ours_topic, len(values)),
                ]
                first, second = (0, 1) if r % 2 else (1, 0)
                results = {i: _timed(sides[i], len(values)) for i in (first, second)}
                (bare, bare_cpu), (ours, ours_cpu) = results[0], results[1]
                ratios.append(ours / bare)
                print(
                    f"round {r}: bare loop {bare:>9,.0f} rec/s   "
                    f"fraudstream produce {ours:>9,.0f} rec/s   ratio {ours / bare:.2f}   "
                    f"CPU {bare_cpu:.1f} / {ours_cpu:.1f} µs a record"
                    f"{'' if first == 0 else '   (produce first)'}"
                )
                best_bare, best_ours = max(best_bare, bare), max(best_ours, ours)
        finally:
            delete_topics(topics)
    ratio = best_ours / best_bare
    print(f"{'':>9}{'bare loop':>15}{'produce':>15}")
    print(f"{'rec/s':>9}{best_bare:>15,.0f}{best_ours:>15,.0f}")
    print(
        f"per round: median {statistics.median(ratios):.2f}, "
        f"{min(ratios):.2f} to {max(ratios):.2f} over {len(ratios)} rounds"
    )
    verdict = "meets" if ratio >= TARGET else "below"
    print(
        f"producer: ratio {ratio:.2f} (fraudstream produce / bare loop; {verdict} target {TARGET})"
    )
    return ratio


STARTUP_COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass", ["-c", "pass"]),
    ("fraudstream --help", ["-m", "services.cli", "--help"]),
    ("datagen --rows 1", ["-m", "services.cli", "datagen", "--rows", "1", "--out", "{tmp}/x.csv"]),
    ("produce --help", ["-m", "services.cli", "produce", "--help"]),
    (
        "produce --limit 1",
        [
            "-m",
            "services.cli",
            "produce",
            "--csv",
            "{tmp}/x.csv",
            "--limit",
            "1",
            "--topic",
            "{topic}",
        ],
    ),
    ("alerts --help", ["-m", "services.cli", "alerts", "--help"]),
    ("ksql --help", ["-m", "services.cli", "ksql", "--help"]),
    ("stack --help", ["-m", "services.cli", "stack", "--help"]),
]
LIGHT = (
    "produce --help",
    "alerts --help",
    "ksql --help",
    "stack --help",
    "datagen --rows 1",
    "produce --limit 1",
)
"""The commands held to the target: the help pages, `datagen` and `produce` of one row (which
connects to the broker, checks its topic and waits for the record's delivery; it replays the row
`datagen --rows 1` wrote before it, and runs only with a broker, not with --startup-only).
`fraudstream --help` loads every service to list them: reported beside them."""


def startup(runs: int = 5, baseline: Path | None = None, with_broker: bool = True) -> float:
    """CPU time (user + system) of whole light commands, `runs` rounds with the commands (and,
    given `baseline`, the same commands run from that checkout: before/after in one run)
    interleaved, so a busy moment of the machine falls on all of them: best / median / worst
    of each, and the median wall time. CPU time is steadier than wall time on a busy machine.
    Returns the largest median CPU time of the LIGHT commands."""
    trees = [("", ROOT)] + ([("before: ", baseline.resolve())] if baseline else [])
    cpu: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    topic = f"bench_startup_{uuid.uuid4().hex[:8]}"
    commands = [(n, a) for n, a in STARTUP_COMMANDS if with_broker or "{topic}" not in a]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            for name, args in commands:
                for label, tree in trees:
                    key = label + name
                    argv = [a.format(tmp=tmp, topic=topic) for a in args]
                    env = dict(os.environ, PYTHONPATH=str(tree))
                    before = _children_cpu_s()
                    started = time.perf_counter()
                    subprocess.run(
                        [sys.executable, *argv], cwd=tree, env=env, check=True, capture_output=True
                    )
                    wall.setdefault(key, []).append(time.perf_counter() - started)
                    cpu.setdefault(key, []).append(_children_cpu_s() - before)
    if with_broker:
        delete_topics([topic])
    print(f"start-up over {runs} interleaved runs: CPU s best / median / worst, wall s median")
    for key, got in cpu.items():
        got.sort()
        print(
            f"  {key:<28} {got[0]:.2f} / {statistics.median(got):.2f} / {got[-1]:.2f}"
            f"   wall {statistics.median(wall[key]):.2f}"
        )
    worst = max(statistics.median(cpu[name]) for name in LIGHT if name in cpu)
    verdict = "meets" if worst < STARTUP_TARGET_S else "above"
    print(
        f"start-up: light commands at most {worst:.2f} s CPU (median; {verdict} target "
        f"{STARTUP_TARGET_S} s)"
    )
    return worst


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--numpy-reader",
        action="store_true",
        help="produce without its compiled fast path (as a tree built without a C compiler)",
    )
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument(
        "--startup-baseline",
        type=Path,
        help="a checkout of another commit: its start-up is measured interleaved with this one",
    )
    parser.add_argument("--startup-only", action="store_true", help="skip the Kafka part")
    args = parser.parse_args()
    if args.numpy_reader:
        csv_source._kaggle_records = None  # type: ignore[assignment]
    if not args.startup_only:
        run(args.rows, args.rounds)
    startup(args.startup_runs, args.startup_baseline, with_broker=not args.startup_only)


if __name__ == "__main__":
    main()
