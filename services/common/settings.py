"""Typed settings, read once from the environment variables fixed in DESIGN.md.

Every service takes its addresses from here, so the embedded stack and docker compose differ only
in the environment, never in code. A value missing from the environment may come from
`fraudstream.toml` (services/common/config_file.py: same names, `${ENV}` references for secrets).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from services.common.config_file import KAFKA_CLIENT_PROPERTIES, env_name, lookup, where
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

HTTP_SECURITY_ENV: dict[str, str] = {
    # server side (the KSQL server and the Schema Registry); empty means off
    "FRAUDSTREAM_HTTP_USERS_FILE": "",
    "FRAUDSTREAM_HTTP_AUTH_ROLES": "",
    "FRAUDSTREAM_HTTP_TLS_CERTFILE": "",
    "FRAUDSTREAM_HTTP_TLS_KEYFILE": "",
    "FRAUDSTREAM_HTTP_ALLOWED_HOSTS": "",
    "FRAUDSTREAM_HTTP_HEADER_TIMEOUT_S": "30",
    "FRAUDSTREAM_HTTP_BODY_TIMEOUT_S": "60",
    # client side (every project client of the two servers)
    "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "",
    "KSQL_BASIC_AUTH_USER_INFO": "",
    "FRAUDSTREAM_HTTP_CA_FILE": "",
    "SCHEMA_REGISTRY_SSL_CA_LOCATION": "",
    "KSQL_SSL_CA_LOCATION": "",
}
"""Optional HTTP security settings (docs/security.md): authentication, TLS, allowed Host names and
timeouts of the two HTTP servers, and the credentials and CA the project's own clients use. Unlike
ENV_DEFAULTS a container need not set them: empty means off."""


KAFKA_SECURITY_ENV: dict[str, str] = {
    env_name("kafka", prop): prop for prop in KAFKA_CLIENT_PROPERTIES if prop != "bootstrap.servers"
}
"""Optional Kafka client security settings: environment variable -> the Confluent client
property it sets (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`, the allow-list of
services/common/config_file.py). Unset (the default) means PLAINTEXT without authentication. Kept
apart from ENV_DEFAULTS: they have no default every container must set."""
BROKER_SASL_ENV = "FRAUDSTREAM_BROKER_SASL"
"""`true` starts the embedded broker with SASL/SCRAM and the ACL authorizer (docs/security.md)."""
BROKER_TLS_ENV = "FRAUDSTREAM_BROKER_TLS"
"""`true` (with SASL) makes the embedded broker's client listener SASL_SSL, with a CA and
certificates it makes itself (services/broker/tls.py)."""
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def _env(name: str) -> str:
    """The environment, else fraudstream.toml, else the default."""
    return lookup(name, ENV_DEFAULTS.get(name) or HTTP_SECURITY_ENV[name]).value


def _path_env(name: str) -> Path | None:
    value = _env(name).strip()
    return Path(value).expanduser() if value else None


def _list_env(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in _env(name).split(",") if item.strip())


def _seconds_env(name: str) -> float:
    raw = _env(name)
    try:
        value = float(raw)
    except ValueError:
        raise FraudstreamError(
            f"{name}={raw!r} is not a number of seconds", code="bad_setting"
        ) from None
    if value <= 0:
        raise FraudstreamError(f"{name}={raw!r} must be positive", code="bad_setting")
    return value


@dataclass(frozen=True)
class HttpServerSettings:
    """How a server protects its HTTP port (both servers, through services/common/http).

    Everything is off by default except the limits: no users file, no TLS, only the loopback
    names (and the server's own URL host) accepted as `Host` when bound to loopback.
    """

    users_file: Path | None = field(
        default_factory=lambda: _path_env("FRAUDSTREAM_HTTP_USERS_FILE")
    )
    """Jetty property-file realm (`user: password[,role...]`); set: HTTP Basic auth is on."""
    auth_roles: tuple[str, ...] = field(
        default_factory=lambda: _list_env("FRAUDSTREAM_HTTP_AUTH_ROLES")
    )
    """Roles allowed in (Confluent's `authentication.roles`); empty: any authenticated user."""
    tls_certfile: Path | None = field(
        default_factory=lambda: _path_env("FRAUDSTREAM_HTTP_TLS_CERTFILE")
    )
    tls_keyfile: Path | None = field(
        default_factory=lambda: _path_env("FRAUDSTREAM_HTTP_TLS_KEYFILE")
    )
    allowed_hosts: tuple[str, ...] = field(
        default_factory=lambda: _list_env("FRAUDSTREAM_HTTP_ALLOWED_HOSTS")
    )
    """Extra `Host` names accepted (besides loopback and the server's own names); `*`: any."""
    header_timeout_s: float = field(
        default_factory=lambda: _seconds_env("FRAUDSTREAM_HTTP_HEADER_TIMEOUT_S")
    )
    """Idle connection / request headers / TLS handshake must complete within this."""
    body_timeout_s: float = field(
        default_factory=lambda: _seconds_env("FRAUDSTREAM_HTTP_BODY_TIMEOUT_S")
    )
    """A request body must arrive whole within this (streaming endpoints excepted)."""

    @property
    def tls(self) -> bool:
        return self.tls_certfile is not None


@dataclass(frozen=True)
class HttpClientSettings:
    """Credentials and trust the project's own clients use for the two servers (never printed)."""

    schema_registry_user_info: str = field(
        default_factory=lambda: _env("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"), repr=False
    )
    """`user:password`, as confluent-kafka's `basic.auth.user.info`."""
    ksql_user_info: str = field(
        default_factory=lambda: _env("KSQL_BASIC_AUTH_USER_INFO"), repr=False
    )
    ca_file: Path | None = field(default_factory=lambda: _path_env("FRAUDSTREAM_HTTP_CA_FILE"))
    """PEM bundle that signs the servers' certificates (https URLs); unset: the system's."""
    schema_registry_ca_file: Path | None = field(
        default_factory=lambda: _path_env("SCHEMA_REGISTRY_SSL_CA_LOCATION")
    )
    """The registry's own CA (`ssl.ca.location` of the registry client), else `ca_file`."""
    ksql_ca_file: Path | None = field(default_factory=lambda: _path_env("KSQL_SSL_CA_LOCATION"))

    def ca_for(self, service: str | None) -> Path | None:
        """The CA to trust for `service` ("schema-registry" or "ksql"; None: the shared one)."""
        own = {"schema-registry": self.schema_registry_ca_file, "ksql": self.ksql_ca_file}
        return own.get(service or "") or self.ca_file


def _optional_env(name: str) -> str:
    return lookup(name).value.strip()


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


_SASL_PROPERTIES = ("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password")
_FILE_PROPERTIES = (
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
)
"""Properties naming a file: checked at start, so a typo is an error now rather than a
handshake that fails later (`probe` is librdkafka's "look for the system's CA")."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How clients authenticate to Kafka, with the Confluent clients' property names."""

    security_protocol: str = ""
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: Secret = field(default_factory=lambda: Secret(""))
    ssl: tuple[tuple[str, str | Secret], ...] = ()
    """The other allow-listed properties that are set (`ssl.*`), secrets wrapped in Secret."""

    @classmethod
    def from_env(cls) -> KafkaSecurity:
        """From the environment (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`, …),
        else from fraudstream.toml's [kafka] table."""
        ssl: list[tuple[str, str | Secret]] = []
        for name, prop in KAFKA_SECURITY_ENV.items():
            if prop in _SASL_PROPERTIES:
                continue
            value = lookup(name).value.strip()
            if value:
                ssl.append((prop, Secret(value) if _secret_property(prop) else value))
        security = cls(
            security_protocol=_optional_env("KAFKA_SECURITY_PROTOCOL").upper(),
            sasl_mechanism=_optional_env("KAFKA_SASL_MECHANISM").upper(),
            sasl_username=_optional_env("KAFKA_SASL_USERNAME"),
            sasl_password=Secret(lookup("KAFKA_SASL_PASSWORD").value),
            ssl=tuple(ssl),
        )
        security.check()
        return security

    def check(self) -> None:
        """Refuse settings that could only fail later, with the variable to fix."""
        protocol, mechanism = self.security_protocol, self.sasl_mechanism
        if protocol and protocol not in SECURITY_PROTOCOLS:
            choices = ", ".join(SECURITY_PROTOCOLS)
            raise FraudstreamError(
                f"{where('KAFKA_SECURITY_PROTOCOL')}={protocol!r}: choose one of {choices}",
                code="bad_setting",
            )
        if mechanism and mechanism not in SASL_MECHANISMS:
            raise FraudstreamError(
                f"{where('KAFKA_SASL_MECHANISM')}={mechanism!r}: choose one of "
                f"{', '.join(SASL_MECHANISMS)}",
                code="bad_setting",
            )
        if self.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise FraudstreamError(
                f"{where('KAFKA_SECURITY_PROTOCOL')}={protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD (or sasl.username and sasl.password in [kafka] of "
                "fraudstream.toml)",
                code="bad_setting",
            )
        for prop, value in self.ssl:
            if _missing_file(prop, value):
                raise FraudstreamError(
                    f"{where(env_name('kafka', prop))}={value}: no such file", code="bad_setting"
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
        for prop, value in self.ssl:
            conf[prop] = value.reveal() if isinstance(value, Secret) else value
        return conf

    def describe(self) -> str:
        """For messages: protocol, mechanism and user, never the password."""
        if not self.uses_sasl:
            return self.security_protocol or "PLAINTEXT"
        mechanism = self.sasl_mechanism or "SCRAM-SHA-512"
        return f"{self.security_protocol} {mechanism} as user {self.sasl_username!r}"


def _missing_file(prop: str, value: str | Secret) -> bool:
    if prop not in _FILE_PROPERTIES or not isinstance(value, str) or value == "probe":
        return False
    return not Path(value).expanduser().is_file()


def _secret_property(prop: str) -> bool:
    return KAFKA_CLIENT_PROPERTIES.get(prop, False)


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
    broker_tls: bool = field(default_factory=lambda: _flag_env(BROKER_TLS_ENV))
    """With broker_sasl: the client listener is SASL_SSL (a CA and certificates made locally)."""
    http_server: HttpServerSettings = field(default_factory=HttpServerSettings)
    http_client: HttpClientSettings = field(default_factory=HttpClientSettings)

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
