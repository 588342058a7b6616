"""Benchmark: what a huge string literal costs the KSQL server's memory.

A statement's literals used to be pasted into generated Python source, so a 15 MB literal cost
the server 1.7 to 3.1 GB while Python tokenized, parsed and compiled it. Now a literal is a value
bound to the compiled function, and this measures that it stays so: a KSQL server of its own
(a fresh process, its own service id, on a free port, against the Kafka and Schema Registry of
the environment) gets, per round, an INSERT VALUES and a CREATE STREAM AS SELECT whose WHERE
compares with a literal of LITERAL_MB megabytes (bodies stay under the 16 MB body limit). Both
are refused in the end with 40001: the INSERT after the whole parse → compile → evaluate →
serialize path ran (the broker takes no record over 1 MB), the CSAS once parsed (a statement
kept in the command topic may have at most 1,000,000 characters, so nothing is planned and no
record is built only to be refused). Per statement, the server's resident memory is read before and
after, and its peak (VmHWM, reset before each statement through /proc/<pid>/clear_refs): the
growth of the peak is what the literal cost at worst, the growth after is what it left behind.

    .venv/bin/python bench/bench_ksql_literals.py [--mb 15] [--rounds 3]

The last line is the ratio of the worst peak growth to the literal's size.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    """Linux: writing 5 to clear_refs resets the peak resident set (VmHWM) to the current one."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@contextmanager
def ksql_server() -> Iterator[tuple[str, int]]:
    """A KSQL server process of its own (URL, pid), stopped at the end."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    service_id = f"bench_literals_{uuid.uuid4().hex[:8]}_"
    log_path = Path(tempfile.mkdtemp(prefix="bench-literals-")) / "ksql-server.log"
    command = [sys.executable, "-m", "services.cli", "ksql", "serve", "--port", str(port)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*command, "--service-id", service_id],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/healthcheck", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"KSQL server did not start; see {log_path}")
            time.sleep(0.3)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_path.unlink(missing_ok=True)
        log_path.parent.rmdir()


def _post(client: httpx.Client, url: str, sql: str) -> tuple[int, dict[str, object] | list[object]]:
    response = client.post(url + "/ksql", content=json.dumps({"ksql": sql}))
    return response.status_code, response.json()


def measure(client: httpx.Client, url: str, pid: int, sql: str) -> tuple[float, float, int]:
    """(peak growth MB, growth after MB, HTTP status) of one statement."""
    _reset_peak(pid)
    before = _status_kb(pid, "VmRSS")
    status, body = _post(client, url, sql)
    after = _status_kb(pid, "VmRSS")
    peak = _status_kb(pid, "VmHWM")
    if status >= 500:
        raise RuntimeError(f"server error {status}: {str(body)[:300]}")
    return (peak - before) / 1024, (after - before) / 1024, status


def run(mb: float = 15.0, rounds: int = 3) -> float:
    literal = "x" * int(mb * MB)
    name = f"BENCH_LIT_{uuid.uuid4().hex[:8].upper()}"
    statements = {
        "INSERT VALUES": f"INSERT INTO {name} (ID, A, B) VALUES (1, 2, '{literal}');",
        "CSAS WHERE": (
            f"CREATE STREAM {name}_OUT_ROUND AS SELECT * FROM {name} "
            f"WHERE B = '{literal}' OR A > 1;"
        ),
    }
    peaks: dict[str, list[float]] = {k: [] for k in statements}
    leftovers: dict[str, list[float]] = {k: [] for k in statements}
    with ksql_server() as (url, pid), httpx.Client(timeout=300) as client:
        status, body = _post(
            client,
            url,
            f"CREATE STREAM {name} (ID BIGINT KEY, A INT, B VARCHAR) WITH (KAFKA_TOPIC='{name}', "
            "VALUE_FORMAT='JSON', PARTITIONS=1);",
        )
        if status != 200:
            raise RuntimeError(f"cannot create the source stream: {body}")
        for sql in statements.values():  # warm-up: first-use imports and caches
            measure(client, url, pid, sql.replace(literal, "warm").replace("_ROUND ", "_WARM "))
        start_kb = _status_kb(pid, "VmRSS")
        print(f"literal {mb:g} MB, body {len(statements['CSAS WHERE']) / MB:.1f} MB")
        for r in range(rounds):
            for label, sql in statements.items():
                # a sink name of its own each round: a refused CSAS may leave its name taken
                sql = sql.replace("_OUT_ROUND ", f"_OUT_{r} ")
                peak, left, status = measure(client, url, pid, sql)
                peaks[label].append(peak)
                leftovers[label].append(left)
                print(
                    f"round {r + 1} {label:13s}: HTTP {status}, peak RSS +{peak:6.1f} MB, "
                    f"RSS after +{left:6.1f} MB"
                )
        end_kb = _status_kb(pid, "VmRSS")
    for label in statements:
        grown, kept = peaks[label], leftovers[label]
        print(
            f"{label:13s}: peak growth median {statistics.median(grown):.1f} MB "
            f"(min {min(grown):.1f}, max {max(grown):.1f}, spread {max(grown) - min(grown):.1f});"
            f" left after median {statistics.median(kept):.1f} MB"
        )
    print(f"server RSS: {start_kb / 1024:.0f} MB after warm-up, {end_kb / 1024:.0f} MB at the end")
    worst = max(max(p) for p in peaks.values())
    ratio = worst / mb
    print(f"ksql literals: ratio {ratio:.2f} (worst peak RSS growth / literal size)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run(args.mb, args.rounds)


if __name__ == "__main__":
    main()
