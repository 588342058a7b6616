"""The scorer: consume transactions, score them in micro-batches, write alerts exactly once.

The loop follows confluent-kafka-python's `examples/eos_transactions.py`, per micro-batch:
collect what the consumer has fetched, up to B records (intake.py: the batch closes as soon as
the consumer has nothing more, so a caught-up scorer never waits out a timeout), decode, one
model call, build alerts and dead letters; the batch joins the shared `Checkpoint`
(services/common/checkpoint.py, as the KSQL queries do), which begins a transaction if none is
open and sends the batch's offsets into it (`send_offsets_to_transaction`); produce; when the
batch was not full (caught up: latency first) or the checkpoint is due, commit
(`commit_transaction`, after the offsets again if more batches joined).
While the scorer is behind, one transaction spans several batches (a commit costs two broker
round trips), as Kafka Streams' commit.interval.ms does. Alerts, dead letters and input offsets
become visible together or not at all, so a crash at any point (SIGKILL included) re-reads
exactly the records whose results were not committed.

Rebalances: a revocation commits what is open (the generation is still valid inside the
callback) and drops the collected records of the revoked partitions; a commit that fails
because the group moved on aborts and rewinds. Broker trouble: the checkpoint retries retriable
errors and aborts and rewinds on abortable ones (`TransactionAborted`: read again); any other
Kafka error (a call still blocked, a fatal producer, a fenced static member) drops both clients
and starts new ones in the same process: the new producer's `init_transactions()` fences the
old one and aborts what it left open, the new consumer resumes from the committed offsets.

`--at-least-once` swaps the transaction for a producer flush followed by an offset commit: a
crash repeats the alerts produced since the last commit (docs/scorer.md).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import numpy as np
from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from services.common.avro.codec import AvroEncoder
from services.common.avro.decoder import DecodedBatch, FeatureDecoder, Rejections, warm_up
from services.common.avro.schemas import registry_client
from services.common.checkpoint import Checkpoint, TransactionAborted, is_fenced
from services.common.dlq import DeadLetter, dlq_headers
from services.common.errors import FraudstreamError
from services.common.kafka import ProducerStuck, produce, wait_for_broker
from services.common.process import freeze_startup_heap
from services.common.settings import get_settings
from services.model_registry.api import LoadedModel
from services.scorer.clients import (
    alert_encoder,
    scorer_consumer,
    scorer_producer,
    setup_topics,
    subscribe,
)
from services.scorer.config import ScorerConfig, ScoreResult
from services.scorer.intake import Batch, Intake
from services.scorer.metrics import ScorerMetrics
from services.scorer.models import ModelManager, registry_loader
from services.scorer.records import (
    ALERT_INPUT_FIELDS,
    Explanations,
    alert_key,
    alert_mask,
    encode_alerts,
    explain_alerts,
    make_alert,
    score_batch,
)

log = logging.getLogger("fraudstream.scorer")

SERVICE = "scorer"
RESTART_BACKOFF_S = 0.5
RESTART_BACKOFF_MAX_S = 10.0

Headers = list[tuple[str, str | bytes | None]]
Output = tuple[str, bytes | None, bytes | None, Headers | None]
"""(topic, key, value, headers) of one record to produce in the batch's transaction."""


class Scorer:
    """One scorer instance: a consumer in `group`, a (transactional) producer, a model."""

    def __init__(
        self,
        config: ScorerConfig | None = None,
        model_manager: ModelManager | None = None,
        on_batch: Callable[[ScoreResult], None] | None = None,
    ) -> None:
        self.config = cfg = config or ScorerConfig()
        self.metrics = ScorerMetrics()
        self.result = ScoreResult()
        self._on_batch = on_batch
        """called with the totals after each commit (which may cover several batches)"""
        self._stopping = threading.Event()
        self._intake = Intake(cfg.topic, cfg.batch_size, cfg.batch_timeout_ms)
        self._models = model_manager
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._checkpoint: Checkpoint | None = None
        self._next_lag_at = 0.0

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Ask the loop to finish the current batch, commit it, and return."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: finish and commit the batch in flight, then exit cleanly."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stopping after the current batch", extra={"fields": {"signal": signum}})
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> ScoreResult:
        """Score until stopped (or the end, with stop_at_end / max_records)."""
        cfg = self.config
        settings = get_settings()
        bootstrap = cfg.bootstrap or settings.bootstrap_servers
        wait_for_broker(bootstrap, timeout=15)
        setup_topics(cfg, bootstrap)
        registry = registry_client(cfg.schema_registry_url)
        decoder = FeatureDecoder(registry)
        encoder = alert_encoder(cfg, registry)
        models = self._models or self._default_models(bootstrap)
        models.attach_metrics(self.metrics)
        models.start()
        self.metrics.set_model(models.version, models.current.threshold)
        self.metrics.serve(cfg.metrics_port, cfg.metrics_host)
        consumer, producer = self._clients(bootstrap)
        warm_up()
        freeze_startup_heap(batch_objects=cfg.batch_size)
        started = time.monotonic()
        log.info(
            "scorer started",
            extra={
                "fields": {
                    "topic": cfg.topic,
                    "group": cfg.group,
                    "model": models.version,
                    "exactly_once": cfg.exactly_once,
                }
            },
        )
        try:
            self._run_clients(bootstrap, consumer, producer, decoder, encoder, models)
        finally:
            self.result.seconds = time.monotonic() - started
            models.stop()
            if self._producer is not None:
                self._producer.flush(30)
            if self._consumer is not None:
                self._consumer.close()
        log.info("scorer stopped", extra={"fields": self.result.summary()})
        return self.result

    def _run_clients(
        self,
        bootstrap: str,
        consumer: Consumer,
        producer: Producer,
        decoder: FeatureDecoder,
        encoder: AvroEncoder,
        models: ModelManager,
    ) -> None:
        """Run the loop; after a Kafka error that neither a retry nor an abort resolves, start
        again with new clients (a growing pause while nothing commits in between; new clients
        that cannot start yet, the broker still away, count as one more failure). A producer
        fenced twice without a commit in between means another scorer holds this instance id:
        that ends the run."""
        clients: tuple[Consumer, Producer] | None = (consumer, producer)
        failures, fenced = 0, False
        while True:
            commits = self.result.batches
            try:
                if clients is None:
                    clients = self._clients(bootstrap)
                self._loop(*clients, decoder, encoder, models)
                return
            except (KafkaException, ProducerStuck) as exc:  # neither retry nor abort helped
                progressed = self.result.batches > commits
                if is_fenced(exc) and fenced and not progressed:
                    raise FraudstreamError(f"scorer fenced by another instance: {exc}") from exc
                fenced = is_fenced(exc)
                failures = 1 if progressed else failures + 1
                pause = min(RESTART_BACKOFF_S * 2 ** (failures - 1), RESTART_BACKOFF_MAX_S)
                log.warning(
                    "new Kafka clients after an error: %s",
                    exc,
                    extra={"fields": {"error": str(exc), "pause_s": pause}},
                )
                self._drop_clients()
                clients = None
                if self._stopping.wait(pause):
                    return

    def _drop_clients(self) -> None:
        """Forget what is open (the next producer's init_transactions aborts it; the next
        consumer re-reads it from the committed offsets) and close the consumer. The old
        producer is not flushed: its transaction is fenced anyway."""
        self._checkpoint = None  # no commit from the revocation callback while closing
        self._intake.reset()
        self._producer = None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close()

    def _default_models(self, bootstrap: str) -> ModelManager:
        cfg = self.config
        load, latest = registry_loader(cfg.models_dir)
        return ModelManager(
            load,
            latest,
            cfg.model,
            bootstrap=bootstrap,
            models_topic=cfg.models_topic,
            poll_interval_s=cfg.model_poll_interval_s,
        )

    def _clients(self, bootstrap: str) -> tuple[Consumer, Producer]:
        """New clients (clients.py) and the checkpoint over them; subscribed."""
        cfg = self.config
        consumer = scorer_consumer(cfg, bootstrap)
        self._consumer = consumer  # closed by _drop_clients if the producer cannot start
        producer = scorer_producer(cfg, bootstrap)
        if cfg.stop_at_end:
            self._intake.read_ends(consumer)
        self._checkpoint = Checkpoint(
            consumer,
            producer,
            exactly_once=cfg.exactly_once,
            commit_interval_s=cfg.commit_interval_ms / 1000,
            commit_records=cfg.commit_records,
            owned=lambda: self._intake.assigned,
            on_abort=self._aborted,
        )
        subscribe(cfg, consumer, self._on_assign, self._on_revoke)
        self._consumer, self._producer = consumer, producer
        return consumer, producer

    # ------------------------------------------------------------------ rebalances
    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._intake.assign(keys)
        log.info(
            "partitions assigned", extra={"fields": {"partitions": sorted(p for _, p in keys)}}
        )

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        # What is produced commits while the partitions are still ours (and the group's
        # generation still valid); if that fails, the rest is rewound and the revoked
        # partitions are re-read by their next owner from the committed offsets.
        if self._checkpoint is not None:
            with contextlib.suppress(TransactionAborted):
                self._commit(self._checkpoint, skip=keys)
        self._intake.revoke(keys)
        log.info("partitions revoked", extra={"fields": {"partitions": sorted(p for _, p in keys)}})

    # ------------------------------------------------------------------ the loop
    def _loop(
        self,
        consumer: Consumer,
        _producer: Producer,
        decoder: FeatureDecoder,
        encoder: AvroEncoder,
        models: ModelManager,
    ) -> None:
        checkpoint, cfg = self._checkpoint, self.config
        assert checkpoint is not None, "_clients makes the checkpoint"
        while True:
            swapped = models.swap_if_ready()
            if swapped is not None:
                self.metrics.set_model(swapped.version, swapped.threshold)
            batch = self._intake.collect(consumer, self._stopping.is_set, cfg.stop_at_end)
            try:
                if batch.messages:
                    self._process(batch, checkpoint, decoder, encoder, models.current)
                # caught up (a batch not full): commit now, for latency
                if not batch.full or checkpoint.due():
                    self._commit(checkpoint)
                if self._finished(batch):
                    self._commit(checkpoint)
                    return
            except TransactionAborted:
                continue  # rewound: read again
            self._maybe_update_lag(consumer)

    def _finished(self, batch: Batch) -> bool:
        cfg = self.config
        if self._stopping.is_set():
            return not batch.messages
        if cfg.stop_at_end and self._intake.reached_end():
            return True
        return cfg.max_records is not None and self._intake.seen >= cfg.max_records

    def _commit(self, checkpoint: Checkpoint, skip: set[tuple[str, int]] | None = None) -> None:
        """Commit what is open (its batches are counted by their `after_commit` callbacks)."""
        started = time.perf_counter()
        if checkpoint.commit(skip or ()) is None:
            return
        self.metrics.commit_latency.observe(time.perf_counter() - started)
        if self._on_batch is not None:
            self._on_batch(self.result)

    def _aborted(self, aborted: TransactionAborted) -> None:
        """The checkpoint aborted the open transaction and sought its partitions back."""
        self.result.aborted += 1
        self.metrics.aborted.inc()
        self._intake.rewound(aborted.rewound)

    # ------------------------------------------------------------------ scoring
    def _process(
        self,
        batch: Batch,
        checkpoint: Checkpoint,
        decoder: FeatureDecoder,
        encoder: AvroEncoder,
        model: LoadedModel,
    ) -> None:
        """Score a batch and produce its alerts and dead letters into the checkpoint's
        transaction; its counters move once that commits."""
        started = time.perf_counter()
        messages = batch.messages
        decoded = decoder.decode([m.value() for m in messages])
        scores, parts = (
            score_batch(model, decoded.features, self.config.explain)
            if len(decoded.features)
            else (np.empty(0), None)
        )
        alerting = np.flatnonzero(alert_mask(scores, model.threshold))
        explained = explain_alerts(model, parts, decoded.features, alerting)
        outputs = self._alerts(decoded, alerting, scores, model, messages, encoder, explained)
        reasons: dict[str, int] = {}
        for index, why in decoded.rejected:
            msg = messages[index]
            letter = DeadLetter(
                str(why),
                msg.topic() or "",
                msg.partition() or 0,
                msg.offset() or 0,
                SERVICE,
                reason=why.code,
            )
            headers: Headers = list(dlq_headers(letter))
            outputs.append((self.config.dlq_topic, msg.key(), msg.value(), headers))
            reasons[why.code] = reasons.get(why.code, 0) + 1

        def account() -> None:
            self._account(
                batch, len(decoded.kept), len(alerting), decoded.rejected, reasons, model, started
            )

        # the batch joins before anything is produced, so an abort rewinds it too
        checkpoint.add(messages, self.config.topic, len(self._intake.assigned))
        checkpoint.after_commit(account)
        producer = checkpoint.producer
        with checkpoint.aborting():
            for topic, key, value, extra in outputs:
                produce(producer, topic, value, key, headers=extra)

    def _alerts(
        self,
        decoded: DecodedBatch,
        alerting: np.ndarray,
        scores: np.ndarray,
        model: LoadedModel,
        messages: list[Message],
        encoder: AvroEncoder,
        explained: Explanations | None = None,
    ) -> list[Output]:
        """The alert records of a batch: rows the columnar decoder read are encoded together
        (`encode_alerts`), any others (fastavro-decoded) one by one with `make_alert`."""
        topic, scored_at = self.config.alerts_topic, int(time.time() * 1000)
        inputs = decoded.kept[alerting]
        values: dict[int, bytes] = {}
        for batch, rows, which in decoded.columnar_rows(inputs):
            encoded = encode_alerts(
                batch,
                rows,
                scores[alerting[which]],
                model.threshold,
                model.version,
                scored_at,
                encoder.header,
                None if explained is None else explained.take(which),
            )
            if encoded is not None:
                values.update(zip(inputs[which].tolist(), encoded, strict=True))
        outputs: list[Output] = []
        for j, (row, index) in enumerate(zip(alerting.tolist(), inputs.tolist(), strict=True)):
            record = None
            value = values.get(index)
            if value is None:
                record = decoded.record(index, ALERT_INPUT_FIELDS)
                amount = _amount(record, float(decoded.features[row, -1]))
                alert = make_alert(
                    record,
                    amount,
                    float(scores[row]),
                    model.threshold,
                    model.version,
                    scored_at,
                    None if explained is None else explained.record(j),
                )
                value = encoder.encode(alert)
            key = messages[index].key()
            if key is None:
                key = alert_key(record or decoded.record(index, ("ID",)), None)
            outputs.append((topic, key, value, None))
        return outputs

    def _account(
        self,
        batch: Batch,
        scored: int,
        alerts: int,
        rejected: Rejections,
        reasons: dict[str, int],
        model: LoadedModel,
        started: float,
    ) -> None:
        r = self.result
        r.scored += scored
        r.alerts += alerts
        r.dead_letters += len(rejected)
        r.batches += 1
        r.versions[model.version] = r.versions.get(model.version, 0) + scored
        m = self.metrics
        m.records_in.inc(len(batch.messages))
        m.alerts_out.inc(alerts)
        for kind, count in reasons.items():
            m.dlq.labels(reason=kind).inc(count)
        m.batch_size.observe(len(batch.messages))
        m.batch_latency.observe(time.perf_counter() - started)
        if rejected:
            log.warning(
                "records sent to the DLQ",
                extra={"fields": {"count": len(rejected), "first_error": str(rejected[0][1])}},
            )

    # ------------------------------------------------------------------ lag
    def _maybe_update_lag(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now < self._next_lag_at or not self._intake.assigned:
            return
        self._next_lag_at = now + self.config.lag_interval_s
        for partition, lag in self._intake.lag(consumer).items():
            self.metrics.lag.labels(partition=str(partition)).set(lag)


def _amount(record: dict[str, Any], fallback: float) -> float:
    value = record.get("AMOUNT")
    try:
        return float(value) if value is not None else float(fallback)
    except (TypeError, ValueError):
        return float(fallback)


def score_stream(config: ScorerConfig | None = None, **overrides: Any) -> ScoreResult:
    """Python API for the pipeline command and the notebook: `score_stream(stop_at_end=True)`."""
    cfg = config or ScorerConfig()
    for name, value in overrides.items():
        if not hasattr(cfg, name):
            raise TypeError(f"unknown scorer setting {name!r}")
        setattr(cfg, name, value)
    return Scorer(cfg).run()


__all__ = ["ScoreResult", "Scorer", "ScorerConfig", "score_stream"]
