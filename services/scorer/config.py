"""What a scorer run is given (`ScorerConfig`) and what it gives back (`ScoreResult`): the
contract of `fraudstream score`, the pipeline and the notebook, apart from the loop itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.topics import ALERTS_TOPIC, DLQ_TOPIC, MODELS_TOPIC, SCORING_TOPIC


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
    """How long an idle scorer waits for the first record of a batch (then it looks at its stop
    flag and model swaps). Not a wait to fill a batch: one closes as soon as the consumer has
    nothing more fetched (intake.py)."""
    commit_interval_ms: int = 100
    """While batches come full, one transaction spans them for up to this long (or
    commit_records): a commit costs two broker round trips. A batch that is not full (the
    scorer has caught up) commits at once, so alerts are never held back at low rates."""
    commit_records: int = 50_000
    instance_id: str = "0"
    metrics_port: int = 0
    metrics_host: str | None = None  # None: $FRAUDSTREAM_METRICS_HOST or 127.0.0.1
    bootstrap: str | None = None
    schema_registry_url: str | None = None
    models_dir: Path | None = None
    model_poll_interval_s: float = 1.0
    lag_interval_s: float = 5.0
    explain: bool = True
    """Write each alert's top contributing features (EXPLANATION; `--no-explain`: null)."""
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

    def summary(self) -> dict[str, Any]:
        """The counts, for the log line at the end of a run."""
        return {
            "scored": self.scored,
            "alerts": self.alerts,
            "dead_letters": self.dead_letters,
            "batches": self.batches,
            "aborted": self.aborted,
            "versions": self.versions,
        }
