"""The run's summary: what went in, what came out, how good and how fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import TopicPartition

from services.common.avro import AvroDecoder, WireFormatError, registry_client
from services.common.kafka import make_consumer
from services.common.topics import ALERTS_TOPIC
from services.pipeline.labels import LabelCounts
from services.pipeline.offsets import TopicMark, mark


@dataclass(frozen=True)
class StageRate:
    name: str
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass
class AlertTally:
    """Alerts written since a mark, read back read-committed from the alerts topic."""

    alerts: int = 0
    true_frauds: int = 0
    unlabelled: int = 0
    versions: dict[str, int] = field(default_factory=dict)


def tally_alerts(since: TopicMark, topic: str = ALERTS_TOPIC) -> AlertTally:
    """Read every committed alert after `since` up to the current end of the topic."""
    end = mark(topic)
    tally = AlertTally()
    if not end.ends:
        return tally
    decoder = AvroDecoder(registry_client())
    consumer = make_consumer("fraudstream-run-tally")
    try:
        consumer.assign([TopicPartition(topic, p, since.ends.get(p, 0)) for p in sorted(end.ends)])
        remaining = {p: e for p, e in end.ends.items() if e > since.ends.get(p, 0)}
        while remaining:
            msg = consumer.poll(5.0)
            if msg is None:
                break  # only transaction markers are left before the end offsets
            if msg.error() is not None:
                continue
            _count(tally, decoder, msg.value())
            partition, offset = msg.partition() or 0, msg.offset() or 0
            if offset + 1 >= remaining.get(partition, 0):
                remaining.pop(partition, None)
    finally:
        consumer.close()
    return tally


def _count(tally: AlertTally, decoder: AvroDecoder, value: bytes | None) -> None:
    try:
        alert = decoder.decode(value)
    except WireFormatError:
        return
    tally.alerts += 1
    label = alert.get("CLASS")
    if label in (None, ""):
        tally.unlabelled += 1
    elif str(label).strip('"') == "1":
        tally.true_frauds += 1
    version = str(alert.get("MODEL_VERSION"))
    tally.versions[version] = tally.versions.get(version, 0) + 1


@dataclass
class RunSummary:
    records_in: int
    bad_lines: int
    labels: LabelCounts
    alerts: AlertTally
    model_version: str
    model_line: str
    report: Path
    stages: list[StageRate]
    metrics_port: int

    @property
    def precision(self) -> float:
        labelled = self.alerts.alerts - self.alerts.unlabelled
        return self.alerts.true_frauds / labelled if labelled else 0.0

    @property
    def recall(self) -> float:
        return self.alerts.true_frauds / self.labels.frauds if self.labels.frauds else 0.0

    def lines(self) -> list[str]:
        rates = ", ".join(f"{s.name} {s.rate:,.0f} rec/s" for s in self.stages)
        return [
            self.model_line,
            f"throughput: {rates}",
            "watch: fraudstream alerts --follow | fraudstream ksql query "
            '"SELECT * FROM FRAUD_ALERTS EMIT CHANGES;"',
            f"       metrics http://127.0.0.1:{self.metrics_port}/metrics | report {self.report}",
            self.headline(),
        ]

    def headline(self) -> str:
        """The last line: records, alerts, precision/recall (exact 95 % intervals), model."""
        from services.trainer.intervals import clopper_pearson

        frauds = self.alerts.true_frauds
        p_lo, p_hi = clopper_pearson(frauds, self.alerts.alerts - self.alerts.unlabelled)
        r_lo, r_hi = clopper_pearson(min(frauds, self.labels.frauds), self.labels.frauds)
        return (
            f"records {self.records_in} alerts {self.alerts.alerts} "
            f"(frauds {frauds}/{self.labels.frauds}) "
            f"precision={self.precision:.3f} [{p_lo:.2f}, {p_hi:.2f}] "
            f"recall={self.recall:.3f} [{r_lo:.2f}, {r_hi:.2f}] model {self.model_version}"
        )
