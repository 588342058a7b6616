"""The pipeline's health, live: records/s and consumer lag per stage, from Kafka and KSQL alone.

Nothing here asks a stage how it is doing; it watches what every stage leaves in Kafka, so it
works the same for the embedded stack and Confluent's services and needs no metrics endpoint:

- producer: growth of the source topic's end offsets;
- each KSQL persistent query (`SHOW QUERIES` over REST): its consumer group
  (`_confluent-ksql-<service id>query_<query id>`, as ksqlDB names it), committed offsets'
  growth and lag (end offset minus committed) on the topics it reads;
- trainer and scorer: every other consumer group reading the labelled or the scoring topic;
- alerts: growth of the alerts topic.

A sampler thread takes one sample every `interval_s`; rates are taken over the last ~10 s so a
batchy stage (the scorer commits per transaction) does not flicker between 0 and a spike.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from services.common.errors import FraudstreamError
from services.common.kafka import make_admin
from services.console.config import ConsoleConfig

log = logging.getLogger("fraudstream.console.health")

RATE_WINDOW_S = 10.0
GROUP_LIST_EVERY_S = 10.0
MAX_GROUPS = 200
"""Consumer groups looked at per listing (a shared test broker can hold thousands)."""
UNRELATED_FORGET_S = 600.0
"""How long a group found reading only other topics is not asked again (one FindCoordinator and
one OffsetFetch per group per listing: 25 requests a second on a broker with 127 groups)."""
KSQL_GROUP_PREFIX = "_confluent-ksql-"


@dataclass
class Sample:
    at: float
    ends: dict[str, int]
    """topic -> sum of end offsets"""
    committed: dict[str, dict[str, int]]
    """group -> topic -> sum of committed offsets"""


@dataclass
class Stage:
    stage: str
    name: str
    topic: str
    rate: float | None = None
    lag: int | None = None
    total: int | None = None
    state: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "name": self.name,
            "topic": self.topic,
            "rate": None if self.rate is None else round(self.rate, 1),
            "lag": self.lag,
            "total": self.total,
            "state": self.state,
        }


@dataclass
class HealthSampler:
    config: ConsoleConfig
    ksql_queries: Callable[[], list[dict[str, Any]]] = lambda: []
    """SHOW QUERIES' queries plus the service id (ksql_proxy.KsqlProxy.persistent_queries)."""
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=64))
    error: str | None = None
    _groups: dict[str, set[str]] = field(default_factory=dict)
    """group -> pipeline topics it reads (groups reading none are left out)"""
    _groups_at: float = 0.0
    _unrelated: set[str] = field(default_factory=set)
    """groups with committed offsets on other topics only, not asked again for a while"""
    _unrelated_since: float = 0.0
    _queries: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    @property
    def topics(self) -> list[str]:
        c = self.config
        return [c.source_topic, c.preprocessed_topic, c.scoring_topic, c.alerts_topic]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)  # a daemon: a Kafka call in flight may outlast this

    def _run(self) -> None:
        admin = make_admin(quiet=True)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample_once(admin)
                self.error = None
            except (KafkaException, FraudstreamError) as exc:
                self.error = str(exc)[:300]
                log.warning("health sample failed: %s", self.error)
            spent = time.monotonic() - started
            self._stop.wait(max(0.2, self.config.health_interval_s - spent))

    # ---------------------------------------------------------------- sampling
    def sample_once(self, admin: AdminClient) -> Sample:
        now = time.monotonic()
        try:
            queries = self.ksql_queries()
        except FraudstreamError as exc:
            queries = []
            self.error = f"KSQL: {exc}"[:300]
        ends = self._ends(admin)
        if now - self._groups_at >= GROUP_LIST_EVERY_S or not self._groups:
            self._groups = self._classify(admin, queries)
            self._groups_at = now
        committed = {g: _committed(admin, g, self._groups[g]) for g in list(self._groups)}
        sample = Sample(now, ends, committed)
        with self._lock:
            self.samples.append(sample)
            self._queries = queries
        return sample

    def _ends(self, admin: AdminClient) -> dict[str, int]:
        """topic -> sum of its partitions' end offsets, in one ListOffsets request (not one
        per partition every `interval_s`: the console should cost an idle broker little)."""
        meta = admin.list_topics(timeout=5).topics
        partitions = [
            TopicPartition(topic, p)
            for topic in self.topics
            if (tmeta := meta.get(topic)) is not None and tmeta.error is None
            for p in tmeta.partitions
        ]
        if not partitions:
            return {}
        futures = admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in partitions}, request_timeout=5
        )
        ends: dict[str, int] = {}
        for tp, future in futures.items():
            ends[tp.topic] = ends.get(tp.topic, 0) + future.result(10).offset
        return ends

    def _classify(self, admin: AdminClient, queries: list[dict[str, Any]]) -> dict[str, set[str]]:
        """Which groups read pipeline topics; the running KSQL queries' groups always count.

        Asking a group costs a FindCoordinator and an OffsetFetch, and samples ask every group
        kept here, so groups the view never shows are not kept: another KSQL query's group (a
        stopped query's, another service id's), and a group whose committed offsets are all on
        other topics (a test's, another application's), which is also not asked again for
        `UNRELATED_FORGET_S` (a group id rarely changes what it reads). A group with no offsets
        yet is asked again: it may be a scorer starting."""
        now = time.monotonic()
        if now - self._unrelated_since >= UNRELATED_FORGET_S:
            self._unrelated.clear()
            self._unrelated_since = now
        wanted = set(self.topics)
        query_groups = [q["group"] for q in queries if q.get("group")]
        listed = admin.list_consumer_groups(request_timeout=5).result(10)
        others = sorted(
            g.group_id
            for g in listed.valid
            if g.group_id not in self._unrelated and not g.group_id.startswith(KSQL_GROUP_PREFIX)
        )
        found: dict[str, set[str]] = {}
        for group in list(dict.fromkeys(query_groups + others))[:MAX_GROUPS]:
            try:
                committed = _committed(admin, group, None)
            except KafkaException:
                continue
            topics = set(committed) & wanted
            if topics or group in query_groups:
                found[group] = topics
            elif committed:
                self._unrelated.add(group)
        return found

    # ---------------------------------------------------------------- reporting
    def stages(self) -> list[Stage]:
        """The stages with their rates over the last RATE_WINDOW_S and their lag now."""
        with self._lock:
            samples = list(self.samples)
            queries = list(self._queries)
        if not samples:
            return []
        last = samples[-1]
        first = next((s for s in samples if last.at - s.at <= RATE_WINDOW_S), last)
        c = self.config
        out = [
            _topic_stage("producer", c.source_topic, first, last),
        ]
        query_groups = {}
        for q in queries:
            stage = Stage("ksql", str(q.get("id", "")), ", ".join(q.get("sinks", [])))
            stage.state = str(q.get("state", ""))
            group = q.get("group")
            if group:
                query_groups[group] = stage
                _group_figures(stage, group, first, last)
            out.append(stage)
        for group in sorted(last.committed):
            if group in query_groups or group.startswith(KSQL_GROUP_PREFIX):
                continue
            topics = set(last.committed[group])
            if c.scoring_topic in topics:
                kind = "scorer"
            elif c.preprocessed_topic in topics:
                kind = "trainer"
            else:
                continue
            stage = Stage(kind, group, ", ".join(sorted(topics)))
            _group_figures(stage, group, first, last)
            out.append(stage)
        out.append(_topic_stage("alerts", c.alerts_topic, first, last))
        return out

    def report(self) -> dict[str, Any]:
        return {
            "stages": [s.to_dict() for s in self.stages()],
            "error": self.error,
            "sampled": len(self.samples),
        }


def _topic_stage(kind: str, topic: str, first: Sample, last: Sample) -> Stage:
    stage = Stage(kind, topic, topic, total=last.ends.get(topic))
    if topic in last.ends and topic in first.ends and last.at > first.at:
        stage.rate = (last.ends[topic] - first.ends[topic]) / (last.at - first.at)
    elif topic in last.ends:
        stage.rate = 0.0
    return stage


def _group_figures(stage: Stage, group: str, first: Sample, last: Sample) -> None:
    now = last.committed.get(group, {})
    before = first.committed.get(group, {})
    if not now:
        stage.state = stage.state or "no offsets committed yet"
        return
    stage.total = sum(now.values())
    stage.lag = sum(max(0, last.ends.get(t, v) - v) for t, v in now.items())
    if last.at > first.at and before:
        stage.rate = max(0.0, (stage.total - sum(before.values())) / (last.at - first.at))
    else:
        stage.rate = 0.0


def _committed(admin: AdminClient, group: str, topics: set[str] | None) -> dict[str, int]:
    """topic -> sum of the group's committed offsets (only `topics` when given)."""
    futures = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=5
    )
    result = futures[group].result(10)
    out: dict[str, int] = {}
    for tp in result.topic_partitions or []:
        if tp.error is not None or tp.offset < 0:
            continue
        if topics is not None and tp.topic not in topics:
            continue
        out[tp.topic] = out.get(tp.topic, 0) + tp.offset
    return out
