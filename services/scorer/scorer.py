"""The scorer: consume transactions, score them in micro-batches, write alerts exactly once.

The loop follows confluent-kafka-python's `examples/eos_transactions.py` consume-transform-produce
pattern, per micro-batch instead of per 100 messages:

    collect up to B records or T ms  (read_committed consumer, no auto-commit)
    decode the batch, one model call, build alerts and dead letters
    begin_transaction (if none is open) → produce alerts + dead letters
    when the batch was not full, or the transaction is commit_interval_ms old:
      send_offsets_to_transaction(next offsets, consumer_group_metadata) → commit_transaction

A commit costs two broker round trips, so while the scorer is behind (full batches) one
transaction spans several batches, as Kafka Streams' commit.interval.ms does; once it has
caught up, every batch commits at once. Alerts, dead letters and the input offsets become
visible together or not at all, so a crash at any point (SIGKILL included) re-reads exactly the
records whose results were not committed. The
transactional id is stable per (group, input topic, instance): a restarted scorer's
`init_transactions()` aborts whatever its killed predecessor left open instead of waiting for the
transaction timeout, and the consumer group metadata fences a zombie after a rebalance (KIP-447).

Rebalances: a revocation commits what is open (the generation is still valid inside the
callback) and drops the collected records of the revoked partitions (neither produced nor
committed; whoever owns the partition next reads them from the committed offset). A commit that
fails because the group moved on is aborted and the open batches' partitions are rewound.

Broker trouble (services/common/transactions.py, as the KSQL queries do): retriable errors are
retried, abortable ones abort and rewind, and the commit's calls are bounded (librdkafka's
`send_offsets_to_transaction` can block past its own timeout after a broker SIGKILL,
confluentinc/librdkafka#5456). Any other Kafka error (a call still blocked, a producer in a fatal
state, a fenced static member) drops both clients and starts new ones in the same process: the
new producer's `init_transactions()` fences the old one and aborts what it left open, and the new
consumer resumes from the committed offsets, so nothing is lost or written twice.

`--at-least-once` swaps the transaction for an idempotent producer flush followed by a consumer
offset commit: no transaction markers, but a crash repeats the alerts produced since the last
commit (and with transactions spanning batches it is hardly faster: two round trips a commit
either way).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from services.common.avro.codec import AvroEncoder
from services.common.avro.decoder import DecodedBatch, FeatureDecoder, Rejections, warm_up
from services.common.avro.schemas import registry_client
from services.common.dlq import DeadLetter, dlq_headers
from services.common.errors import FraudstreamError
from services.common.kafka import (
    consumer_config,
    ensure_topic,
    first_offsets,
    next_offsets,
    producer_config,
    wait_for_broker,
)
from services.common.process import freeze_startup_heap
from services.common.settings import get_settings
from services.common.topics import ALERTS_TOPIC, DLQ_TOPIC, MODELS_TOPIC, SCORING_TOPIC
from services.common.transactions import (
    abort_transaction,
    commit_transaction,
    is_fenced,
    requires_abort,
)
from services.model_registry.api import LoadedModel
from services.scorer.metrics import ScorerMetrics
from services.scorer.models import ModelManager, registry_loader
from services.scorer.records import (
    ALERT_INPUT_FIELDS,
    alert_key,
    alert_mask,
    alert_schema,
    encode_alerts,
    make_alert,
)

log = logging.getLogger("fraudstream.scorer")

SERVICE = "scorer"
RESTART_BACKOFF_S = 0.5
RESTART_BACKOFF_MAX_S = 10.0

Headers = list[tuple[str, str | bytes | None]]
Output = tuple[str, bytes | None, bytes | None, Headers | None]
"""(topic, key, value, headers) of one record to produce in the batch's transaction."""


@dataclass
class ScorerConfig:
    """Everything `fraudstream score` can set; the defaults are the production ones."""

    topic: str = SCORING_TOPIC
    alerts_topic: str = ALERTS_TOPIC
    dlq_topic: str = DLQ_TOPIC
    models_topic: str | None = MODELS_TOPIC
    group: str = "fraudstream-score"
    model: str = "latest"
    exactly_once: bool = True
    from_beginning: bool = False
    stop_at_end: bool = False
    batch_size: int = 10000
    batch_timeout_ms: int = 100
    commit_interval_ms: int = 100
    """While batches come full, one transaction spans them for up to this long (or
    commit_records): a commit costs two broker round trips. A batch that is not full (the
    scorer has caught up) commits at once, so alerts are never held back at low rates."""
    commit_records: int = 50_000
    instance_id: str = "0"
    metrics_port: int = 0
    bootstrap: str | None = None
    schema_registry_url: str | None = None
    models_dir: Path | None = None
    model_poll_interval_s: float = 1.0
    lag_interval_s: float = 5.0
    max_records: int | None = None
    """Stop after about this many records (whole batches; tests and benchmarks)."""

    @property
    def transactional_id(self) -> str:
        return f"fraudstream-score.{self.group}.{self.topic}.{self.instance_id}"


@dataclass
class ScoreResult:
    """What one run did (also the numbers of the CLI's last line)."""

    scored: int = 0
    alerts: int = 0
    dead_letters: int = 0
    batches: int = 0
    aborted: int = 0
    seconds: float = 0.0
    versions: dict[str, int] = field(default_factory=dict)
    """records scored per model version."""

    @property
    def rate(self) -> float:
        return (self.scored + self.dead_letters) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Batch:
    messages: list[Message]
    first: dict[tuple[str, int], int]
    next: dict[tuple[str, int], int]


@dataclass
class _Open:
    """What is produced but not committed yet: the open transaction (exactly-once) or the
    unflushed batches (at-least-once)."""

    first: dict[tuple[str, int], int] = field(default_factory=dict)
    """the earliest offset per partition: where to seek back if it aborts"""
    next: dict[tuple[str, int], int] = field(default_factory=dict)
    """the offsets to commit"""
    records: int = 0
    since: float = 0.0
    accounts: list[Callable[[], None]] = field(default_factory=list)
    """counters and callbacks of its batches, run once it is committed"""


class _AbortBatch(Exception):
    """The open transaction could not commit; it was aborted and its batches rewound."""


class Scorer:
    """One scorer instance: a consumer in `group`, a (transactional) producer, a model."""

    def __init__(
        self,
        config: ScorerConfig | None = None,
        model_manager: ModelManager | None = None,
        on_batch: Callable[[ScoreResult], None] | None = None,
    ) -> None:
        self.config = config or ScorerConfig()
        self.metrics = ScorerMetrics()
        self.result = ScoreResult()
        self._on_batch = on_batch
        """called with the totals after each commit (which may cover several batches)"""
        self._stopping = threading.Event()
        self._revoked: set[tuple[str, int]] = set()
        self._assigned: set[tuple[str, int]] = set()
        self._at_end: set[tuple[str, int]] = set()
        self._ends: dict[int, int] = {}
        self._models = model_manager
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._next_lag_at = 0.0
        self._open = _Open()
        self._rewound = False
        self._seen = 0

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
        self._setup_topics(bootstrap)
        registry = registry_client(cfg.schema_registry_url)
        decoder = FeatureDecoder(registry)
        encoder = self._alert_encoder(registry)
        models = self._models or self._default_models(bootstrap)
        models.attach_metrics(self.metrics)
        models.start()
        self.metrics.set_model(models.version, models.current.threshold)
        self.metrics.serve(cfg.metrics_port)
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
        log.info("scorer stopped", extra={"fields": self._summary()})
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
            except KafkaException as exc:
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
        self._open = _Open()
        self._rewound = False
        self._assigned.clear()
        self._at_end.clear()
        self._revoked.clear()
        self._producer = None  # no commit from the revocation callback while closing
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close()

    def _summary(self) -> dict[str, Any]:
        r = self.result
        return {
            "scored": r.scored,
            "alerts": r.alerts,
            "dead_letters": r.dead_letters,
            "batches": r.batches,
            "aborted": r.aborted,
            "versions": r.versions,
        }

    def _setup_topics(self, bootstrap: str) -> None:
        cfg = self.config
        for topic in (cfg.alerts_topic, cfg.dlq_topic):
            ensure_topic(topic, bootstrap=bootstrap)

    def _alert_encoder(self, registry: Any) -> AvroEncoder:
        subject = f"{self.config.alerts_topic}-value"
        try:
            return AvroEncoder(registry, subject, alert_schema())
        except Exception as exc:
            raise FraudstreamError(
                f"cannot register the alert schema under {subject}: {exc}"
            ) from exc

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
        cfg = self.config
        reset = "earliest" if cfg.from_beginning else "latest"
        consumer = Consumer(
            consumer_config(
                cfg.group,
                bootstrap,
                **{
                    "auto.offset.reset": reset,
                    "enable.partition.eof": True,
                    # Static membership: a restarted scorer (same instance id) takes its
                    # partitions back at once instead of waiting out the session timeout.
                    "group.instance.id": cfg.transactional_id,
                    # A few batches of prefetch, not librdkafka's 64 MB: the scorer's memory
                    # budget (< 1 GB) is mostly TensorFlow's already.
                    "queued.max.messages.kbytes": 16 * 1024,
                },
            )
        )
        extra: dict[str, Any] = {"linger.ms": 5}
        if cfg.exactly_once:
            extra["transactional.id"] = cfg.transactional_id
            extra["transaction.timeout.ms"] = 60_000
        self._consumer = consumer  # closed by _drop_clients if the producer cannot start
        producer = Producer(producer_config(bootstrap, **extra))
        if cfg.exactly_once:
            producer.init_transactions(60)
        if cfg.stop_at_end:
            from services.common.kafka import end_offsets

            self._ends = end_offsets(consumer, cfg.topic)
        consumer.subscribe(
            [cfg.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self._consumer, self._producer = consumer, producer
        return consumer, producer

    # ------------------------------------------------------------------ rebalances
    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._assigned |= keys
        self._at_end -= keys
        log.info(
            "partitions assigned", extra={"fields": {"partitions": sorted(p for _, p in keys)}}
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        # What is produced commits while the partitions are still ours (and the group's
        # generation still valid); if that fails, the rest is rewound and the revoked
        # partitions are re-read by their next owner from the committed offsets.
        if self._producer is not None:
            with contextlib.suppress(_AbortBatch):
                self._commit_open(consumer, self._producer, skip=keys)
        self._assigned -= keys
        self._revoked |= keys
        log.info("partitions revoked", extra={"fields": {"partitions": sorted(p for _, p in keys)}})

    # ------------------------------------------------------------------ the loop
    def _loop(
        self,
        consumer: Consumer,
        producer: Producer,
        decoder: FeatureDecoder,
        encoder: AvroEncoder,
        models: ModelManager,
    ) -> None:
        while True:
            swapped = models.swap_if_ready()
            if swapped is not None:
                self.metrics.set_model(swapped.version, swapped.threshold)
            batch = self._collect(consumer)
            try:
                if batch.messages:
                    self._process(batch, consumer, producer, decoder, encoder, models.current)
                if self._should_commit(batch):
                    self._commit_open(consumer, producer)
                if self._finished(batch):
                    self._commit_open(consumer, producer)
                    return
            except _AbortBatch:
                continue  # rewound: read again
            self._maybe_update_lag(consumer)

    def _finished(self, batch: _Batch) -> bool:
        cfg = self.config
        if self._stopping.is_set():
            return not batch.messages
        if cfg.stop_at_end and self._reached_end():
            return True
        return cfg.max_records is not None and self._seen >= cfg.max_records

    def _collect(self, consumer: Consumer) -> _Batch:
        """Up to batch_size records or batch_timeout_ms, minus any of revoked partitions."""
        cfg = self.config
        messages: list[Message] = []
        deadline = time.monotonic() + cfg.batch_timeout_ms / 1000
        self._revoked.clear()
        while len(messages) < cfg.batch_size and not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            got = consumer.consume(num_messages=cfg.batch_size - len(messages), timeout=remaining)
            if self._rewound:
                # A commit failed during a rebalance and the consumer was sought back: what
                # was collected so far will be read again.
                self._rewound = False
                messages, got = [], []
            if self._revoked:
                # Collected before the revocation: not ours to commit any more.
                messages = [m for m in messages if (m.topic(), m.partition()) not in self._revoked]
                self._revoked.clear()
            errors = [m for m in got if m.error() is not None]
            if errors:
                got = [m for m in got if m.error() is None]
                self._handle_errors(errors)
            messages.extend(got)
            if cfg.stop_at_end and not got and self._reached_end():
                break
        partitions = len(self._assigned)
        first = {(cfg.topic, p): o for p, o in first_offsets(messages, partitions).items()}
        nxt = {(cfg.topic, p): o for p, o in next_offsets(messages, partitions).items()}
        for key, offset in nxt.items():
            if key[1] in self._ends and offset >= self._ends[key[1]]:
                self._at_end.add(key)
        return _Batch(messages, first, nxt)

    def _handle_errors(self, errors: list[Message]) -> None:
        for msg in errors:
            err = msg.error()
            if err is None:
                continue
            if err.code() == KafkaError._PARTITION_EOF:
                self._at_end.add((msg.topic() or "", msg.partition() or 0))
            elif err.fatal() or err.code() == KafkaError._FATAL:
                raise KafkaException(err)
            else:
                log.warning("consumer error", extra={"fields": {"error": str(err)}})

    def _reached_end(self) -> bool:
        return bool(self._assigned) and self._assigned <= self._at_end

    def _process(
        self,
        batch: _Batch,
        consumer: Consumer,
        producer: Producer,
        decoder: FeatureDecoder,
        encoder: AvroEncoder,
        model: LoadedModel,
    ) -> None:
        started = time.perf_counter()
        messages = batch.messages
        decoded = decoder.decode([m.value() for m in messages])
        scores = model.score(decoded.features) if len(decoded.features) else np.empty(0)
        alerting = np.flatnonzero(alert_mask(scores, model.threshold))
        outputs = self._alerts(decoded, alerting, scores, model, messages, encoder)
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
        self._seen += len(messages)

        def account() -> None:
            self._account(
                batch, len(decoded.kept), len(alerting), decoded.rejected, reasons, model, started
            )

        self._add(batch, consumer, producer, outputs, account)

    def _alerts(
        self,
        decoded: DecodedBatch,
        alerting: np.ndarray,
        scores: np.ndarray,
        model: LoadedModel,
        messages: list[Message],
        encoder: AvroEncoder,
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
            )
            if encoded is not None:
                values.update(zip(inputs[which].tolist(), encoded, strict=True))
        outputs: list[Output] = []
        for row, index in zip(alerting.tolist(), inputs.tolist(), strict=True):
            record = None
            value = values.get(index)
            if value is None:
                record = decoded.record(index, ALERT_INPUT_FIELDS)
                amount = _amount(record, float(decoded.features[row, -1]))
                alert = make_alert(
                    record, amount, float(scores[row]), model.threshold, model.version, scored_at
                )
                value = encoder.encode(alert)
            key = messages[index].key()
            if key is None:
                key = alert_key(record or decoded.record(index, ("ID",)), None)
            outputs.append((topic, key, value, None))
        return outputs

    def _account(
        self,
        batch: _Batch,
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

    # ------------------------------------------------------------------ committing
    def _add(
        self,
        batch: _Batch,
        consumer: Consumer,
        producer: Producer,
        outputs: list[Output],
        account: Callable[[], None],
    ) -> None:
        """Produce a batch's outputs into the open transaction (beginning one if needed)."""
        o = self._open
        starting = not o.accounts  # exactly-once: a transaction is open iff batches are
        if starting:
            o.since = time.monotonic()
        # the batch joins before anything is produced, so an abort rewinds it too
        for key, offset in batch.first.items():
            o.first[key] = min(offset, o.first.get(key, offset))
        o.next.update(batch.next)
        o.records += len(batch.messages)
        o.accounts.append(account)
        try:
            if starting and self.config.exactly_once:
                producer.begin_transaction()
            self._produce_all(producer, outputs)
        except KafkaException as exc:
            self._abort_if_required(exc, consumer, producer, set())
            raise

    def _should_commit(self, batch: _Batch) -> bool:
        """Something is open, and the last batch was not full (caught up: commit now, for
        latency) or the transaction has run long enough."""
        cfg, o = self.config, self._open
        return bool(o.accounts) and (
            len(batch.messages) < cfg.batch_size
            or o.records >= cfg.commit_records
            or time.monotonic() - o.since >= cfg.commit_interval_ms / 1000
        )

    def _commit_open(
        self, consumer: Consumer, producer: Producer, skip: set[tuple[str, int]] | None = None
    ) -> None:
        """Commit what is open: its outputs and its next offsets together (exactly-once), or
        flush then commit the offsets (at-least-once); then count its batches."""
        o = self._open
        if not o.accounts:
            return
        offsets = [TopicPartition(t, p, off) for (t, p), off in o.next.items()]
        try:
            if self.config.exactly_once:
                commit_transaction(producer, offsets, consumer.consumer_group_metadata())
            else:
                self._commit_at_least_once(consumer, producer, offsets)
        except KafkaException as exc:
            self._abort_if_required(exc, consumer, producer, skip or set())
            raise
        self._open = _Open()
        for account in o.accounts:
            account()
        if self._on_batch is not None:
            self._on_batch(self.result)

    def _abort_if_required(
        self,
        exc: KafkaException,
        consumer: Consumer,
        producer: Producer,
        skip: set[tuple[str, int]],
    ) -> None:
        """An abortable transaction error: abort, seek back to the open batches' first offsets
        and raise _AbortBatch (other errors are left to the caller to raise)."""
        if not (self.config.exactly_once and requires_abort(exc)):
            return
        log.warning(
            "transaction aborted; re-reading its batches", extra={"fields": {"error": str(exc)}}
        )
        abort_transaction(producer)
        self.result.aborted += 1
        self.metrics.aborted.inc()
        first, self._open = self._open.first, _Open()
        self._rewind(consumer, first, skip)
        self._at_end -= set(first)
        self._rewound = True
        raise _AbortBatch() from exc

    def _produce_all(
        self,
        producer: Producer,
        outputs: list[Output],
    ) -> None:
        for topic, key, value, headers in outputs:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)

    def _commit_at_least_once(
        self,
        consumer: Consumer,
        producer: Producer,
        offsets: list[TopicPartition],
    ) -> None:
        if producer.flush(60) > 0:
            raise FraudstreamError("alerts were not delivered within 60 s")
        owned = [tp for tp in offsets if (tp.topic, tp.partition) in self._assigned]
        if owned:
            try:
                consumer.commit(offsets=owned, asynchronous=False)
            except KafkaException as exc:
                log.warning(
                    "offset commit failed (batch will be re-read by the next owner)",
                    extra={"fields": {"error": str(exc)}},
                )

    def _rewind(
        self, consumer: Consumer, first: dict[tuple[str, int], int], skip: set[tuple[str, int]]
    ) -> None:
        """Seek the still-assigned partitions (but `skip`) back to these offsets."""
        for (topic, partition), offset in first.items():
            if (topic, partition) not in self._assigned or (topic, partition) in skip:
                continue
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning(
                    "seek failed", extra={"fields": {"partition": partition, "error": str(exc)}}
                )

    # ------------------------------------------------------------------ lag
    def _maybe_update_lag(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now < self._next_lag_at or not self._assigned:
            return
        self._next_lag_at = now + self.config.lag_interval_s
        try:
            tps = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
            for tp in consumer.position(tps):
                _low, high = consumer.get_watermark_offsets(tp, timeout=2, cached=False)
                position = (
                    tp.offset
                    if tp.offset not in (OFFSET_INVALID, OFFSET_BEGINNING, OFFSET_END)
                    else high
                )
                self.metrics.lag.labels(partition=str(tp.partition)).set(max(0, high - position))
        except KafkaException as exc:
            log.debug("lag not updated", extra={"fields": {"error": str(exc)}})


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
