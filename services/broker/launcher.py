"""Resolve, format, start and stop a single-node Apache Kafka broker in KRaft mode.

Nothing is installed by hand: the jars come from Maven Central through `pom.xml` beside this file
and are kept under `$FRAUDSTREAM_HOME/kafka/libs`; the storage is formatted once, so a restart
keeps topics and data.

With `FRAUDSTREAM_BROKER_SASL=true` (or `stack up --sasl`) the broker is formatted with one SCRAM
user per service and started with SASL and the ACL authorizer (services/broker/sasl.py);
`FRAUDSTREAM_BROKER_TLS=true` as well (or `stack up --sasl-ssl`) makes its client listener
SASL_SSL, with a CA and certificate it makes itself (services/broker/tls.py). A data directory
set up that way stays that way: starting it without the flags keeps SASL (and TLS) on, so
protection is never dropped by a forgotten setting.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.broker import coordinator_logs
from services.broker.sasl import ADMIN_USER, SaslUsers, sasl_server_properties
from services.broker.tls import BrokerTls
from services.common.errors import FraudstreamError
from services.common.kafka import broker_reachable, wait_for_broker
from services.common.process import ManagedProcess, port_in_use
from services.common.settings import BROKER_SASL_ENV, Settings, get_settings

POM = Path(__file__).with_name("pom.xml")
HEAP = os.environ.get("FRAUDSTREAM_BROKER_HEAP", "384m")
JVM_OPTS = [
    f"-Xmx{HEAP}",
    "-Xms128m",
    "-XX:MaxMetaspaceSize=160m",
    "-XX:ReservedCodeCacheSize=64m",
    "-XX:MaxDirectMemorySize=128m",
    "-XX:+UseSerialGC",
    "-Xss512k",
    "-Djava.awt.headless=true",
]


def _split_bootstrap(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return (host or "localhost"), int(port or 9092)


@dataclass
class KafkaBroker:
    """The embedded broker's files, process and health."""

    settings: Settings

    @classmethod
    def from_env(cls) -> KafkaBroker:
        return cls(get_settings())

    # --- locations -------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.settings.home / "kafka"

    @property
    def libs(self) -> Path:
        return self.root / "libs"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def config_file(self) -> Path:
        return self.root / "config" / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.root / "config" / "log4j2.properties"

    @property
    def sasl_dir(self) -> Path:
        return self.root / "sasl"

    @property
    def tls(self) -> BrokerTls:
        """Where the CA (`ca.pem`, for clients) and the broker's keystore are kept."""
        return BrokerTls(self.root / "tls")

    @property
    def port(self) -> int:
        return _split_bootstrap(self.settings.bootstrap_servers)[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            "kafka", self.settings.run_dir / "kafka.pid", self.settings.logs_dir / "kafka.out"
        )

    # --- setup -----------------------------------------------------------------------------
    def java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        candidate = Path(java_home, "bin", "java") if java_home else None
        if candidate and candidate.exists():
            return str(candidate)
        found = shutil.which("java")
        if not found:
            raise FraudstreamError(
                "Java not found: the embedded Kafka broker needs Java 17+ "
                "(install it, e.g. `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME)",
                code="java_missing",
            )
        return found

    def jars_resolved(self) -> bool:
        return (self.libs / ".pom-sha256").is_file() and (
            (self.libs / ".pom-sha256").read_text() == _pom_digest()
        )

    def resolve_jars(self) -> Path:
        """Copy kafka_2.13 and its runtime dependencies from Maven into `libs/` (once)."""
        if self.jars_resolved():
            return self.libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise FraudstreamError(
                "Maven not found: it resolves the Kafka jars from Maven Central "
                "(install it, e.g. `apt-get install maven`)",
                code="maven_missing",
            )
        staging = self.root / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
            raise FraudstreamError(
                f"Maven could not resolve the Kafka jars: {' '.join(tail)}", code="maven_failed"
            )
        (staging / ".pom-sha256").write_text(_pom_digest())
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        return self.libs

    # --- SASL --------------------------------------------------------------------------------
    def sasl_users(self) -> SaslUsers | None:
        """The SCRAM users this broker was formatted with; None for a PLAINTEXT broker."""
        return SaslUsers.load(self.sasl_dir)

    def ca(self) -> Path | None:
        """The CA clients must trust: set when the listener is SASL_SSL."""
        return self.tls.ca if self.tls.exists() else None

    def client_config(self, user: str = ADMIN_USER) -> dict[str, str]:
        """Client properties to reach this broker as `user` (empty for PLAINTEXT)."""
        users = self.sasl_users()
        return users.client_config(user, self.ca()) if users else {}

    def admin_config(self) -> dict[str, str]:
        """Client properties to reach this broker as its admin (empty for PLAINTEXT)."""
        return self.client_config(ADMIN_USER)

    def client_env(self, user: str) -> dict[str, str]:
        """The environment that makes a service connect as `user` (empty for PLAINTEXT)."""
        users = self.sasl_users()
        return users.client_env(user, self.address, self.ca()) if users else {}

    def _prepare_sasl(self) -> SaslUsers | None:
        """The users to start with: those of the data directory, or new ones for a fresh one
        when SASL is asked for; a PLAINTEXT data directory cannot be switched. TLS, once asked
        for, is made here and kept."""
        users = self.sasl_users()
        wants_tls = self.settings.broker_tls or self.tls.exists()
        if users is None and (self.settings.broker_sasl or wants_tls):
            if (self.data_dir / "meta.properties").exists():
                raise FraudstreamError(
                    f"the Kafka data directory {self.data_dir} was formatted without SASL users; "
                    f"{BROKER_SASL_ENV}=true needs a fresh one (remove it, or use another "
                    "FRAUDSTREAM_HOME)",
                    code="data_dir",
                )
            users = SaslUsers.generate()
        if users is not None:
            tls = self.tls.ensure() if wants_tls else None
            users.save(self.sasl_dir, self.address, tls)
        return users

    def write_config(self, users: SaslUsers | None = None) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:  # 0600: with SASL it holds the admin's password
            tls = self.tls if users and self.tls.exists() else None
            out.write(_server_properties(self.port, self.data_dir, users, tls))
        self.log4j_file.write_text(_log4j2_properties(self.settings.logs_dir / "kafka.log"))

    def format_storage(self, users: SaslUsers | None = None) -> None:
        """Format the KRaft storage once; refuse a data directory that is not ours."""
        meta = self.data_dir / "meta.properties"
        if meta.exists():
            props = _read_properties(meta)
            if not props.get("cluster.id") or props.get("node.id") != "1":
                raise FraudstreamError(
                    f"corrupt Kafka data directory {self.data_dir}: meta.properties has no "
                    "cluster.id/node.id 1 (remove the directory to start afresh)",
                    code="data_dir",
                )
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise FraudstreamError(
                f"corrupt Kafka data directory {self.data_dir}: files but no meta.properties "
                "(remove the directory to start afresh)",
                code="data_dir",
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = _cluster_id()
        result = subprocess.run(
            [
                self.java(),
                *self._classpath_args(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.config_file),
                *(users.scram_arguments() if users else []),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise FraudstreamError(
                f"formatting Kafka storage failed: {output}", code="format_failed"
            )

    def _classpath_args(self) -> list[str]:
        return ["-cp", str(self.libs / "*"), f"-Dlog4j2.configurationFile={self.log4j_file}"]

    # --- lifecycle -------------------------------------------------------------------------
    def healthy(self) -> bool:
        return broker_reachable(self.address, timeout=2.0, **self.admin_config())

    def start(self, timeout: float = 90.0) -> None:
        """Start the broker unless it (or another broker on our port) already answers."""
        if self.process.pid() is not None and self.healthy():
            return
        java = self.java()
        if port_in_use("127.0.0.1", self.port):
            if self.healthy():
                return  # a broker we did not start is serving this address: use it
            raise FraudstreamError(
                f"port {self.port} is taken by another program that is not a Kafka broker "
                "(stop it or set KAFKA_BOOTSTRAP_SERVERS to another port)",
                code="port_taken",
            )
        self.resolve_jars()
        users = self._prepare_sasl()
        self.write_config(users)
        self.format_storage(users)
        proc = self.process
        proc.start([java, *JVM_OPTS, *self._classpath_args(), "kafka.Kafka", str(self.config_file)])
        proc.wait_healthy(
            self.healthy, timeout, lambda: _last_error(proc.log_tail(40)), interval=0.5
        )
        wait_for_broker(self.address, timeout=10, **self.admin_config())
        coordinator_logs.shrink_segments(self.address, self.admin_config())

    def stop(self, timeout: float = 30.0) -> bool:
        return self.process.stop(timeout)

    def rss_bytes(self) -> int | None:
        return self.process.rss_bytes()


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).

    Like Kafka's own Uuid.randomUuid, an id starting with '-' is drawn again: the storage tool's
    argument parser would read it as an option."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def _last_error(log: str) -> str:
    for line in reversed(log.splitlines()):
        if "ERROR" in line or "Exception" in line:
            return line.strip()[:300]
    return log.splitlines()[-1][:300] if log else "no output"


def _plaintext_listeners(port: int) -> str:
    return f"""listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
"""


def _server_properties(
    port: int, data_dir: Path, users: SaslUsers | None = None, tls: BrokerTls | None = None
) -> str:
    listeners = sasl_server_properties(port, users, tls) if users else _plaintext_listeners(port)
    return f"""# Written by fraudstream: one KRaft node, broker and controller, on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{port + 1}
{listeners.rstrip()}
log.dirs={data_dir}
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=268435456
# the log cleaner's key map lives on the heap (Kafka's default 128 MB, a third of this heap):
# 16 MB holds ~600k keys a pass, far more than the compacted topics here; the old size made
# the broker's RSS 150 MB larger and its full collections more frequent
log.cleaner.dedupe.buffer.size=16777216
# small coordinator segments, so the cleaner compacts them (services/broker/coordinator_logs.py)
{coordinator_logs.server_properties().rstrip()}
"""


def _log4j2_properties(log_file: Path) -> str:
    return f"""status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.filePattern = {log_file}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""
