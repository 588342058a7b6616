"""Which model scores the next batch: the pinned or latest version, and hot reload.

A background thread watches two signals: announcements on `fraudstream_models` and changes of
`models/LATEST`. When either names a version other than the one in use, the thread loads it
(TensorFlow load and trace take seconds) and parks it as *pending*. The scoring loop calls
`swap_if_ready()` between batches only, so every record of a batch is scored by one version, and
the switch neither skips nor repeats a record: offsets are untouched by it. (The watcher is in
`model_watcher.py`; this module loads, retries and swaps.)

Both signals are untrusted: anyone who can write the topic can announce anything, and LATEST may
hold garbage. An announcement is parsed bounded and strictly, and acted on only through the
registry, which loads a version only if its name is valid, it lies inside the models directory
and its files match the manifest recorded at registration (and the announced digest). Whatever is
refused is logged (throttled), counted in `fraudstream_scorer_model_announcements_ignored` by
reason, and the current model stays. A version that could not be loaded but might become
loadable (unknown yet, half copied, unreadable) is retried with exponential backoff; the
watcher itself survives any error and backs off, so hot reload never dies silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.common.logs import LogThrottle
from services.model_registry.api import LATEST_ALIAS, LoadedModel
from services.model_registry.errors import ModelRegistryError
from services.scorer.metrics import ScorerMetrics
from services.scorer.model_watcher import ModelWatcher

log = logging.getLogger("fraudstream.scorer.models")

NOT_RETRIED = frozenset({"bad_version"})
"""Refusal reasons that no later attempt can change (the name itself is wrong)."""
MAX_WANTED = 8
"""Versions waiting for a retry at most: an outsider announcing many names cannot grow it."""


class Loader(Protocol):
    """Loads a version by name ('latest' or an id). `digest`: the announced manifest digest
    (refuse unless it matches); `pinned`: the operator named it explicitly (a version without a
    manifest may load)."""

    def __call__(
        self, version: str, digest: str | None = None, pinned: bool = False
    ) -> LoadedModel: ...


def registry_loader(models_dir: Path | None = None) -> tuple[Loader, Callable[[], str | None]]:
    """(load, latest) backed by the on-disk model registry."""
    from services.model_registry.registry import ModelRegistry

    registry = ModelRegistry(models_dir)

    def load(version: str, digest: str | None = None, pinned: bool = False) -> LoadedModel:
        return registry.load(version, digest=digest, allow_unverified=pinned)

    return load, registry.latest


def refusal_reason(exc: BaseException) -> str:
    """The metric label for why a version was not loaded: the registry's error code, or
    `load_failed` for anything else (a broken file that the loader itself choked on)."""
    return exc.code if isinstance(exc, ModelRegistryError) else "load_failed"


@dataclass
class _Wanted:
    """A version some signal asked for that is not loaded yet."""

    version: str
    digest: str | None
    source: str
    seq: int
    attempts: int = 0
    next_at: float = 0.0
    delay_s: float = 0.0


class ModelManager(ModelWatcher):
    """Holds the model in use and, unless pinned, follows new versions in the background (the
    watcher itself: `model_watcher.ModelWatcher`)."""

    def __init__(
        self,
        load: Loader,
        latest: Callable[[], str | None],
        version: str = LATEST_ALIAS,
        bootstrap: str | None = None,
        models_topic: str | None = None,
        poll_interval_s: float = 1.0,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        self._load = load
        self._latest = latest
        self.pinned = version != LATEST_ALIAS
        self.current: LoadedModel = load(version, pinned=self.pinned)
        self.metrics = ScorerMetrics()
        self._seen_latest: str | None = self.current.version if not self.pinned else None
        self._latest_problem: str | None = None
        self._pending: LoadedModel | None = None
        self._pending_seq = 0
        self._wanted: dict[tuple[str, str | None], _Wanted] = {}
        self._seq = 0
        self._lock = threading.Lock()
        self._loading = threading.Lock()
        """one load at a time (the watcher's and a test's request() may meet)"""
        self._stop = threading.Event()
        self._bootstrap = bootstrap
        self._models_topic = models_topic
        self._poll_interval_s = poll_interval_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._consumer_retry_at = 0.0
        self._consumer_failures = 0
        self._throttle = LogThrottle()
        self._thread: threading.Thread | None = None

    @property
    def version(self) -> str:
        return self.current.version

    def attach_metrics(self, metrics: ScorerMetrics) -> None:
        """Count into the scorer's metrics (before start())."""
        self.metrics = metrics

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

    # ------------------------------------------------------------------ requests
    def request(self, version: str, digest: str | None = None, source: str = "request") -> None:
        """Ask for `version` (the watcher calls this; tests may too): try to load it now, and
        later again with backoff while it cannot be loaded for a reason that may pass."""
        with self._lock:
            pending = self._pending.version if self._pending is not None else None
            if version in (self.current.version, pending):
                return
            if (version, digest) not in self._wanted:
                self._seq += 1
                self._wanted[(version, digest)] = _Wanted(version, digest, source, self._seq)
                while len(self._wanted) > MAX_WANTED:  # forget the oldest ask
                    del self._wanted[next(iter(self._wanted))]
        self._attempt_due()

    def _attempt_due(self) -> None:
        """Try the wanted versions whose time has come, newest ask first, until one loads."""
        with self._loading:
            now = time.monotonic()
            with self._lock:
                due = sorted(
                    (w for w in self._wanted.values() if w.next_at <= now),
                    key=lambda w: w.seq,
                    reverse=True,
                )
            for wanted in due:
                if self._stop.is_set() or self._try_load(wanted):
                    return

    def _try_load(self, wanted: _Wanted) -> bool:
        try:
            model = self._load(wanted.version, digest=wanted.digest)
        except Exception as exc:
            self._refused(wanted, exc)
            return False
        with self._lock:
            if wanted.seq > self._pending_seq or self._pending is None:
                self._pending, self._pending_seq = model, wanted.seq
            # an older ask is superseded by a newer version that loaded
            for key in [k for k, w in self._wanted.items() if w.seq <= wanted.seq]:
                del self._wanted[key]
        log.info(
            "model loaded, switching at the next batch",
            extra={"fields": {"version": wanted.version, "source": wanted.source}},
        )
        return True

    def _refused(self, wanted: _Wanted, exc: Exception) -> None:
        reason = refusal_reason(exc)
        retried = reason not in NOT_RETRIED
        if wanted.attempts == 0:
            self.metrics.model_ignored.labels(reason=reason).inc()
        else:
            self.metrics.model_load_retries.inc()
        wanted.attempts += 1
        wanted.delay_s = min(self._retry_max_s, max(self._retry_initial_s, wanted.delay_s * 2))
        wanted.next_at = time.monotonic() + wanted.delay_s
        if not retried:
            with self._lock:
                self._wanted.pop((wanted.version, wanted.digest), None)
        self._log_throttled(
            f"refused:{reason}",
            "announced model not loaded; keeping the current one",
            {
                "version": ascii(wanted.version)[:80],
                "source": wanted.source,
                "reason": reason,
                "error": str(exc)[:200],
                "attempt": wanted.attempts,
                "retry_in_s": round(wanted.delay_s, 1) if retried else None,
                "current": self.current.version,
            },
        )

    def _log_throttled(self, key: str, message: str, fields: dict[str, object]) -> None:
        allowed, dropped = self._throttle.allow(key)
        if allowed:
            log.warning(message, extra={"fields": {**fields, "suppressed": dropped}})
