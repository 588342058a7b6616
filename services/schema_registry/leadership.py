"""The writer election of the `_schemas` log: which registry instance may write, and where the
others forward their writes.

Instances join the consumer group `<group>` subscribed to `_schemas`; the member that is
assigned the partition is the leader (cooperative-sticky keeps it there while it lives). The
leader writes through a transactional producer with one fixed `transactional.id`, so a new
leader's `init_transactions` fences an old one that has not noticed yet, and it reads the log to
its end before its first write. Followers find the leader's URL (its `client.id`) by describing
the group.

It lives apart from `kafka_log.KafkaLog`'s reading and writing because it is its own concern (a
group membership and its callbacks, a producer's life, a cached leader lookup); `KafkaLog`
inherits this mixin and provides the topic, the reader's events, `_produce_committed` and
`wait_applied`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.common.kafka import client_config, make_admin
from services.schema_registry.state import Record

log = logging.getLogger("fraudstream.schema_registry.kafka")

ELECTION_WAIT_S = 10.0
REBUILD_RETRY_S = 1.0


class WriterElection:
    """Leads (holds the writer's producer) while the group assigns this instance the partition."""

    bootstrap: str
    topic: str
    group: str
    advertised_url: str
    caught_up: threading.Event
    ready: threading.Event
    is_leader: bool
    _owns_partition: bool
    _rebuild: bool
    _stop: threading.Event
    _producer: Producer | None
    _leader_cache: tuple[float, str | None]
    _admin: AdminClient | None

    if TYPE_CHECKING:

        def _produce_committed(self, producer: Producer, records: list[Record]) -> int | None: ...

        def wait_applied(self, offset: int, timeout: float) -> None: ...

    def _elect_loop(self) -> None:
        consumer = Consumer(
            {
                **client_config(self.bootstrap),
                "group.id": self.group,
                "client.id": self.advertised_url,
                "enable.auto.commit": False,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
            }
        )
        assigned = threading.Event()

        def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
            if any(p.topic == self.topic and p.partition == 0 for p in partitions):
                self._owns_partition = True
                assigned.set()

        def on_revoke(c: Consumer, partitions: list[TopicPartition]) -> None:
            if any(p.topic == self.topic and p.partition == 0 for p in partitions):
                self._owns_partition = False
                assigned.clear()
                self._step_down()

        consumer.subscribe(
            [self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke
        )
        started = time.monotonic()
        next_rebuild = 0.0
        try:
            while not self._stop.is_set():
                consumer.poll(0.5)
                if self._rebuild and time.monotonic() >= next_rebuild:
                    next_rebuild = time.monotonic() + REBUILD_RETRY_S
                    self._maybe_rebuild()
                if assigned.is_set():
                    assigned.clear()
                    consumer.pause([TopicPartition(self.topic, 0)])
                    try:
                        self.become_leader()
                    except Exception as exc:  # e.g. the broker is briefly unreachable
                        log.warning("could not become the leader, retrying: %s", exc)
                        self._step_down()
                        assigned.set()  # still assigned: try again on the next round
                if not self.ready.is_set() and self.caught_up.is_set():
                    self._maybe_ready(started)
        finally:
            self._step_down()
            consumer.close()

    def _maybe_rebuild(self) -> None:
        """Replace a producer lost to a failed write, if this instance still leads: our consumer
        holds the partition and the group coordinator agrees (after a freeze the consumer may not
        know yet that it lost it; the coordinator does, and then the new leader is left alone)."""
        if not self._owns_partition:
            self._rebuild = False  # someone else leads now; a new assignment starts afresh
            return
        self.forget_leader()
        if self.leader_url() != self.advertised_url:
            return
        try:
            self.become_leader()
            self._rebuild = False
        except Exception as exc:  # the broker briefly unreachable: the next round tries again
            log.warning("could not replace the registry's producer, retrying: %s", exc)
            self._step_down()

    def _maybe_ready(self, started: float) -> None:
        """Answer requests once the election settled (we lead, or a leader is known), so the
        first write after a start is not refused; after ELECTION_WAIT_S answer anyway."""
        waited = time.monotonic() - started
        if self.is_leader or waited > ELECTION_WAIT_S or (waited > 2 and self.leader_url()):
            self.ready.set()

    def become_leader(self) -> None:
        """Fence any older writer, then read to the end before the first write."""
        producer = Producer(
            {
                **client_config(self.bootstrap),
                # One id per storage topic, whatever the group: any two writers of one topic
                # fence each other, even if misconfigured into different groups.
                "transactional.id": f"fraudstream-schema-registry-writer-{self.topic}",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 0,
            }
        )
        producer.init_transactions(30)
        self.caught_up.wait(60)
        offset = self._produce_committed(producer, [])
        if offset is not None:
            self.wait_applied(offset, 30)
        self._producer = producer
        self._rebuild = False
        self.is_leader = True
        log.info("this instance (%s) is now the schema registry leader", self.advertised_url)

    def _step_down(self) -> None:
        self.is_leader = False
        self._producer = None

    def leader_url(self) -> str | None:
        """The leader's advertised URL from the group's assignment (cached for a second)."""
        if self.is_leader:
            return self.advertised_url
        checked, url = self._leader_cache
        if url is not None and time.monotonic() - checked < 1.0:
            return url
        url = None
        try:
            if self._admin is None:
                # Not make_admin(quiet=True): with a Python logger, results wait for poll().
                self._admin = make_admin(self.bootstrap)
            future = self._admin.describe_consumer_groups([self.group])
            description = future[self.group].result(timeout=3)
            for member in description.members:
                parts = member.assignment.topic_partitions if member.assignment else []
                if any(p.topic == self.topic and p.partition == 0 for p in parts):
                    url = member.client_id
        except Exception as exc:  # KafkaException, or a timeout while the group rebalances
            log.warning("cannot describe group %s: %s", self.group, exc)
        self._leader_cache = (time.monotonic(), url)
        return url

    def forget_leader(self) -> None:
        self._leader_cache = (0.0, None)
