"""Benchmark: the KSQL server's preprocessing query against a bare confluent-kafka pass-through.

Both sides read the same DELIMITED records (the demo's 34 fields, every tenth one unlabelled)
from the same source topic on the same broker, in the same run:
- bare: one confluent-kafka consumer → producer loop copying each value unchanged to a topic;
- KSQL: the pipeline's preprocessing statement (`WHERE Class IS NOT NULL`, DELIMITED → AVRO with
  the Schema Registry) as a persistent query on the KSQL server at KSQL_URL.
Rates run from the first output record to the last, so consumer-group start-up counts for
neither side; the two sides alternate for a few rounds and the best rate of each is compared
(a burst of other load on a shared machine then costs a round, not the verdict). Then the
produce-to-push-query-row latency: records produced one by one while a push query
(`/query-stream`, HTTP/2) is open; p50/p99 of the time until each row arrives.

    .venv/bin/python bench/bench_ksql.py [--rows N] [--rounds R] [--latency-records M]
        [--aggregation-only] [--state-memory KEYS]

The aggregation case (issue 13): per-user COUNT/SUM in a 10-minute tumbling window over the same
source, with ksqlDB's default record cache (`cache.max.bytes.buffering` 10 MB: the table gets
each window's latest value per batch), timed from its first sink record to the one that makes
every window's latest COUNT add up to the records produced. `--state-memory` runs the
aggregation operator in this process (bench/bench_ksql_state.py): store bytes per key.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer

from services.common.kafka import (
    delete_topics,
    end_offsets,
    ensure_topic,
    make_consumer,
    make_producer,
    produce,
    produce_many,
)
from services.common.settings import get_settings
from services.ksql_server.rest.client import KsqlClient
from services.producer.csv_source import CsvSource
from services.producer.datagen import write_csv

TARGET = 0.8
AGG_TARGET = 0.5
"""Issue 13: a windowed per-user aggregation at least 0.5 of the bare pass-through."""
"""Issue 16: at least 0.8 of the bare pass-through."""
COLUMNS = (
    "Id BIGINT, `TIMESTAMP` VARCHAR, `USER` VARCHAR, `TIME` INT, "
    + ", ".join(f"V{i} DOUBLE" for i in range(1, 29))
    + ", Amount DOUBLE, Class VARCHAR"
)
SELECTED = "Id, `TIMESTAMP`, `USER`, `TIME`, " + ", ".join(f"V{i}" for i in range(1, 29))
KEYED_COLUMNS = "ID_KEY VARCHAR KEY, " + COLUMNS
"""The pipeline's source stream (ksql/01_source.sql): the producer's key, the Id, is kept."""


def source_values(rows: int) -> list[bytes]:
    """Generated rows in the extended layout; every tenth has an empty (NULL) Class."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.csv"
        write_csv(path, rows, seed=7, extended=True)
        values = [v for batch in CsvSource(path).batches() for v in batch.values]
    return [v.rsplit(b",", 1)[0] + b"," if i % 10 == 9 else v for i, v in enumerate(values)]


def produce_all(topic: str, values: list[bytes]) -> None:
    """Keyed by Id (the first field), as `fraudstream produce` keys them."""
    producer = make_producer()
    produce_many(producer, topic, values, [value.split(b",", 1)[0] for value in values])
    producer.flush(60)


def end_offset(consumer: Consumer, topic: str) -> int:
    """Records written to `topic` so far (sum of the partitions' end offsets)."""
    return sum(end_offsets(consumer, topic, timeout=10).values())


def bare_pass_through(source: str, sink: str, count: int) -> float:
    """Records/s of consume → produce, copying each value unchanged."""
    consumer = make_consumer(f"bench-ksql-bare-{uuid.uuid4().hex[:8]}")
    producer = make_producer()
    consumer.subscribe([source])
    seen, started = 0, 0.0
    try:
        while seen < count:
            for message in consumer.consume(1000, 1.0):
                if message.error():
                    continue
                if not started:
                    started = time.perf_counter()
                produce(producer, sink, message.value(), message.key())
                seen += 1
            producer.poll(0)
        producer.flush(60)
        return (seen - 1) / (time.perf_counter() - started)
    finally:
        consumer.close()


def ksql_preprocessing(
    client: KsqlClient, source: str, sink: str, count: int, expected: int
) -> float:
    """Records/s (source records) of the preprocessing query, first sink record to last."""
    suffix = uuid.uuid4().hex[:8]
    stream, sink_stream = f"bench_src_{suffix}", f"bench_pre_{suffix}"
    client.ksql(
        f"CREATE STREAM {stream} ({KEYED_COLUMNS}) "
        f"WITH (KAFKA_TOPIC='{source}', KEY_FORMAT='KAFKA', VALUE_FORMAT='DELIMITED');"
    )
    watcher = make_consumer(f"bench-ksql-watch-{suffix}")
    try:
        client.ksql(
            f"CREATE STREAM {sink_stream} WITH (KAFKA_TOPIC='{sink}', VALUE_FORMAT='AVRO') AS "
            f"SELECT ID_KEY, {SELECTED}, Amount, Class FROM {stream} "
            "WHERE Class IS NOT NULL EMIT CHANGES;",
            {"auto.offset.reset": "earliest"},
        )
        return sink_rate(watcher, sink, count, expected)
    finally:
        watcher.close()
        drop_streams(client, sink_stream, stream)


def sink_rate(watcher: Consumer, sink: str, count: int, expected: int) -> float:
    """Source records/s of a query, timed from its first sink record to its last."""
    first_at = last_at = 0.0
    last_seen, deadline = 0, time.monotonic() + 300
    while last_seen < expected and time.monotonic() < deadline:
        try:
            seen = end_offset(watcher, sink)
        except Exception:
            seen = 0
        now = time.perf_counter()
        if seen and not first_at:
            first_at = now
        if seen > last_seen:
            last_seen, last_at = seen, now
        time.sleep(0.02)
    if last_seen < expected:
        raise SystemExit(f"KSQL wrote {last_seen} of {expected} records within 300 s")
    return count * (last_seen - 1) / last_seen / max(last_at - first_at, 1e-6)


def server_rss() -> int:
    """The KSQL server's resident memory in bytes (its pid file under FRAUDSTREAM_HOME)."""
    pid = (get_settings().home / "run" / "ksql-server.pid").read_text().split()[0]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


AGG_PROPERTIES = {"auto.offset.reset": "earliest", "cache.max.bytes.buffering": 10_000_000}
"""ksqlDB's default record cache (10 MB): the table gets each group's latest value per batch."""


def ksql_aggregation(
    client: KsqlClient, source: str, sink: str, count: int, cache: bool = True
) -> tuple[float, int]:
    """Records/s of per-user COUNT/SUM in a 10-minute tumbling window with ksqlDB's default
    record cache (the latest value per window per batch), and the server's RSS growth."""
    suffix = uuid.uuid4().hex[:8]
    stream, table = f"bench_asrc_{suffix}", f"bench_agg_{suffix}"
    client.ksql(
        f"CREATE STREAM {stream} ({KEYED_COLUMNS}) "
        f"WITH (KAFKA_TOPIC='{source}', KEY_FORMAT='KAFKA', VALUE_FORMAT='DELIMITED');"
    )
    watcher = make_consumer(f"bench-ksql-watch-{suffix}", **{"auto.offset.reset": "earliest"})
    rss = server_rss()
    try:
        client.ksql(
            f"CREATE TABLE {table} WITH (KAFKA_TOPIC='{sink}', VALUE_FORMAT='JSON') AS "
            f"SELECT `USER`, COUNT(*) AS N, SUM(Amount) AS TOTAL FROM {stream} "
            "WINDOW TUMBLING (SIZE 10 MINUTES) GROUP BY `USER` EMIT CHANGES;",
            AGG_PROPERTIES if cache else {**AGG_PROPERTIES, "cache.max.bytes.buffering": 0},
        )
        rate = table_rate(watcher, sink, count)
        return rate, server_rss() - rss
    finally:
        watcher.close()
        client.ksql(f"DROP TABLE IF EXISTS {table};")
        drop_streams(client, stream)


def table_rate(watcher: Consumer, sink: str, count: int) -> float:
    """Source records/s of an aggregation, from its first sink record to the one that makes the
    latest COUNT of every window add up to `count` (every record counted, none twice)."""
    latest: dict[bytes | None, int] = {}
    first_at = last_at = 0.0
    watcher.subscribe([sink])
    deadline, before_first = time.monotonic() + 300, 0
    while sum(latest.values()) < count and time.monotonic() < deadline:
        for m in watcher.consume(1000, 0.05):
            value = m.value()
            if m.error() or value is None:
                continue
            last_at = time.perf_counter()
            latest[m.key()] = json.loads(value)["N"]
        if latest and not first_at:  # what the first look found was processed before it
            first_at, before_first = last_at, sum(latest.values())
    counted = sum(latest.values())
    if counted != count:
        raise SystemExit(f"KSQL aggregation counted {counted} of {count} records within 300 s")
    return (count - before_first) / max(last_at - first_at, 1e-6)


def drop_streams(client: KsqlClient, *streams: str) -> None:
    for name in streams:
        try:
            description = client.ksql(f"DESCRIBE {name};")[0].get("sourceDescription", {})
            for query in description.get("writeQueries", []) or []:
                client.ksql(f"TERMINATE {query['id']};")
            client.ksql(f"DROP STREAM IF EXISTS {name};")
        except Exception as exc:  # cleanup must not hide the figures
            print(f"cleanup of {name} failed: {exc}")


def push_latency(client: KsqlClient, topic: str, records: int) -> tuple[float, float]:
    """p50/p99 milliseconds from produce() to the row on an open push query."""
    stream = f"bench_lat_{uuid.uuid4().hex[:8]}"
    client.ksql(
        f"CREATE STREAM {stream} ({COLUMNS}) "
        f"WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='DELIMITED');"
    )
    sent: dict[int, float] = {}
    latencies: list[float] = []
    ready = threading.Event()
    # An idempotent producer's first send waits ~0.5 s for its producer id: send a record
    # before the query opens (it starts at the end, so never sees it), not in the measurement.
    producer = make_producer(None, **{"linger.ms": 0})
    producer.produce(topic, b"warm-up")
    producer.flush(10)

    def read() -> None:
        sql = f"SELECT Id FROM {stream} EMIT CHANGES LIMIT {records};"
        for item in client.stream_query(sql, {"auto.offset.reset": "latest"}, timeout=30):
            if isinstance(item, dict):
                ready.set()
                continue
            latencies.append((time.perf_counter() - sent[int(item[0])]) * 1000)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(30)
    time.sleep(2.0)  # let the query's consumer reach the end of the topic
    template = b',"2019-01-01T00:00:00",user,0,' + b"0.1," * 28 + b'9.99,"0"'
    for i in range(1, records + 1):
        sent[i] = time.perf_counter()
        producer.produce(topic, str(i).encode() + template)
        producer.poll(0)
        time.sleep(0.01)
    producer.flush(10)
    reader.join(60)
    drop_streams(client, stream)
    if len(latencies) < records:
        print(f"push query returned {len(latencies)} of {records} rows")
    if not latencies:
        raise SystemExit("push query returned no rows")
    quantiles = statistics.quantiles(latencies, n=100)
    return statistics.median(latencies), quantiles[98]


def run(
    rows: int,
    latency_records: int,
    rounds: int = 3,
    aggregation_only: bool = False,
    cache: bool = True,
) -> float:
    from services.stack.cli import up

    up("kafka,schema-registry,ksql-server")
    client = KsqlClient(get_settings().ksql_url)
    values = source_values(rows)
    expected = sum(1 for v in values if not v.endswith(b","))
    suffix = uuid.uuid4().hex[:8]
    source, latency_topic = (f"bench_ksql_{name}_{suffix}" for name in ("source", "latency"))
    topics = [source, latency_topic]
    bare: list[float] = []
    ours: list[float] = []
    agg: list[float] = []
    rss: list[int] = []
    p50 = p99 = 0.0
    try:
        for topic in topics:
            ensure_topic(topic, 1)
        produce_all(source, values)
        print(f"records: {rows} DELIMITED, 34 fields ({expected} labelled)")
        keys = len({v.split(b",")[2] for v in values})
        print(
            f"{'round':>9}{'bare pass-through':>20}{'KSQL preprocessing':>20}{'ratio':>8}"
            f"{'KSQL aggregation':>18}{'ratio':>8}"
        )
        for n in range(1, rounds + 1):
            # alternating rounds: a burst of load on the shared machine hits both sides
            bare_sink, ksql_sink, agg_sink = (
                f"bench_ksql_{name}_{suffix}_{n}" for name in ("bare", "avro", "agg")
            )
            topics += [bare_sink, ksql_sink, agg_sink]
            for topic in (bare_sink, ksql_sink, agg_sink):
                ensure_topic(topic, 1)
            bare.append(bare_pass_through(source, bare_sink, rows))
            if not aggregation_only:
                ours.append(ksql_preprocessing(client, source, ksql_sink, rows, expected))
            rate, grew = ksql_aggregation(client, source, agg_sink, rows, cache)
            agg.append(rate)
            rss.append(grew)
            pre = f"{ours[-1]:>20,.0f}{ours[-1] / bare[-1]:>8.2f}" if ours else f"{'-':>20}{'-':>8}"
            print(f"{n:>9}{bare[-1]:>20,.0f}{pre}{agg[-1]:>18,.0f}{agg[-1] / bare[-1]:>8.2f}")
        if not aggregation_only:
            p50, p99 = push_latency(client, latency_topic, latency_records)
    finally:
        delete_topics(topics)
    report_aggregation(agg, bare, rss, keys, cache)
    if aggregation_only:
        return max(agg) / max(bare)
    ratio = max(ours) / max(bare)
    print(f"{'best':>9}{max(bare):>20,.0f}{max(ours):>20,.0f}{ratio:>8.2f}  (records/s)")
    print(f"push query latency (produce → row): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    verdict = "meets" if ratio >= TARGET else "below"
    print(
        f"ksql: ratio {ratio:.2f} "
        f"(best KSQL preprocessing / best bare pass-through of {rounds} rounds; "
        f"{verdict} target {TARGET})"
    )
    return ratio


def report_aggregation(
    agg: list[float], bare: list[float], rss: list[int], keys: int, cache: bool
) -> None:
    agg_ratio = max(agg) / max(bare)
    verdict = "meets" if agg_ratio >= AGG_TARGET else "below"
    print(
        f"ksql aggregation: ratio {agg_ratio:.2f} (best per-user COUNT/SUM, tumbling 10 min, "
        f"record cache {'on' if cache else 'off'} / best bare pass-through; "
        f"{verdict} target {AGG_TARGET}); rounds: "
        + ", ".join(f"{a / b:.2f}" for a, b in zip(agg, bare, strict=True))
    )
    grown_mib = statistics.median(rss) / 2**20
    print(
        f"server RSS growth per aggregation run {grown_mib:.1f} MiB (median) for {keys} keys "
        "(the query's clients and buffers; --state-memory measures the store per key)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--latency-records", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="bare/KSQL pairs; best of each")
    parser.add_argument(
        "--aggregation-only", action="store_true", help="bare pass-through and aggregation only"
    )
    parser.add_argument(
        "--record-cache",
        choices=("on", "off"),
        default="on",
        help="the aggregation with ksqlDB's default record cache, or one update per record",
    )
    parser.add_argument(
        "--state-memory",
        type=int,
        metavar="KEYS",
        help="in-process, no broker: the aggregation's store size per key for KEYS distinct "
        "users, and the operator's records/s with and without the record cache",
    )
    args = parser.parse_args()
    if args.state_memory:
        from bench_ksql_state import state_memory

        state_memory(args.state_memory, args.rows)
        return
    run(
        args.rows,
        args.latency_records,
        args.rounds,
        args.aggregation_only,
        args.record_cache == "on",
    )


if __name__ == "__main__":
    main()
