"""The run's summary: what went in, what came out, how good and how fast."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

from services.common.avro.codec import AvroDecoder
from services.common.avro.schemas import registry_client
from services.common.avro.wire import WireFormatError
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
    console_url: str | None = None
    """The analyst's console, when the run started one or found one answering."""

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
            f"       metrics http://127.0.0.1:{self.metrics_port}/metrics"
            f" | report {_shown(self.report)}",
            *([f"       console {self.console_url}"] if self.console_url else []),
            self.headline(),
        ]

    def to_dict(self) -> dict[str, Any]:
        """What `run --summary-json` writes: the printed lines and the figures behind them."""
        return {
            "lines": self.lines(),
            "records_in": self.records_in,
            "bad_lines": self.bad_lines,
            "frauds": self.labels.frauds,
            "alerts": self.alerts.alerts,
            "true_frauds": self.alerts.true_frauds,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "model_version": self.model_version,
            "model_line": self.model_line,
            "throughput": {s.name: round(s.rate, 1) for s in self.stages},
        }

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


def _shown(path: Path) -> str:
    """A path under the working directory as a relative one (the README shows it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


README_BLOCK = re.compile(
    r"(<!-- run-summary:begin[^>]*-->\n)(.*?)(<!-- run-summary:end -->)", re.DOTALL
)


def update_readme(readme: Path, summary_json: Path) -> None:
    """Put the printed lines of a real run (`make summary`) between the README's run-summary
    markers, so its example output is a measured one."""
    data = json.loads(summary_json.read_text())
    text = readme.read_text()
    if not README_BLOCK.search(text):
        raise ValueError(f"{readme}: no <!-- run-summary:begin --> … end markers")
    block = "```\n" + "\n".join(data["lines"]) + "\n```\n"
    readme.write_text(README_BLOCK.sub(lambda m: m.group(1) + block + m.group(3), text, count=1))


if __name__ == "__main__":  # make summary: python -m services.pipeline.summary README JSON
    import sys

    update_readme(Path(sys.argv[1]), Path(sys.argv[2]))
