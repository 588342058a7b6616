"""Typed settings, read once from the environment variables fixed in DESIGN.md.

Every service takes its addresses from here, so the embedded stack and docker compose differ only
in the environment, never in code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_DEFAULTS: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
    "SCHEMA_REGISTRY_URL": "http://localhost:8081",
    "KSQL_URL": "http://localhost:8088",
    "FRAUDSTREAM_HOME": ".fraudstream",
    "MODELS_DIR": "models",
}
"""The environment variables the services read, with their defaults (also checked by the
compose-file test: every variable a container sets must be one of these)."""


def _env(name: str) -> str:
    return os.environ.get(name) or ENV_DEFAULTS[name]


@dataclass(frozen=True)
class Settings:
    """Where the services find Kafka, the registry, the KSQL server and their files."""

    bootstrap_servers: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP_SERVERS"))
    schema_registry_url: str = field(default_factory=lambda: _env("SCHEMA_REGISTRY_URL"))
    ksql_url: str = field(default_factory=lambda: _env("KSQL_URL"))
    home: Path = field(default_factory=lambda: Path(_env("FRAUDSTREAM_HOME")).resolve())
    models_dir: Path = field(default_factory=lambda: Path(_env("MODELS_DIR")).resolve())

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        """pid files of the embedded services."""
        return self.home / "run"


def get_settings() -> Settings:
    """Settings from the current environment (read anew each call, so tests can monkeypatch)."""
    return Settings()
