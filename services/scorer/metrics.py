"""Prometheus metrics of the scorer, served at http://HOST:PORT/metrics (default port 9464).

Each Scorer owns its registry, so several scorers in one process (tests, the notebook) never
collide on metric names. HOST is 127.0.0.1 like every server here, unless
`--metrics-host` or FRAUDSTREAM_METRICS_HOST says otherwise: in a container it must be 0.0.0.0
for Prometheus (another container) to scrape it.
"""

from __future__ import annotations

import os

DEFAULT_METRICS_PORT = 9464
METRICS_HOST_ENV = "FRAUDSTREAM_METRICS_HOST"
METRICS_PORT_ENV = "FRAUDSTREAM_METRICS_PORT"
"""`fraudstream score --metrics-port` from the environment (the compose rehearsal maps the
container's port to a free one with it, as Docker maps published ports)."""
DEFAULT_METRICS_HOST = "127.0.0.1"

_BATCH_SIZES = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
_LATENCIES = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ScorerMetrics:
    """Records in, alerts out, dead letters, batch size and latency, commit time, model version,
    lag, and the model announcements ignored (with why)."""

    def __init__(self) -> None:
        # prometheus_client is imported here, not at the top: `fraudstream --help` and every
        # command but `score` read this module's constants only
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.records_in = Counter(
            "fraudstream_scorer_records", "Input records consumed and committed", registry=r
        )
        self.alerts_out = Counter(
            "fraudstream_scorer_alerts", "Alerts written to the alerts topic", registry=r
        )
        self.dlq = Counter(
            "fraudstream_scorer_dlq",
            "Bad records sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.aborted = Counter(
            "fraudstream_scorer_aborted_batches", "Batches aborted and re-read", registry=r
        )
        self.batch_size = Histogram(
            "fraudstream_scorer_batch_size",
            "Records per micro-batch",
            buckets=_BATCH_SIZES,
            registry=r,
        )
        self.batch_latency = Histogram(
            "fraudstream_scorer_batch_seconds",
            "Decode + score + produce + commit time of one micro-batch",
            buckets=_LATENCIES,
            registry=r,
        )
        self.commit_latency = Histogram(
            "fraudstream_scorer_commit_seconds",
            "One commit: commit_transaction, after send_offsets_to_transaction when several "
            "batches joined (a one-batch transaction sent its offsets as it began; exactly-once), "
            "or flush + offset commit (at-least-once); its tail is much of the latency tail",
            buckets=_LATENCIES,
            registry=r,
        )
        self.model_info = Gauge(
            "fraudstream_scorer_model_info",
            "1 for the model version in use",
            ["version"],
            registry=r,
        )
        self.threshold = Gauge(
            "fraudstream_scorer_model_threshold", "Alert threshold of the model in use", registry=r
        )
        self.lag = Gauge(
            "fraudstream_scorer_consumer_lag",
            "High watermark minus position",
            ["partition"],
            registry=r,
        )
        self.model_ignored = Counter(
            "fraudstream_scorer_model_announcements_ignored",
            "Model announcements (topic or LATEST) not acted on, by reason",
            ["reason"],
            registry=r,
        )
        self.model_load_retries = Counter(
            "fraudstream_scorer_model_load_retries",
            "Further attempts to load an announced version that was not loadable before",
            registry=r,
        )
        self.model_watcher_errors = Counter(
            "fraudstream_scorer_model_watcher_errors",
            "Errors the model watcher survived (broker, LATEST, unexpected), by kind",
            ["kind"],
            registry=r,
        )
        self._version: str | None = None

    def set_model(self, version: str, threshold: float) -> None:
        if self._version is not None:
            self.model_info.remove(self._version)
        self.model_info.labels(version=version).set(1)
        self.threshold.set(threshold)
        self._version = version

    def serve(self, port: int, addr: str | None = None) -> None:
        """Expose /metrics on `addr` (default: `metrics_host()`); port 0 or negative: not
        served."""
        if port > 0:
            from prometheus_client import start_http_server

            start_http_server(port, addr=metrics_host(addr), registry=self.registry)


def metrics_host(explicit: str | None = None) -> str:
    """The address /metrics binds: `explicit`, else FRAUDSTREAM_METRICS_HOST, else 127.0.0.1."""
    return explicit or os.environ.get(METRICS_HOST_ENV, "").strip() or DEFAULT_METRICS_HOST


def check_metrics_port(host: str | None, port: int) -> None:
    """Refuse a busy /metrics port before any work starts, with the way out, instead of a
    scorer that dies with `Address already in use` after the stack is up."""
    from services.common.errors import FraudstreamError
    from services.common.process import port_in_use

    bound = metrics_host(host)
    probe = "127.0.0.1" if bound in ("0.0.0.0", "") else bound
    if port > 0 and port_in_use(probe, port):
        raise FraudstreamError(
            f"metrics port {bound}:{port} is in use (another scorer?); pass --metrics-port N or 0"
        )
