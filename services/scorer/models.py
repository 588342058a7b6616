"""Which model scores the next batch: the pinned or latest version, and hot reload.

A background thread watches two signals: announcements on `fraudstream_models` and changes of
`models/LATEST`. When either names a version other than the one in use, the thread loads it
(TensorFlow load and trace take seconds) and parks it as *pending*. The scoring loop calls
`swap_if_ready()` between batches only, so every record of a batch is scored by one version, and
the switch neither skips nor repeats a record: offsets are untouched by it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from services.model_registry.api import MODEL_NAME, LoadedModel

log = logging.getLogger("fraudstream.scorer.models")

Loader = Callable[[str], LoadedModel]
"""Loads a version by name ('latest' or an id)."""


def registry_loader(models_dir: Path | None = None) -> tuple[Loader, Callable[[], str | None]]:
    """(load, latest) backed by the on-disk model registry."""
    from services.model_registry.registry import ModelRegistry

    registry = ModelRegistry(models_dir)

    def load(version: str) -> LoadedModel:
        return registry.load(version)

    return load, registry.latest


class ModelManager:
    """Holds the model in use and, unless pinned, follows new versions in the background."""

    def __init__(
        self,
        load: Loader,
        latest: Callable[[], str | None],
        version: str = "latest",
        bootstrap: str | None = None,
        models_topic: str | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._load = load
        self._latest = latest
        self.pinned = version != "latest"
        self.current: LoadedModel = load(version)
        self._seen_latest = latest()
        self._pending: LoadedModel | None = None
        self._wanted: str | None = None
        self._failed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bootstrap = bootstrap
        self._models_topic = models_topic
        self._poll_interval_s = poll_interval_s
        self._thread: threading.Thread | None = None

    @property
    def version(self) -> str:
        return self.current.version

    def start(self) -> None:
        """Start following new versions (no-op when pinned)."""
        if self.pinned or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def swap_if_ready(self) -> LoadedModel | None:
        """Called between batches: take over a loaded new version, return it (else None)."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None or pending.version == self.current.version:
            return None
        previous = self.current.version
        self.current = pending
        log.info(
            "model switched",
            extra={
                "fields": {"from": previous, "to": pending.version, "threshold": pending.threshold}
            },
        )
        return pending

    def request(self, version: str) -> None:
        """Load `version` in the background (the watcher calls this; tests may too)."""
        with self._lock:
            pending = self._pending.version if self._pending is not None else None
            if version in (self.current.version, self._wanted, pending) or version in self._failed:
                return
            self._wanted = version
        try:
            model = self._load(version)
        except Exception as exc:
            log.error(
                "cannot load announced model; keeping the current one",
                extra={"fields": {"version": version, "error": str(exc)}},
            )
            with self._lock:
                self._failed.add(version)
                self._wanted = None
            return
        with self._lock:
            self._pending = model
            self._wanted = None
        log.info(
            "model loaded, switching at the next batch", extra={"fields": {"version": version}}
        )

    def _watch(self) -> None:
        consumer = self._announcement_consumer()
        try:
            while not self._stop.is_set():
                for version in self._new_versions(consumer):
                    self.request(version)
                if consumer is None:
                    self._stop.wait(self._poll_interval_s)
        finally:
            if consumer is not None:
                consumer.close()

    def _new_versions(self, consumer: Consumer | None) -> list[str]:
        versions: list[str] = []
        if consumer is not None:
            versions.extend(self._announced(consumer))
        latest = self._safe_latest()
        if latest is not None and latest != self._seen_latest:
            self._seen_latest = latest
            versions.append(latest)
        return versions

    def _safe_latest(self) -> str | None:
        try:
            return self._latest()
        except OSError:
            return None

    def _announced(self, consumer: Consumer) -> list[str]:
        from services.model_registry.registry import announcement_from_json

        found: list[str] = []
        for msg in consumer.consume(num_messages=100, timeout=self._poll_interval_s):
            if msg.error() is not None:
                continue
            try:
                event = announcement_from_json(msg.value() or b"")
            except ValueError as exc:
                log.warning(
                    "ignoring a malformed model announcement", extra={"fields": {"error": str(exc)}}
                )
                continue
            if event.model == MODEL_NAME:
                found.append(event.version)
        return found

    def _announcement_consumer(self) -> Consumer | None:
        """A group-less reader of new announcements (starts at the end; commits nothing)."""
        if self._models_topic is None:
            return None
        from services.common.kafka import ensure_topic, make_consumer, topic_partitions

        try:
            ensure_topic(self._models_topic, bootstrap=self._bootstrap)
            consumer = make_consumer(
                f"fraudstream-score-models-{uuid.uuid4().hex[:8]}",
                self._bootstrap,
                **{"auto.offset.reset": "latest", "isolation.level": "read_uncommitted"},
            )
            # assign(), not subscribe(): no group to join or leave behind, and reading starts
            # at the end offsets of now (a new version is what counts, not the history).
            consumer.assign(
                [
                    TopicPartition(tp.topic, tp.partition, OFFSET_END)
                    for tp in topic_partitions(consumer, self._models_topic)
                ]
            )
            return consumer
        except Exception as exc:
            log.warning(
                "cannot follow model announcements; watching models/LATEST only",
                extra={"fields": {"error": str(exc)}},
            )
            return None
