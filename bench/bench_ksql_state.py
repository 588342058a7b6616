"""In-process aggregation bench: the operator alone, no broker (bench_ksql.py --state-memory).

Builds the bench's windowed per-user COUNT/SUM query the way the server does (parse, plan,
`BatchProcessor`, `build_operator`) and feeds it the bench's DELIMITED records as consumed
batches, with the USER field rewritten so there are KEYS distinct users. Prints:
- the state store's size per key: tracemalloc's growth over the run (the store's dicts, keys,
  accumulators and undo log, after a commit) divided by the keys stored;
- the operator's records/s with ksqlDB's record cache on (batch-wise fast path) and off (the
  exact per-record path), changelog flushed every 4 batches as the query loop commits.
This isolates the operator from the broker and the clients, so it is also the profile harness.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_ksql import KEYED_COLUMNS, source_values
from confluent_kafka import Message

from services.ksql_server.formats.columnar import warm_up
from services.ksql_server.runtime.inprocess import operator_from_sql
from services.ksql_server.runtime.processor import BatchProcessor
from services.ksql_server.runtime.stateful import run_operator
from services.ksql_server.state import QueryStores

BATCH = 5000
COMMIT_EVERY = 4
WINDOW = "WINDOW TUMBLING (SIZE 10 MINUTES)"


class _Changelog:
    """A producer stand-in that counts what the stores flush."""

    def __init__(self) -> None:
        self.records = 0

    def produce(self, _topic: str, _value: Any, _key: Any) -> None:
        self.records += 1


def build(
    properties: dict[str, Any], window: str = WINDOW
) -> tuple[Any, BatchProcessor, QueryStores]:
    """The operator, processor and stores of the bench's aggregation, as the server builds them."""
    return operator_from_sql(
        f"CREATE STREAM SRC ({KEYED_COLUMNS}) "
        "WITH (KAFKA_TOPIC='src', KEY_FORMAT='KAFKA', VALUE_FORMAT='DELIMITED');",
        "CREATE TABLE AGG WITH (KAFKA_TOPIC='agg', VALUE_FORMAT='JSON') AS SELECT `USER`, "
        f"COUNT(*) AS N, SUM(Amount) AS TOTAL FROM SRC {window} GROUP BY `USER` EMIT CHANGES;",
        properties,
    )


def messages(rows: int, keys: int) -> list[Message]:
    """The bench's records with `keys` distinct USER values, one second apart."""
    out = []
    for i, value in enumerate(source_values(rows)):
        fields = value.split(b",", 3)
        fields[2] = b"user%d" % (i % keys)
        out.append(
            Message(
                topic="src",
                value=b",".join(fields),
                key=fields[0],
                partition=0,
                offset=i,
                timestamp=(1, 1_700_000_000_000 + i),
            )
        )
    return out


def feed(
    operator: Any, processor: BatchProcessor, stores: QueryStores, batch: list[Message]
) -> float:
    """Records/s of the operator over `batch`, committing every COMMIT_EVERY batches."""
    changelog = _Changelog()
    started = time.perf_counter()
    for n, i in enumerate(range(0, len(batch), BATCH), 1):
        run_operator(operator, processor, batch[i : i + BATCH])
        if n % COMMIT_EVERY == 0:
            stores.flush(changelog)  # type: ignore[arg-type]
            stores.committed()
    stores.flush(changelog)  # type: ignore[arg-type]
    stores.committed()
    return len(batch) / (time.perf_counter() - started)


def state_memory(keys: int, rows: int) -> None:
    warm_up()
    batch = messages(max(rows, keys), keys)
    cached = {"cache.max.bytes.buffering": 10_000_000}
    for label, props in (("record cache on", cached), ("record cache off", {})):
        operator, processor, stores = build(props)
        run_operator(operator, processor, batch[:10])  # compile and import outside the timing
        operator, processor, stores = build(props)
        print(f"operator, {label}: {feed(operator, processor, stores, batch):,.0f} records/s")
    operator, processor, stores = build(cached)
    run_operator(operator, processor, batch[:10])
    operator, processor, stores = build(cached)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    stored = _store_only(operator, processor, stores, batch)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per_key = grown / stored
    print(
        f"state store: {stored:,} keys (user, window), {grown / 2**20:.1f} MiB traced growth = "
        f"{per_key:,.0f} bytes/key = {per_key * 100_000 / 2**20:.1f} MiB per 100k keys"
    )


def _store_only(
    operator: Any, processor: BatchProcessor, stores: QueryStores, batch: list[Message]
) -> int:
    """Aggregate the batch, commit, drop everything but the store; its key count."""
    feed(operator, processor, stores, batch)
    return sum(len(s) for s in stores.stores.values())


__all__ = ["build", "messages", "state_memory"]
