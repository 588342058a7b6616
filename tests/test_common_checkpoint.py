"""services/common/checkpoint.py: which Kafka errors are retried or aborted, the bounded call,
the offsets a checkpoint commits and rewinds to; and, on the real broker, a commit, an
abort that gives exactly the uncommitted records again, when a checkpoint is due, a transaction's
offsets sent before its outputs (so back-to-back transactions are not held 20 ms), and the one
`produce` helper's backpressure (services/common/kafka.py)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from test_batch_offsets import Msg
from test_scorer_support import read_all

from services.common.checkpoint import (
    TXN_RETRY_BACKOFF_MAX_MS,
    TXN_RETRY_BACKOFF_MS,
    BatchOffsets,
    Checkpoint,
    TransactionAborted,
    is_fenced,
    requires_abort,
    retry_retriable,
    transactional_producer,
    within,
)
from services.common.kafka import (
    ProducerStuck,
    delete_topics,
    ensure_topic,
    make_consumer,
    make_producer,
    produce,
    produce_many,
    producer_config,
)


def _failing(errors: list[KafkaError]) -> tuple[list[int], Any]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise KafkaException(errors[len(calls) - 1])
        return "done"

    return calls, call


def test_retriable_errors_are_retried_then_the_call_succeeds() -> None:
    timeout = KafkaError(KafkaError._TIMED_OUT, "coordinator away", retriable=True)
    calls, call = _failing([timeout, timeout])
    assert retry_retriable(call, attempts=3, backoff_s=0) == "done"
    assert len(calls) == 3


def test_retries_are_bounded_and_other_errors_are_not_retried() -> None:
    timeout = KafkaError(KafkaError._TIMED_OUT, "still away", retriable=True)
    calls, call = _failing([timeout] * 5)
    with pytest.raises(KafkaException):
        retry_retriable(call, attempts=3, backoff_s=0)
    assert len(calls) == 3
    abortable = KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "aborted", txn_requires_abort=True)
    calls, call = _failing([abortable])
    with pytest.raises(KafkaException) as raised:
        retry_retriable(call, attempts=3, backoff_s=0)
    assert len(calls) == 1 and requires_abort(raised.value)


def test_error_kinds() -> None:
    assert requires_abort(KafkaException(KafkaError(1, "x", txn_requires_abort=True)))
    assert not requires_abort(KafkaException(KafkaError(1, "x", retriable=True)))
    assert not requires_abort(KafkaException("a message, no KafkaError"))
    assert not requires_abort(ValueError("not Kafka"))
    assert is_fenced(KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True)))
    assert not is_fenced(KafkaException(KafkaError(KafkaError._TIMED_OUT)))


def test_within_returns_raises_or_gives_up_on_a_blocked_call() -> None:
    assert within(lambda: 42, 1.0, "quick") == 42
    with pytest.raises(ZeroDivisionError):
        within(lambda: 1 / 0, 1.0, "failing")
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        within(lambda: release.wait(10), 0.2, "blocked")
    release.set()
    err = raised.value.args[0]
    assert err.code() == KafkaError._TIMED_OUT and not err.retriable()
    assert not err.txn_requires_abort() and "blocked" in err.str()
    assert time.monotonic() - started < 2


def test_batch_offsets_commit_the_next_offsets_and_rewind_to_the_first() -> None:
    offsets = BatchOffsets()
    assert not offsets
    offsets.add(cast(list[Message], [Msg(0, 10), Msg(1, 4), Msg(0, 14)]), "src", 3)
    offsets.add(cast(list[Message], [Msg(0, 15), Msg(2, 7), Msg(2, 8), Msg(0, 19)]), "src", 3)
    assert offsets and offsets.records == 7
    assert offsets.first == {("src", 0): 10, ("src", 1): 4, ("src", 2): 7}
    assert [(tp.partition, tp.offset) for tp in offsets.offsets()] == [(0, 20), (1, 5), (2, 9)]
    assert [tp.partition for tp in offsets.offsets({("src", 1)})] == [1]


# ---------------------------------------------------------------------- on the real broker
RECORDS = 30
SPREAD = 12


@pytest.fixture
def topics(kafka_bootstrap: str, unique: str) -> Iterator[tuple[str, str]]:
    """An input topic of RECORDS records (2 partitions) and an empty output topic."""
    source, sink = f"t_ckpt_in_{unique}", f"t_ckpt_out_{unique}"
    ensure_topic(source, partitions=2, bootstrap=kafka_bootstrap)
    ensure_topic(sink, bootstrap=kafka_bootstrap)
    producer = make_producer(kafka_bootstrap)
    values = [str(i).encode() for i in range(RECORDS)]
    produce_many(producer, source, values, values)
    assert producer.flush(30) == 0
    yield source, sink
    delete_topics([source, sink], bootstrap=kafka_bootstrap)


@pytest.fixture
def clients(
    kafka_bootstrap: str, topics: tuple[str, str], unique: str
) -> Iterator[tuple[Consumer, Producer]]:
    """A consumer assigned the input topic from its start and a transactional producer."""
    consumer = make_consumer(f"t-ckpt-{unique}", kafka_bootstrap)
    consumer.assign([TopicPartition(topics[0], p, 0) for p in (0, 1)])
    producer = transactional_producer(producer_config(kafka_bootstrap), f"t-ckpt-{unique}")
    yield consumer, producer
    consumer.close()


def _consume(consumer: Consumer, count: int) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + 30
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} records"
        got += [m for m in consumer.consume(count - len(got), 0.5) if m.error() is None]
    return got


def _through(checkpoint: Checkpoint, messages: list[Message], source: str, sink: str) -> None:
    """The batch joins the checkpoint and its values are copied to `sink`."""
    checkpoint.add(messages, source, 2)
    with checkpoint.aborting():
        produce_many(checkpoint.producer, sink, [m.value() for m in messages])


def _ids(messages: list[Message]) -> list[int]:
    return sorted(int(m.value() or b"") for m in messages)


@pytest.mark.slow
def test_commit_makes_outputs_and_offsets_visible_together(
    kafka_bootstrap: str, topics: tuple[str, str], clients: tuple[Consumer, Producer]
) -> None:
    (source, sink), (consumer, producer) = topics, clients
    committed: list[int] = []
    checkpoint = Checkpoint(consumer, producer)
    batch = _consume(consumer, 12)
    _through(checkpoint, batch, source, sink)
    checkpoint.after_commit(lambda: committed.append(len(batch)))
    assert read_all(sink, kafka_bootstrap) == []  # not committed yet: invisible
    done = checkpoint.commit()
    assert done is not None and done.records == 12 and committed == [12]
    assert _ids(read_all(sink, kafka_bootstrap)) == _ids(batch)
    group = consumer.committed([TopicPartition(source, p) for p in (0, 1)], timeout=10)
    assert {tp.partition: tp.offset for tp in group if tp.offset >= 0} == {
        p: o for (_t, p), o in done.next.items()
    }
    assert checkpoint.commit() is None  # nothing open


@pytest.mark.slow
def test_abort_rewinds_to_exactly_the_uncommitted_records(
    kafka_bootstrap: str, topics: tuple[str, str], clients: tuple[Consumer, Producer]
) -> None:
    (source, sink), (consumer, producer) = topics, clients
    aborted: list[TransactionAborted] = []
    checkpoint = Checkpoint(consumer, producer, on_abort=aborted.append)
    first = _consume(consumer, 10)
    _through(checkpoint, first, source, sink)
    checkpoint.commit()
    uncommitted: list[Message] = []
    for size in (6, 5):  # two batches in one open transaction
        batch = _consume(consumer, size)
        _through(checkpoint, batch, source, sink)
        uncommitted += batch
    checkpoint.after_commit(lambda: pytest.fail("an aborted batch was counted"))
    # the injected error finds a healthy producer: let its records land first, as an abort
    # racing librdkafka's in-flight AddPartitionsToTxn can be refused as INVALID_TXN_STATE
    # (confluentinc/librdkafka#4849; the scorer then restarts with new clients, losing nothing)
    assert producer.flush(30) == 0
    abortable = KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "x", txn_requires_abort=True)
    with pytest.raises(TransactionAborted) as raised, checkpoint.aborting():
        raise KafkaException(abortable)
    assert raised.value.records == 11 and aborted == [raised.value]
    assert not checkpoint.offsets and checkpoint.aborts == 1
    # the rest of the topic: the uncommitted records again (the rewind), then the records
    # never read, each once; partitions interleave, so it is read whole
    rest = _consume(consumer, RECORDS - len(first))
    positions = [(m.partition(), m.offset()) for m in rest]
    assert len(set(positions)) == len(positions)
    assert {(m.partition(), m.offset()) for m in uncommitted} <= set(positions)
    assert _ids(first + rest) == list(range(RECORDS))
    assert consumer.consume(1, 1.0) == []  # nothing beyond the end
    _through(checkpoint, rest, source, sink)
    checkpoint.commit()
    assert _ids(read_all(sink, kafka_bootstrap)) == list(range(RECORDS))  # aborted: never shown


@pytest.mark.slow
def test_a_checkpoint_is_due_after_enough_records_or_time(
    kafka_bootstrap: str, topics: tuple[str, str], clients: tuple[Consumer, Producer]
) -> None:
    (source, sink), (consumer, producer) = topics, clients
    checkpoint = Checkpoint(consumer, producer, commit_interval_s=0.5, commit_records=8)
    assert not checkpoint.due()  # nothing open
    _through(checkpoint, _consume(consumer, 3), source, sink)
    opened = time.monotonic()
    assert not checkpoint.due(opened)
    assert checkpoint.due(opened + 0.6)
    _through(checkpoint, _consume(consumer, 5), source, sink)
    assert checkpoint.pending == 8 and checkpoint.due(opened)
    checkpoint.commit()
    assert not checkpoint.due(opened + 10)


@pytest.mark.slow
def test_produce_waits_out_a_full_queue(kafka_bootstrap: str, unique: str) -> None:
    topic = f"t_ckpt_bp_{unique}"
    ensure_topic(topic, bootstrap=kafka_bootstrap)
    try:
        producer = make_producer(kafka_bootstrap, **{"queue.buffering.max.messages": 5})
        values = [str(i).encode() for i in range(300)]
        assert produce_many(producer, topic, values, timestamps=[1000 + i for i in range(300)])
        for i in range(20):
            produce(producer, topic, b"x", str(i).encode(), headers=[("h", b"v")])
        assert producer.flush(30) == 0
        assert len(read_all(topic, kafka_bootstrap)) == 320
    finally:
        delete_topics([topic], bootstrap=kafka_bootstrap)


def test_a_queue_that_stays_full_is_a_clear_error() -> None:
    """No broker answers (a closed port): the queue never drains, and produce gives up."""
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "queue.buffering.max.messages": 2})
    started = time.monotonic()
    with pytest.raises(ProducerStuck, match="stayed full"):
        produce_many(producer, "t", [b"a"] * 5, limit_s=0.3)
    with pytest.raises(ProducerStuck):
        produce(producer, "t", b"b", limit_s=0.3)
    assert time.monotonic() - started < 5


def _logged_producer(bootstrap: str, name: str, on_line: Callable[[str], None]) -> Producer:
    """A transactional producer `name` whose librdkafka debug lines (eos, protocol) go to
    `on_line`, as they are served by its poll() calls."""

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            on_line(record.getMessage())

    logger = logging.getLogger(name)
    logger.addHandler(Lines(logging.DEBUG))
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    config = {**producer_config(bootstrap), "debug": "eos,protocol", "logger": logger}
    return transactional_producer(config, name)


@pytest.mark.slow
def test_a_refused_next_transaction_is_retried_after_a_few_ms_not_100(
    kafka_bootstrap: str, unique: str
) -> None:
    """Back-to-back transactions: the coordinator refuses the next one's AddOffsetsToTxn while
    the last one's markers are written (CONCURRENT_TRANSACTIONS), and librdkafka's retry waits
    `retry.backoff.ms`; the project's transactional producers wait TXN_RETRY_BACKOFF_MS, not
    librdkafka's 100 ms (docs/latency.md, third pass). Each transaction writes to SPREAD
    partitions, so that its markers take long enough for the next one to be refused."""
    topic = f"t-ckpt-retry-{unique}"
    ensure_topic(topic, partitions=SPREAD, bootstrap=kafka_bootstrap)
    delays: list[int] = []

    def retries(line: str) -> None:
        if found := re.search(r"Retrying AddOffsetsToTxnRequest .* in (\d+)ms", line):
            delays.append(int(found.group(1)))

    producer = _logged_producer(kafka_bootstrap, f"t-ckpt-retry-{unique}", retries)
    consumer = make_consumer(f"t-ckpt-retry-{unique}", kafka_bootstrap)
    try:
        metadata = consumer.consumer_group_metadata()
        for i in range(RECORDS):
            producer.begin_transaction()
            for partition in range(SPREAD):
                producer.produce(topic, b"x", partition=partition)
            producer.send_offsets_to_transaction([TopicPartition(topic, 0, i + 1)], metadata, 10)
            producer.commit_transaction(10)
            producer.poll(0)  # serves the log queue
        producer.flush(10)
    finally:
        consumer.close()
        delete_topics([topic], bootstrap=kafka_bootstrap)
    if not delays:
        pytest.skip("the coordinator refused no transaction: nothing to retry")
    # librdkafka doubles the backoff per retry of the same request, with jitter
    assert min(delays) <= 2 * TXN_RETRY_BACKOFF_MS, delays
    # and the doubling stops at the ceiling (plus librdkafka's 20 % jitter)
    assert max(delays) <= 1.2 * TXN_RETRY_BACKOFF_MAX_MS + 1, delays


class _Noted:
    """A producer that notes, in order, the calls a transaction is made of."""

    NOTED = ("begin_transaction", "send_offsets_to_transaction", "produce", "commit_transaction")

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._producer, name)
        if name not in self.NOTED:
            return attr

        def noted(*args: Any, **kwargs: Any) -> Any:
            if not self.calls or self.calls[-1] != name:  # a run of produces is one entry
                self.calls.append(name)
            return attr(*args, **kwargs)

        return noted


@pytest.mark.slow
def test_a_transaction_holds_its_offsets_before_its_outputs(
    kafka_bootstrap: str, topics: tuple[str, str], clients: tuple[Consumer, Producer]
) -> None:
    """The first batch's offsets go into the transaction as it begins, before its outputs; the
    commit sends them again only when more batches joined (docs/latency.md, sixth pass)."""
    (source, sink), (consumer, producer) = topics, clients
    noted = _Noted(producer)
    checkpoint = Checkpoint(consumer, cast(Producer, noted))
    read = _consume(consumer, 5)
    _through(checkpoint, read, source, sink)
    checkpoint.commit()
    begin, send, produce_, commit = _Noted.NOTED
    assert noted.calls == [begin, send, produce_, commit]
    noted.calls.clear()
    for size in (4, 6):  # two batches, one transaction
        batch = _consume(consumer, size)
        _through(checkpoint, batch, source, sink)
        read += batch
    done = checkpoint.commit()
    assert noted.calls == [begin, send, produce_, send, commit]
    assert done is not None and done.records == 10
    group = consumer.committed([TopicPartition(source, p) for p in (0, 1)], timeout=10)
    assert {tp.partition: tp.offset for tp in group if tp.offset >= 0} == {
        p: o for (_t, p), o in done.next.items()
    }
    assert _ids(read_all(sink, kafka_bootstrap)) == _ids(read)


@pytest.mark.slow
def test_back_to_back_transactions_register_their_partitions_at_the_first_try(
    kafka_bootstrap: str, topics: tuple[str, str], unique: str
) -> None:
    """A transaction begun while the last one's commit markers are written is refused
    (CONCURRENT_TRANSACTIONS), and librdkafka retries a refused AddPartitionsToTxn after a fixed
    20 ms. With the offsets sent first, their 2 ms retries wait the markers out and the
    partitions register at once. Each transaction here writes to SPREAD partitions, so its
    markers take long enough for the next one to come while they are written."""
    source = topics[0]
    sink = f"t_ckpt_spread_{unique}"
    ensure_topic(sink, partitions=SPREAD, bootstrap=kafka_bootstrap)
    refused: list[str] = []
    retried: list[str] = []

    def refusals(line: str) -> None:
        if "AddPartitionsToTxn response" in line and "concurrent" in line:
            refused.append(line)
        if "Retrying AddOffsetsToTxnRequest" in line:
            retried.append(line)

    producer = _logged_producer(kafka_bootstrap, f"t-ckpt-addparts-{unique}", refusals)
    consumer = make_consumer(f"t-ckpt-addparts-{unique}", kafka_bootstrap)
    consumer.assign([TopicPartition(source, p, 0) for p in (0, 1)])
    try:
        checkpoint = Checkpoint(consumer, producer)
        for _ in range(RECORDS):
            batch = _consume(consumer, 1)
            checkpoint.add(batch, source, 2)
            with checkpoint.aborting():
                for partition in range(SPREAD):
                    producer.produce(sink, batch[0].value(), partition=partition)
            checkpoint.commit()
            producer.poll(0)  # serves the log queue
        producer.flush(10)
        assert len(read_all(sink, kafka_bootstrap)) == RECORDS * SPREAD
    finally:
        consumer.close()
        delete_topics([sink], bootstrap=kafka_bootstrap)
    if not retried:
        pytest.skip("the coordinator refused no transaction: nothing was concurrent")
    assert refused == [], f"{len(refused)} of {RECORDS} transactions waited 20 ms"
