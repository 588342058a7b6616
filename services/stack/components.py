"""The embedded stack's components: the Kafka broker, the Schema Registry and the KSQL server.

Each answers the same questions (healthy? running? memory?) so `stack up/down/status` can treat
them alike. A component whose address already answers (an external service, or ours from an
earlier `stack up`) is used as it is, never started twice.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx

from services.broker.launcher import KafkaBroker
from services.common.errors import FraudstreamError
from services.common.http.clients import Service, httpx_options
from services.common.process import ManagedProcess, port_in_use
from services.common.settings import Settings


class BrokerComponent:
    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.broker = KafkaBroker(settings)
        self.address = settings.bootstrap_servers

    def healthy(self) -> bool:
        return self.broker.healthy()

    def owned(self) -> bool:
        return self.broker.process.pid() is not None

    def start(self) -> None:
        self.broker.start()
        if self.broker.sasl_users() is not None:
            from services.broker.sasl import apply_acls, project_acls

            apply_acls(self.broker.address, self.broker.admin_config(), project_acls())
            ca = self.broker.ca()
            print(
                f"SASL{'_SSL' if ca else ''} on: credentials per service in "
                f"{self.broker.sasl_dir}/<user>.env" + (f", CA {ca}" if ca else ""),
                file=sys.stderr,
            )

    def stop(self) -> bool:
        return self.broker.stop()

    def rss_bytes(self) -> int | None:
        return self.broker.rss_bytes()


@dataclass
class HttpServerComponent:
    """One of our Python HTTP servers, started as `python -m services.cli <serve_args>`."""

    name: str
    url: str
    health_path: str
    serve_args: tuple[str, ...]
    settings: Settings
    client_kind: Service
    """Whose credentials and CA the health probe uses (docs/security.md)."""
    kafka_user: str | None = None
    """The SASL user it connects to the embedded broker as, when that broker has SASL on."""
    start_timeout: float = 60.0

    @property
    def address(self) -> str:
        return self.url

    @property
    def process(self) -> ManagedProcess:
        run, logs = self.settings.run_dir, self.settings.logs_dir
        return ManagedProcess(self.name, run / f"{self.name}.pid", logs / f"{self.name}.log")

    def healthy(self) -> bool:
        try:
            options = httpx_options(self.client_kind)
            response = httpx.get(self.url + self.health_path, timeout=2.0, **options)
            return response.status_code == 200
        except httpx.HTTPError:
            return False

    def owned(self) -> bool:
        return self.process.pid() is not None

    def start(self) -> None:
        if self.healthy():
            return
        parsed = urlparse(self.url)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
        if port_in_use(host, port):
            raise FraudstreamError(
                f"port {port} is taken by a program that does not answer as the {self.name}",
                code="port_taken",
            )
        proc = self.process
        env = settings_env(self.settings)
        if self.kafka_user:  # the embedded broker's SASL user for this server, if SASL is on
            env.update(KafkaBroker(self.settings).client_env(self.kafka_user))
        proc.start([sys.executable, "-m", "services.cli", *self.serve_args], env)
        proc.wait_healthy(self.healthy, self.start_timeout)

    def stop(self) -> bool:
        return self.process.stop(timeout=15.0)

    def rss_bytes(self) -> int | None:
        return self.process.rss_bytes()


Component = BrokerComponent | HttpServerComponent

KSQL_SERVER_PROPERTIES = ("ksql.streams.processing.guarantee=exactly_once_v2",)
"""The embedded KSQL server's server-wide properties: the pipeline's queries run exactly-once
(docker-compose.yml sets the same on ksqlDB), so a crash cannot duplicate the scorer's input."""


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings (a stack started for other
    addresses than the caller's own, as the chaos tests do)."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "KSQL_URL": settings.ksql_url,
        "FRAUDSTREAM_HOME": str(settings.home),
        "MODELS_DIR": str(settings.models_dir),
    }


def stack_components(settings: Settings) -> list[Component]:
    """In start order: each later component needs the ones before it."""
    return [
        BrokerComponent(settings),
        HttpServerComponent(
            "schema-registry",
            settings.schema_registry_url.rstrip("/"),
            "/",
            ("registry", "serve"),
            settings,
            "schema-registry",
            kafka_user="schema-registry",
        ),
        HttpServerComponent(
            "ksql-server",
            settings.ksql_url.rstrip("/"),
            "/healthcheck",
            ("ksql", "serve", *(f"--property={p}" for p in KSQL_SERVER_PROPERTIES)),
            settings,
            "ksql",
            kafka_user="ksql",
        ),
    ]


def console_component(settings: Settings) -> HttpServerComponent:
    """The analyst's console (`fraudstream ui`) at FRAUDSTREAM_UI_URL (default
    http://127.0.0.1:8090): `stack up` and `fraudstream run` start it after the stack."""
    from services.console.config import ui_host_port, ui_url

    url = ui_url()
    host, port = ui_host_port(url)
    args = ("ui", "--host", host, "--port", str(port))
    return HttpServerComponent("console", url, "/healthz", args, settings, "ksql")
