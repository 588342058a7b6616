"""Replaying a CSV into `creditcardfraud_source`: the engine behind `fraudstream produce`.

Everything happens per block of lines: reading, checking, building values, pacing, and queueing
(one `produce_many` call per block). A reader thread prepares the next blocks meanwhile. Delivery
reports are asked for on errors only, so a healthy run pays no per-record callback.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from services.common.dlq import DLQ_MAX_RECORD_BYTES, DeadLetter, send_to_dlq
from services.common.kafka import (
    broker_topics,
    ensure_topic,
    make_producer,
    produce_many,
    topic_max_message_bytes,
)
from services.common.topics import DLQ_TOPIC, SOURCE_TOPIC
from services.producer.csv_source import CsvSource
from services.producer.errors import ProducerError
from services.producer.limits import DEFAULT_MAX_LINE_BYTES
from services.producer.rows import BadLine, Batch

if TYPE_CHECKING:
    import numpy as np

SOURCE_PARTITIONS = 3
KEEP_BAD_LINES = 1000
"""At most this many refused lines are kept in the result (all of them go to the DLQ)."""
_MAX_SLEEP = 0.2
_MIN_SLEEP = 0.001
"""The shortest wait of a paced replay: librdkafka's poll counts whole milliseconds, so a
shorter timeout is a non-blocking poll, and waiting for each record of a fast rate (one every
50 µs at 20,000/s) that way spun a whole core. Records due within it go out together, which a
producer's linger (20 ms by default) batches anyway."""


@dataclass
class ProduceResult:
    """What a replay did: records sent, lines refused, and how fast."""

    topic: str
    records: int = 0
    bad: int = 0
    failed: int = 0
    """Records the broker did not acknowledge (should be 0)."""
    dlq_failed: int = 0
    """Bad lines the DLQ topic did not acknowledge (should be 0)."""
    last_error: str = ""
    seconds: float = 0.0
    interrupted: bool = False
    bad_lines: list[BadLine] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """The command's last line (DESIGN.md)."""
        return f"produced {self.records} records in {self.seconds:.2f} s ({self.rate:.0f} rec/s)"


@dataclass
class _Pace:
    """When each record is due, relative to the start of the replay: `--rate` spaces records
    evenly, `--speedup` follows their `Time` column X times faster than real time."""

    rate: float | None
    speedup: float | None
    first_time: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.rate) or bool(self.speedup)

    def due(self, batch: Batch, sent_before: int) -> np.ndarray:
        """Seconds after the start at which each record of the batch is due, never falling."""
        import numpy as np  # only a paced replay needs it

        if self.rate:
            return (sent_before + np.arange(len(batch), dtype=np.float64)) / self.rate
        assert self.speedup
        if self.first_time is None and len(batch):
            self.first_time = float(batch.times[0])
        due = (np.asarray(batch.times) - (self.first_time or 0.0)) / self.speedup
        return np.maximum.accumulate(np.maximum(due, 0.0)) if len(due) else due


class _HeldLog:
    """The replay producer's librdkafka log, held back until the broker has answered the probe.

    The producer is made before the probe, so that its connection and producer id are ready
    by the first record: made after it, the first record waited 0.5 s for the id in most runs
    here (librdkafka tries again on a timer when its first connection is the bootstrap one,
    confluentinc/librdkafka#5032). Until the probe passes, the producer's connection errors
    say nothing the probe's own error does not, so they are dropped, not printed twice."""

    def __init__(self) -> None:
        self.open = False
        self._log = logging.getLogger("fraudstream.producer.librdkafka")

    def log(self, level: int, message: str, *args: object) -> None:
        """What librdkafka calls for each line of its log (confluent-kafka's `logger`)."""
        if self.open:
            self._log.log(level, message, *args)


class _StopRequest:
    """Ctrl-C during a replay: finish the current block, flush, report (a second one aborts).

    Checking a flag between blocks keeps the count exact: a KeyboardInterrupt raised inside the
    hot loop could not tell whether the record at hand was queued.
    """

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, _signum: int, _frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator[_StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers belong to the main thread; Ctrl-C acts as usual there
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


class _DeliveryErrors:
    """Counts records the broker refused, source and DLQ apart (librdkafka calls this for
    errors only, as `delivery.report.only.error` asks)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.count = 0
        self.dlq_count = 0
        self.last: KafkaError | None = None

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        self.last = err
        if msg.topic() == self.topic:
            self.count += 1
        else:
            self.dlq_count += 1

    def refused(self, _index: int, exc: KafkaException) -> None:
        """A record `produce` refused locally for a reason other than a full queue."""
        self.count += 1
        self.last = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


def produce_csv(
    path: str | Path,
    topic: str = SOURCE_TOPIC,
    *,
    limit: int | None = None,
    rate: float | None = None,
    speedup: float | None = None,
    bootstrap: str | None = None,
    dlq_topic: str = DLQ_TOPIC,
    partitions: int = SOURCE_PARTITIONS,
    on_progress: Callable[[int, int], None] | None = None,
    on_bad: Callable[[BadLine], None] | None = None,
    producer_overrides: dict[str, Any] | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    encode_values: Callable[[list[bytes]], list[bytes]] | None = None,
) -> ProduceResult:
    """Replay `path` (Kaggle or extended layout) into `topic`; returns counts and timing.

    `on_progress(records, bytes)` is called after each block, `on_bad(line)` for each refused
    line (which also goes to `dlq_topic` with the reason in its headers). A line longer than
    `max_line_bytes` is refused without being held whole. Ctrl-C stops reading, waits for what
    was queued and returns with `interrupted=True`. `encode_values` turns each block's
    DELIMITED values into another format (`services.producer.formats`).
    """
    if rate is not None and speedup is not None:
        raise ProducerError("--rate and --speedup exclude each other", code="bad_option")
    if (rate is not None and rate <= 0) or (speedup is not None and speedup <= 0):
        raise ProducerError("--rate and --speedup must be positive", code="bad_option")
    if limit is not None and limit < 0:
        raise ProducerError("--limit must be >= 0", code="bad_option")
    source = CsvSource(Path(path), max_line_bytes=max_line_bytes)
    errors = _DeliveryErrors(topic)
    held_log = _HeldLog()
    overrides = {"delivery.report.only.error": True, "on_delivery": errors, "logger": held_log}
    # made before the probe: see _HeldLog
    producer = make_producer(bootstrap, **{**overrides, **(producer_overrides or {})})
    # one metadata request both probes the broker and answers the topic check
    ensure_topic(topic, partitions, bootstrap, known=broker_topics(bootstrap))
    held_log.open = True
    result = ProduceResult(topic=topic)
    stop = _StopRequest()
    pace = _Pace(rate, speedup)
    replay = _Replay(producer, topic, dlq_topic, bootstrap, pace, result, stop, errors)
    started = time.monotonic()
    replay.started = started
    replay.encode_values = encode_values
    try:
        with stop.installed():
            replay.run(source, limit, on_progress, on_bad)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        result.interrupted = result.interrupted or stop.requested
        _flush(producer)
        result.seconds = time.monotonic() - started
        result.failed = errors.count
        result.dlq_failed = errors.dlq_count
        result.last_error = str(errors.last or "")
        result.records -= errors.count
    return result


def _flush(producer: Producer, timeout: float = 60.0) -> None:
    """Wait for every queued record; a second Ctrl-C while waiting gives up on the rest."""
    try:
        remaining = producer.flush(timeout)
    except KeyboardInterrupt:
        remaining = len(producer)
    if remaining:
        raise ProducerError(
            f"{remaining} records were not delivered within {timeout:.0f}s", code="not_delivered"
        )


class _Replay:
    def __init__(
        self,
        producer: Producer,
        topic: str,
        dlq_topic: str,
        bootstrap: str | None,
        pace: _Pace,
        result: ProduceResult,
        stop: _StopRequest,
        errors: _DeliveryErrors,
    ) -> None:
        self.stop = stop
        self.errors = errors
        self.producer = producer
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.bootstrap = bootstrap
        self.pace = pace
        self.result = result
        self.started = time.monotonic()
        self.source_name = ""
        self._dlq_ready = False
        self.encode_values: Callable[[list[bytes]], list[bytes]] | None = None
        self.dlq_record_bytes = DLQ_MAX_RECORD_BYTES
        """Largest dead letter both the producer and the DLQ topic accept."""

    def run(
        self,
        source: CsvSource,
        limit: int | None,
        on_progress: Callable[[int, int], None] | None,
        on_bad: Callable[[BadLine], None] | None,
    ) -> None:
        self.source_name = f"file:{source.path}"
        for batch in _prefetch(source.batches()):
            if limit is not None:
                batch = _truncate(batch, limit - self.result.records)
            self._dead_letter(batch.bad, on_bad)
            if self.encode_values is not None:  # another format than DELIMITED
                batch.values = self.encode_values(batch.values)
            if self.pace.active:
                self._paced(batch)
            else:
                self._send(batch.keys, batch.values)
            if on_progress is not None:
                on_progress(len(batch), batch.bytes_read)
            if self.stop.requested or (limit is not None and self.result.records >= limit):
                return

    def _send(self, keys: list[bytes], values: list[bytes]) -> None:
        """The hot path: `produce_many`, the very loop the benchmark's bare baseline runs (one
        `produce` call a record; measured cheaper than building a dict a record for
        `produce_batch`). A record librdkafka refuses locally (not a full queue, which is
        waited out) is counted as failed and skipped."""
        produce_many(self.producer, self.topic, values, keys, on_refused=self.errors.refused)
        self.result.records += len(values)
        self.producer.poll(0)

    def _paced(self, batch: Batch) -> None:
        due = self.pace.due(batch, self.result.records)
        done = 0
        while done < len(batch) and not self.stop.requested:
            elapsed = time.monotonic() - self.started
            upto = int(due.searchsorted(elapsed, side="right"))
            if upto > done:
                self._send(batch.keys[done:upto], batch.values[done:upto])
                done = upto
                continue
            self.producer.poll(min(_MAX_SLEEP, max(_MIN_SLEEP, float(due[done]) - elapsed)))

    def _dead_letter(self, bad: list[BadLine], on_bad: Callable[[BadLine], None] | None) -> None:
        if not bad:
            return
        if not self._dlq_ready:
            ensure_topic(self.dlq_topic, 1, self.bootstrap)
            topic_limit = topic_max_message_bytes(self.dlq_topic, self.bootstrap)
            self.dlq_record_bytes = min(self.dlq_record_bytes, topic_limit or DLQ_MAX_RECORD_BYTES)
            self._dlq_ready = True
        for line in bad:
            letter = DeadLetter(
                error=f"line {line.line}: {line.reason}",
                source_topic=self.source_name,
                offset=line.line,
                service="producer",
                reason=line.code,
            )
            self._send_dead_letter(line, letter)
            self.result.bad += 1
            if len(self.result.bad_lines) < KEEP_BAD_LINES:
                self.result.bad_lines.append(line.trimmed())
            if on_bad is not None:
                on_bad(line)

    def _send_dead_letter(self, line: BadLine, letter: DeadLetter) -> None:
        send_to_dlq(
            self.producer,
            line.raw,
            None,
            letter,
            topic=self.dlq_topic,
            max_record_bytes=self.dlq_record_bytes,
            original_size=line.size,
        )


_END = object()


def _prefetch(batches: Iterator[Batch], depth: int = 2) -> Iterator[Batch]:
    """Read and check the next blocks in a thread while this one is sent.

    numpy's passes over a block release the GIL, so on a machine with a spare core part of
    the reading overlaps with producing; `depth` bounds the blocks held in memory.
    """
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    done = threading.Event()

    def put(item: object) -> bool:
        while not done.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consuming thread, which raises it
            put(exc)
        finally:
            batches.close()  # type: ignore[attr-defined]

    reader = threading.Thread(target=work, name="fraudstream-csv-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        done.set()
        reader.join(timeout=5)


def _truncate(batch: Batch, room: int) -> Batch:
    """The first `room` records of the batch, and the refused lines that come before the last
    of them (lines after the limit are not read, so they are not dead-lettered either)."""
    if room >= len(batch):
        return batch
    room = max(room, 0)
    last = batch.line_of(room - 1) if room else -1
    return Batch(
        keys=batch.keys[:room],
        values=batch.values[:room],
        times=batch.times[:room],
        bad=[line for line in batch.bad if line.line < last],
        bytes_read=batch.bytes_read,
        last_line=last,
    )
