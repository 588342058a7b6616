"""The floor of one exactly-once stage on this broker: what no scorer or KSQL query can beat.

A paced producer writes to topic A; a copy loop in its own process consumes A read_committed and
copies each batch to B in one transaction (begin, send_offsets, produce, commit: the loop every
stage here runs, with no decoding, model or query in it; PRODUCE_FIRST=1 produces before
send_offsets, the order before docs/latency.md's sixth pass); a read_committed reader of B notes
when each record shows. Prints the copy loop's transaction timings, commit returned -> visible, and
produce -> visible p50/p95/p99/max. `EXTRA_P` / `EXTRA_C` (JSON) add producer / consumer
settings for an A/B, e.g. EXTRA_P='{"retry.backoff.max.ms": 1000}'.

    python bench/latency_floor.py RATE SECONDS [PARTITIONS]     (docs/latency.md, fourth pass)
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer

from services.common.checkpoint import TXN_RETRY_BACKOFF_MAX_MS, TXN_RETRY_BACKOFF_MS
from services.common.kafka import delete_topics, ensure_topic

BOOT = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
EXTRA_P: dict[str, Any] = json.loads(os.environ.get("EXTRA_P", "{}"))
EXTRA_C: dict[str, Any] = json.loads(os.environ.get("EXTRA_C", "{}"))
PRODUCE_FIRST = os.environ.get("PRODUCE_FIRST") == "1"


def quantiles(values: list[float]) -> str:
    """p50 / p95 / p99 / max of seconds, in ms."""
    v = sorted(values)

    def q(f: float) -> float:
        return v[min(len(v) - 1, int(f * len(v)))] * 1000

    return f"p50 {q(0.5):.1f} p95 {q(0.95):.1f} p99 {q(0.99):.1f} max {v[-1] * 1000:.1f} ms"


def _consumer(group: str, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": BOOT,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.queue.backoff.ms": 10,
            **EXTRA_C,
        }
    )
    consumer.subscribe([topic])
    return consumer


def copy_stage(a: str, b: str, stop_at: float, ready: Any, committed: Any) -> None:
    """The consume-transform-produce loop of every stage, with nothing to transform."""
    consumer = _consumer("g" + a, a)
    producer = Producer(
        {
            "bootstrap.servers": BOOT,
            "transactional.id": "t" + a,
            "linger.ms": 5,
            "retry.backoff.ms": TXN_RETRY_BACKOFF_MS,
            "retry.backoff.max.ms": TXN_RETRY_BACKOFF_MAX_MS,
            **EXTRA_P,
        }
    )
    producer.init_transactions()
    ready.set()
    offsets_s: list[float] = []
    commit_s: list[float] = []
    done: dict[bytes | None, float] = {}
    while time.time() < stop_at:
        msgs = consumer.consume(1000, 0) or consumer.consume(1, 0.1)
        if not msgs:
            continue
        msgs += consumer.consume(999, 0)
        good = [m for m in msgs if not m.error()]
        producer.begin_transaction()
        if PRODUCE_FIRST:
            for m in good:
                producer.produce(b, m.value(), m.key())
        t0 = time.perf_counter()
        metadata = consumer.consumer_group_metadata()
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), metadata)
        t1 = time.perf_counter()
        if not PRODUCE_FIRST:  # the checkpoint's order (services/common/checkpoint.py)
            for m in good:
                producer.produce(b, m.value(), m.key())
        producer.commit_transaction()
        offsets_s.append(t1 - t0)
        commit_s.append(time.perf_counter() - t1)
        done.update(dict.fromkeys((m.key() for m in good), time.time()))
    print(f"{len(commit_s)} transactions; send_offsets {quantiles(offsets_s)}", flush=True)
    print(f"commit_transaction {quantiles(commit_s)}", flush=True)
    committed.put(done)


def reader(b: str, n: int, out: Any, ready: Any) -> None:
    """Notes when each record of B becomes visible to a read_committed consumer."""
    consumer = _consumer("r" + b, b)
    ready.set()
    latency: list[float] = []
    visible: dict[bytes | None, float] = {}
    deadline = time.time() + 120
    while len(latency) < n and time.time() < deadline:
        for m in consumer.consume(1000, 0) or consumer.consume(1, 0.05):
            if m.error():
                continue
            now = time.time()
            latency.append(now - float(m.value() or b"0"))
            visible[m.key()] = now
    out.put((latency, visible))


def main() -> None:
    rate, seconds = int(sys.argv[1]), float(sys.argv[2])
    partitions = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    a, b = f"floor-a-{uuid.uuid4().hex[:6]}", f"floor-b-{uuid.uuid4().hex[:6]}"
    for topic in (a, b):
        ensure_topic(topic, partitions, BOOT)
    n = int(rate * seconds)
    out: Any = mp.Queue()
    committed: Any = mp.Queue()
    ready = mp.Event(), mp.Event()
    stop_at = time.time() + seconds + 15
    workers = [
        mp.Process(target=copy_stage, args=(a, b, stop_at, ready[0], committed)),
        mp.Process(target=reader, args=(b, n, out, ready[1])),
    ]
    for w in workers:
        w.start()
    for r in ready:
        r.wait()
    time.sleep(3)
    producer = Producer({"bootstrap.servers": BOOT, "linger.ms": 1, **EXTRA_P})
    started = time.perf_counter()
    for i in range(n):  # paced by sleeping, not spinning: a spin would take a core
        if (wait := started + i / rate - time.perf_counter()) > 0:
            time.sleep(max(wait, 0.001))  # one wake a millisecond, not one a record
        producer.produce(a, repr(time.time()).encode(), str(i).encode())
        producer.poll(0)
    producer.flush()
    latency, visible = out.get()
    done = committed.get()
    after = [visible[k] - done[k] for k in visible if k in done]
    print(f"commit returned -> visible {quantiles(after)}", flush=True)
    print(
        f"rate {rate}/s, {partitions} partition(s), {len(latency)}/{n} seen: produce -> "
        f"visible {quantiles(latency)}",
        flush=True,
    )
    for w in workers:
        w.join()
    delete_topics([a, b], BOOT)


if __name__ == "__main__":
    main()
