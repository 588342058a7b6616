"""What the console reads and where: the same settings as every service, plus its own address.

Addresses of Kafka, the Schema Registry, the KSQL server and the models directory come from
`services.common.settings` (environment, then fraudstream.toml), so the console works against the
embedded stack and Confluent's services alike. Topics are fields so tests can point the console at
their own topics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from services.common.settings import Settings, get_settings
from services.common.topics import (
    ALERTS_TOPIC,
    FEEDBACK_TOPIC,
    PREPROCESSED_TOPIC,
    SCORING_TOPIC,
    SOURCE_TOPIC,
)

UI_URL_ENV = "FRAUDSTREAM_UI_URL"
"""Where `stack up` / `run` start the console and probe it (default http://127.0.0.1:8090)."""
DEFAULT_UI_HOST = "127.0.0.1"
DEFAULT_UI_PORT = 8090


def ui_url() -> str:
    """The console's URL for the stack: FRAUDSTREAM_UI_URL, else the default address."""
    raw = os.environ.get(UI_URL_ENV, "").strip()
    return (raw or f"http://{DEFAULT_UI_HOST}:{DEFAULT_UI_PORT}").rstrip("/")


def ui_host_port(url: str | None = None) -> tuple[str, int]:
    parsed = urlparse(url or ui_url())
    return parsed.hostname or DEFAULT_UI_HOST, parsed.port or DEFAULT_UI_PORT


@dataclass
class ConsoleConfig:
    """Everything the console's routes and background readers need."""

    settings: Settings = field(default_factory=get_settings)
    alerts_topic: str = ALERTS_TOPIC
    source_topic: str = SOURCE_TOPIC
    preprocessed_topic: str = PREPROCESSED_TOPIC
    scoring_topic: str = SCORING_TOPIC
    feedback_topic: str = FEEDBACK_TOPIC
    models_dir: Path | None = None
    """None: the settings' MODELS_DIR."""
    recent_alerts: int = 2000
    """Alerts kept in memory (newest), sent to a page when it connects."""
    health_interval_s: float = 2.0
    drift_sample: int = 2000
    """Most recent scoring records the drift view compares with the training data."""
    start_readers: bool = True
    """False: no background consumers (unit tests of the routes)."""

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.settings.models_dir
