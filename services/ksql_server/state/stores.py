"""The state stores of one persistent query, tied to its consume-transform-produce loop.

`QueryStores` owns the query's `KeyValueStore`s and does what the loop needs of them together:
create their compacted changelog topics, restore them before the first record is processed,
flush their changes into the open transaction before each commit, and roll them back when a
transaction aborts or the loop restarts from its committed offsets (runtime/query.py calls
these). Restoring reads with read_committed, so under exactly_once_v2 a store never sees the
changes of a transaction that did not commit: store, output and input offsets agree.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from services.ksql_server.state.store import KeyValueStore, changelog_topic

LOG = logging.getLogger("fraudstream.ksql.state")

CHANGELOG_CONFIG = {"cleanup.policy": "compact"}
RESTORE_POLL_S = 0.5


class QueryStores:
    """Every store of one query; `physical` maps a logical topic name to the real one."""

    def __init__(self, service_id: str, query_id: str, physical: Any = None) -> None:
        self.service_id = service_id
        self.query_id = query_id
        self._physical = physical or (lambda t: t)
        self.stores: dict[str, KeyValueStore] = {}
        self.restored = False

    def store(self, name: str, retention_ms: int | None = None) -> KeyValueStore:
        """The store `name` of this query (created on first use, before `restore`)."""
        existing = self.stores.get(name)
        if existing is not None:
            return existing
        topic = self._physical(changelog_topic(self.service_id, self.query_id, name))
        store = KeyValueStore(name, topic, retention_ms)
        self.stores[name] = store
        return store

    def __bool__(self) -> bool:
        return bool(self.stores)

    # ------------------------------------------------------------------ lifecycle
    def create_topics(self, ctx: Any, partitions: int) -> None:
        """The changelog topics, compacted, as many partitions as the query's source."""
        for store in self.stores.values():
            ctx.ensure_topic(store.changelog, partitions, 1, dict(CHANGELOG_CONFIG))

    def restore(self, consumer_conf: dict[str, Any]) -> int:
        """Rebuild every store from its changelog (start to end); returns the records read."""
        total = 0
        for store in self.stores.values():
            total += _restore_one(store, consumer_conf)
        self.restored = True
        if total:
            LOG.info("query %s restored %d changelog records", self.query_id, total)
        return total

    def flush(self, producer: Producer) -> int:
        """Write the changes since the last commit into the producer's open transaction."""

        def send(topic: str, key: bytes, value: bytes | None) -> None:
            producer.produce(topic, value, key)

        return sum(s.flush(send) for s in self.stores.values())

    def committed(self) -> None:
        for s in self.stores.values():
            s.committed()

    def rollback(self) -> None:
        for s in self.stores.values():
            s.rollback()

    def expire(self) -> None:
        for s in self.stores.values():
            s.expire()


def _restore_one(store: KeyValueStore, conf: dict[str, Any]) -> int:
    consumer = Consumer({**conf, "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        meta = consumer.list_topics(timeout=10).topics.get(store.changelog)
        if meta is None or meta.error is not None:
            return 0
        ends: dict[int, int] = {}
        tps = []
        for p in sorted(meta.partitions):
            lo, hi = consumer.get_watermark_offsets(
                TopicPartition(store.changelog, p), timeout=10, cached=False
            )
            if hi > lo:
                ends[p] = hi
                tps.append(TopicPartition(store.changelog, p, OFFSET_BEGINNING))
        if not tps:
            return 0
        consumer.assign(tps)
        n = 0
        deadline = time.monotonic() + 300
        while ends and time.monotonic() < deadline:
            for m in consumer.consume(5000, RESTORE_POLL_S):
                if m.error() is not None:
                    continue
                store.load(m.key() or b"null", m.value())
                n += 1
            # under read_committed the last offsets may be transaction markers: compare positions
            for tp in consumer.position([TopicPartition(store.changelog, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    ends.pop(tp.partition, None)
        store.committed()
        return n
    finally:
        consumer.close()


__all__ = ["CHANGELOG_CONFIG", "QueryStores"]
