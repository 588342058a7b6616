"""Typed settings, read once from the environment variables fixed in DESIGN.md.

Every service takes its addresses from here, so the embedded stack and docker compose differ only
in the environment, never in code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from services.common.errors import FraudstreamError

ENV_DEFAULTS: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
    "SCHEMA_REGISTRY_URL": "http://localhost:8081",
    "KSQL_URL": "http://localhost:8088",
    "FRAUDSTREAM_HOME": ".fraudstream",
    "MODELS_DIR": "models",
}
"""The environment variables the services read, with their defaults (also checked by the
compose-file test: every variable a container sets must be one of these)."""


KAFKA_SECURITY_ENV: dict[str, str] = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
}
"""Optional Kafka client security settings: environment variable -> the Confluent client
property it sets. Unset (the default) means PLAINTEXT without authentication. Kept apart from
ENV_DEFAULTS: they have no default every container must set."""
BROKER_SASL_ENV = "FRAUDSTREAM_BROKER_SASL"
"""`true` starts the embedded broker with SASL/SCRAM and the ACL authorizer (docs/security.md)."""
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def _env(name: str) -> str:
    return os.environ.get(name) or ENV_DEFAULTS[name]


def _optional_env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _flag_env(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Secret:
    """A password that never shows in a repr, a log line or a traceback's locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value, for the one place that needs it: the client configuration."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class KafkaSecurity:
    """How clients authenticate to Kafka, with the Confluent clients' property names."""

    security_protocol: str = ""
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: Secret = field(default_factory=lambda: Secret(""))

    @classmethod
    def from_env(cls) -> KafkaSecurity:
        security = cls(
            security_protocol=_optional_env("KAFKA_SECURITY_PROTOCOL").upper(),
            sasl_mechanism=_optional_env("KAFKA_SASL_MECHANISM").upper(),
            sasl_username=_optional_env("KAFKA_SASL_USERNAME"),
            sasl_password=Secret(os.environ.get("KAFKA_SASL_PASSWORD", "")),
        )
        security.check()
        return security

    def check(self) -> None:
        """Refuse settings that could only fail later, with the variable to fix."""
        protocol, mechanism = self.security_protocol, self.sasl_mechanism
        if protocol and protocol not in SECURITY_PROTOCOLS:
            choices = ", ".join(SECURITY_PROTOCOLS)
            raise FraudstreamError(f"KAFKA_SECURITY_PROTOCOL={protocol!r}: choose one of {choices}")
        if mechanism and mechanism not in SASL_MECHANISMS:
            raise FraudstreamError(
                f"KAFKA_SASL_MECHANISM={mechanism!r}: choose one of {', '.join(SASL_MECHANISMS)}"
            )
        if self.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise FraudstreamError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def client_config(self) -> dict[str, str]:
        """The properties to add to every Kafka client's configuration (none when unset)."""
        conf: dict[str, str] = {}
        if self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        if self.uses_sasl:
            conf["sasl.mechanism"] = self.sasl_mechanism or "SCRAM-SHA-512"
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password.reveal()
        return conf

    def describe(self) -> str:
        """For messages: protocol, mechanism and user, never the password."""
        if not self.uses_sasl:
            return self.security_protocol or "PLAINTEXT"
        mechanism = self.sasl_mechanism or "SCRAM-SHA-512"
        return f"{self.security_protocol} {mechanism} as user {self.sasl_username!r}"


@dataclass(frozen=True)
class Settings:
    """Where the services find Kafka, the registry, the KSQL server and their files."""

    bootstrap_servers: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP_SERVERS"))
    schema_registry_url: str = field(default_factory=lambda: _env("SCHEMA_REGISTRY_URL"))
    ksql_url: str = field(default_factory=lambda: _env("KSQL_URL"))
    home: Path = field(default_factory=lambda: Path(_env("FRAUDSTREAM_HOME")).resolve())
    models_dir: Path = field(default_factory=lambda: Path(_env("MODELS_DIR")).resolve())
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity.from_env)
    broker_sasl: bool = field(default_factory=lambda: _flag_env(BROKER_SASL_ENV))
    """Start the embedded broker with SASL/SCRAM and the ACL authorizer."""

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
