"""The scorer's model watcher: the background thread that follows announcements on
`fraudstream_models` and changes of `models/LATEST`, and asks for each new version it hears of.

It lives apart from `models.ModelManager`'s loading, retrying and swapping because it is the
part that talks to Kafka and the disk and must survive anything it meets there (a consumer that
fails is recreated with backoff while LATEST is still watched). Everything it reads is
untrusted: an announcement is parsed bounded and strictly, and refused ones are counted and
logged (throttled). `ModelManager` inherits this mixin and provides `request`, `_attempt_due`,
`_log_throttled`, the metrics and the settings.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from services.model_registry.api import MODEL_NAME, LoadedModel
from services.model_registry.errors import ModelRegistryError
from services.scorer.metrics import ScorerMetrics

log = logging.getLogger("fraudstream.scorer.models")


class ModelWatcher:
    """Turns announcements and LATEST changes into `request(version, digest, source)` calls."""

    metrics: ScorerMetrics
    _latest: Callable[[], str | None]
    _seen_latest: str | None
    _latest_problem: str | None
    _stop: threading.Event
    _bootstrap: str | None
    _models_topic: str | None
    _poll_interval_s: float
    _retry_max_s: float
    _consumer_retry_at: float
    _consumer_failures: int

    current: LoadedModel

    if TYPE_CHECKING:

        def request(
            self, version: str, digest: str | None = None, source: str = "request"
        ) -> None: ...

        def _attempt_due(self) -> None: ...

        def _log_throttled(self, key: str, message: str, fields: dict[str, object]) -> None: ...

    def _watch(self) -> None:
        consumer: Consumer | None = None
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    consumer = self._tick(self._ensure_consumer(consumer))
                    failures = 0
                except Exception as exc:  # the watcher must outlive anything it meets
                    failures += 1
                    self.metrics.model_watcher_errors.labels(kind=type(exc).__name__[:40]).inc()
                    self._log_throttled(
                        "watcher",
                        "model watcher error; retrying",
                        {"error": str(exc)[:200], "failures": failures},
                    )
                    consumer = self._drop_consumer(consumer)
                    self._stop.wait(self._backoff(failures))
        finally:
            self._drop_consumer(consumer)

    def _backoff(self, failures: int) -> float:
        return float(min(self._retry_max_s, self._poll_interval_s * 2 ** min(failures, 16)))

    def _tick(self, consumer: Consumer | None) -> Consumer | None:
        consumer = self._read_announcements(consumer)
        self._check_latest()
        self._attempt_due()
        return consumer

    def _read_announcements(self, consumer: Consumer | None) -> Consumer | None:
        """Act on new announcements; a consumer that fails is closed and recreated later
        (with backoff) while LATEST is still watched."""
        if consumer is None:
            self._stop.wait(self._poll_interval_s)
            return None
        try:
            for version, digest in self._announced(consumer):
                self.request(version, digest, source="topic")
        except Exception as exc:
            self._consumer_failed(exc)
            self._drop_consumer(consumer)
            return None
        self._consumer_failures = 0
        return consumer

    def _check_latest(self) -> None:
        try:
            latest = self._latest()
        except Exception as exc:  # garbage, binary, unreadable: say so once per new problem
            problem = f"{type(exc).__name__}: {str(exc)[:200]}"
            if problem != self._latest_problem:
                self._latest_problem = problem
                self._ignored(
                    exc.code if isinstance(exc, ModelRegistryError) else "bad_latest", problem
                )
            return
        self._latest_problem = None
        if latest is not None and latest != self._seen_latest:
            self._seen_latest = latest
            self.request(latest, source="LATEST")

    def _announced(self, consumer: Consumer) -> Iterator[tuple[str, str | None]]:
        for msg in consumer.consume(num_messages=100, timeout=self._poll_interval_s):
            error = msg.error()
            if error is not None:
                self.metrics.model_watcher_errors.labels(kind="broker").inc()
                self._log_throttled(
                    "broker", "model announcements: broker error", {"error": str(error)[:200]}
                )
                continue
            wanted = self.parse_announcement(msg.value())
            if wanted is not None:
                yield wanted

    def parse_announcement(self, value: bytes | None) -> tuple[str, str | None] | None:
        """(version, digest) an announcement asks for, or None when it is refused outright
        (counted by reason, logged throttled)."""
        from services.model_registry.registry import BadAnnouncement, announcement_from_json

        try:
            event = announcement_from_json(value)
        except BadAnnouncement as exc:
            self._ignored(exc.code, str(exc))
            return None
        if event.model != MODEL_NAME:
            self._ignored("other_model", f"model {ascii(event.model)[:60]}")
            return None
        return event.version, event.digest

    def on_announcement(self, value: bytes | None) -> None:
        """Act on one record of `fraudstream_models` as the watcher does."""
        wanted = self.parse_announcement(value)
        if wanted is not None:
            self.request(*wanted, source="topic")

    def _ignored(self, reason: str, detail: str) -> None:
        """An announcement refused before it named anything loadable (never retried)."""
        self.metrics.model_ignored.labels(reason=reason).inc()
        self._log_throttled(
            f"ignored:{reason}",
            "ignoring a model announcement; keeping the current model",
            {"reason": reason, "error": detail[:200], "current": self.current.version},
        )

    # ------------------------------------------------------------------ the consumer
    def _ensure_consumer(self, consumer: Consumer | None) -> Consumer | None:
        """The announcement reader, (re)created when missing and its backoff has passed; while
        it cannot be created, LATEST is still watched."""
        if consumer is not None or self._models_topic is None:
            return consumer
        if time.monotonic() < self._consumer_retry_at:
            return None
        try:
            consumer = self._announcement_consumer(self._models_topic)
        except Exception as exc:
            self._consumer_failed(exc)
            return None
        return consumer

    def _consumer_failed(self, exc: Exception) -> None:
        self._consumer_failures += 1
        self._consumer_retry_at = time.monotonic() + self._backoff(self._consumer_failures)
        self.metrics.model_watcher_errors.labels(kind=type(exc).__name__[:40]).inc()
        self._log_throttled(
            "consumer",
            "cannot follow model announcements now; watching models/LATEST meanwhile",
            {"error": str(exc)[:200], "failures": self._consumer_failures},
        )

    @staticmethod
    def _drop_consumer(consumer: Consumer | None) -> None:
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:  # closing a broken consumer may fail too
                log.debug(
                    "closing the announcement consumer failed",
                    extra={"fields": {"error": str(exc)}},
                )

    def _announcement_consumer(self, topic: str) -> Consumer:
        """A group-less reader of new announcements (starts at the end; commits nothing)."""
        from services.common.kafka import ensure_topic, make_consumer, topic_partitions

        ensure_topic(topic, bootstrap=self._bootstrap)
        consumer = make_consumer(
            f"fraudstream-score-models-{uuid.uuid4().hex[:8]}",
            self._bootstrap,
            **{"auto.offset.reset": "latest", "isolation.level": "read_uncommitted"},
        )
        try:
            # assign(), not subscribe(): no group to join or leave behind, and reading starts
            # at the end offsets of now (a new version is what counts, not the history).
            consumer.assign(
                [
                    TopicPartition(tp.topic, tp.partition, OFFSET_END)
                    for tp in topic_partitions(consumer, topic)
                ]
            )
        except BaseException:
            consumer.close()
            raise
        return consumer
