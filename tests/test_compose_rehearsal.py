"""A rehearsal of `docker compose up` without Docker: the compose file's own steps, for real.

No machine here runs Docker, so this reads docker-compose.yml, validates it against the Compose
Specification's schema (tests/compose_spec/), and plays it: every service in `depends_on`
order, each one starting only when its dependencies meet their conditions (`service_started`,
`service_healthy` by running the health check the file declares, `service_completed_successfully`
by the exit code). The infrastructure services (kafka, schema-registry, ksqldb-server) are played
by the embedded stack's components on free ports; each project service runs its `command` (and
`entrypoint`) as written, through a `fraudstream` on PATH, with the image's ENV and its own
`environment`, service host names mapped to the embedded stack's addresses and container paths
(/app/...) to a temporary folder, as Docker would map them. The alerts service's stdout is a
file, as under `docker compose logs`: the rehearsal ends when it has printed alerts there.

What it cannot play: Prometheus and Grafana (no images here; tests/test_monitoring.py checks
their files against the scorer's metrics, and this test scrapes the rehearsed scorer), `user:`,
`restart:` policies (a service that dies fails the test), and health checks whose program is not
here (kafka's script: the broker component's own probe stands in).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_compose import validate_compose
from test_monitoring import metric_names, queries

from services.broker.launcher import KafkaBroker
from services.common.process import free_port_pair
from services.common.settings import ENV_DEFAULTS, Settings, get_settings
from services.stack.components import Component, stack_components

pytestmark = [pytest.mark.slow, pytest.mark.own_stack]

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
INFRA = {"kafka": "kafka", "schema-registry": "schema-registry", "ksqldb-server": "ksql-server"}
"""compose service → the embedded stack's component that plays it."""
NOT_PLAYED = {"prometheus", "grafana"}
ALERT_LINE = re.compile(r"^ID=\d+ USER=\S* .*SCORE=[\d.]+ .*MODEL_VERSION=\S+")


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec["condition"] for name, spec in deps.items()}


def start_order() -> list[str]:
    """Services in an order that honours depends_on (the file's order among equals)."""
    order: list[str] = []
    pending = [n for n in SERVICES if n not in NOT_PLAYED]
    while pending:
        ready = [n for n in pending if set(depends_on(SERVICES[n])) <= set(order)]
        assert ready, f"depends_on has a cycle among {pending}"
        order.append(ready[0])
        pending.remove(ready[0])
    return order


def image_env(app: Path) -> dict[str, str]:
    """The Dockerfile's ENV, /app mapped to `app`."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return {k: v.replace("/app", str(app)) for k, v in env.items()}


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert m, duration
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]


@dataclass
class Rehearsal:
    """The stack's addresses, the temporary /app, and what has been started."""

    settings: Settings
    app: Path
    bin: Path
    logs: Path
    metrics_port: int
    components: dict[str, Component] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)

    def mapping(self, service: str) -> dict[str, str]:
        """Container addresses and paths → the rehearsal's, as Docker's network and mounts."""
        sr = self.settings.schema_registry_url.removeprefix("http://")
        ksql = self.settings.ksql_url.removeprefix("http://")
        own_ports = {
            "kafka": {"localhost:9092": self.settings.bootstrap_servers},
            "schema-registry": {"localhost:8081": sr},
            "ksqldb-server": {"localhost:8088": ksql},
            "scorer": {"localhost:9464": f"127.0.0.1:{self.metrics_port}"},
        }.get(service, {})
        return {
            **own_ports,
            "kafka:29092": self.settings.bootstrap_servers,
            "schema-registry:8081": sr,
            "ksqldb-server:8088": ksql,
            "/app/": f"{self.app}/",
        }

    def rewrite(self, service: str, text: str) -> str:
        for before, after in self.mapping(service).items():
            text = text.replace(before, after)
        if text == "/app":
            return str(self.app)
        return text

    def env(self, name: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k not in ENV_DEFAULTS}
        declared = {
            k: self.rewrite(name, str(v)) for k, v in SERVICES[name].get("environment", {}).items()
        }
        for value in declared.values():
            for host in SERVICES:
                assert f"//{host}:" not in value and not value.startswith(f"{host}:"), value
        return {
            **base,
            **image_env(self.app),
            **declared,
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            # Docker gives each container its own ports; here they share one host
            "FRAUDSTREAM_METRICS_PORT": str(self.metrics_port),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }

    def argv(self, name: str) -> list[str]:
        service = SERVICES[name]
        entrypoint = service.get("entrypoint", ["fraudstream"])
        command = service.get("command", [])
        command = command if isinstance(command, list) else shlex.split(command)
        return [self.rewrite(name, str(word)) for word in [*entrypoint, *command]]

    def start(self, name: str) -> None:
        if name in INFRA:
            component = self.components[INFRA[name]]
            component.start()
        else:
            out = (self.logs / f"{name}.out").open("wb")
            err = (self.logs / f"{name}.err").open("wb")
            self.processes[name] = subprocess.Popen(
                self.argv(name),
                cwd=self.app,
                env=self.env(name),
                stdin=subprocess.DEVNULL,
                stdout=out,  # a file, not a terminal: what `docker compose logs` reads
                stderr=err,
                start_new_session=True,
            )
        self.started.append(name)

    def log_tail(self, name: str, lines: int = 30) -> str:
        parts = []
        for stream in ("out", "err"):
            path = self.logs / f"{name}.{stream}"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name} std{stream}\n" + "\n".join(tail))
        return "\n".join(parts)

    def healthy_once(self, name: str) -> bool:
        """One run of the service's declared health check (or its component's probe when
        the check's program is not on this machine)."""
        test = SERVICES[name]["healthcheck"]["test"]
        kind, args = test[0], test[1:]
        argv = ["sh", "-c", args[0]] if kind == "CMD-SHELL" else list(args)
        program = shlex.split(argv[2])[0] if kind == "CMD-SHELL" else argv[0]
        if shutil.which(program, path=f"{self.bin}{os.pathsep}{os.environ['PATH']}") is None:
            assert name in INFRA, f"{name}: health check program {program!r} missing"
            return self.components[INFRA[name]].healthy()
        argv = [self.rewrite(name, word) for word in argv]
        env = self.env(name) if name not in INFRA else dict(os.environ)
        env["PATH"] = f"{self.bin}{os.pathsep}{os.environ['PATH']}"
        timeout = seconds(SERVICES[name]["healthcheck"].get("timeout", "30s"))
        try:
            done = subprocess.run(argv, env=env, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def wait_healthy(self, name: str) -> None:
        check = SERVICES[name]["healthcheck"]
        interval = seconds(check.get("interval", "30s"))
        for _ in range(int(check.get("retries", 3)) + 1):
            self.assert_alive(name)
            if self.healthy_once(name):
                return
            time.sleep(interval)
        pytest.fail(f"{name} never became healthy\n{self.log_tail(name)}")

    def wait_completed(self, name: str, timeout: float = 900.0) -> None:
        proc = self.processes[name]
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} still running after {timeout:.0f}s\n{self.log_tail(name)}")
        assert code == 0, f"{name} exited {code}\n{self.log_tail(name)}"

    def assert_alive(self, name: str) -> None:
        proc = self.processes.get(name)
        if proc is not None and proc.poll() is not None:
            restart = SERVICES[name].get("restart", "no")
            pytest.fail(
                f"{name} exited {proc.returncode} (restart: {restart})\n{self.log_tail(name)}"
            )

    def wait_for(self, name: str, condition: str) -> None:
        assert name in self.started, f"{name} is not started yet"
        if condition == "service_healthy":
            self.wait_healthy(name)
        elif condition == "service_completed_successfully":
            self.wait_completed(name)
        else:
            assert condition == "service_started", condition

    def stop_all(self) -> None:
        """In reverse order of start, as `docker compose down`: the scorer ends its batch before
        the broker goes."""
        for name in reversed(self.started):
            proc = self.processes.get(name)
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            elif name in INFRA:
                self.components[INFRA[name]].stop()


@pytest.fixture
def rehearsal(tmp_path: Path) -> Iterator[Rehearsal]:
    jars = KafkaBroker(get_settings()).resolve_jars()
    app = tmp_path / "app"
    settings = Settings(
        bootstrap_servers=f"localhost:{free_port_pair()}",
        schema_registry_url=f"http://localhost:{free_port_pair()}",
        ksql_url=f"http://localhost:{free_port_pair()}",
        home=app / ".fraudstream",
        models_dir=app / "models",
    )
    (settings.home / "kafka").mkdir(parents=True)
    (settings.home / "kafka" / "libs").symlink_to(jars)
    (app / "ksql").symlink_to(ROOT / "ksql")  # the image's COPY ksql ksql
    for volume in SERVICES["scorer"]["volumes"]:
        (app / volume.split(":")[1].removeprefix("/app/")).mkdir(parents=True, exist_ok=True)
    Path(image_env(app)["HOME"]).mkdir(parents=True, exist_ok=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in (("fraudstream", "-m services.cli"), ("python", "")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {target} "$@"\n')
        shim.chmod(0o755)
    logs = tmp_path / "logs"
    logs.mkdir()
    play = Rehearsal(settings, app, bin_dir, logs, free_port_pair())
    play.components = {c.name: c for c in stack_components(settings)}
    try:
        yield play
    finally:
        play.stop_all()


def test_compose_up_rehearsed_until_alerts_show(rehearsal: Rehearsal) -> None:
    validate_compose(COMPOSE)
    for name in start_order():
        for dependency, condition in depends_on(SERVICES[name]).items():
            rehearsal.wait_for(dependency, condition)
        rehearsal.start(name)

    deadline = time.monotonic() + 600
    alerts_out = rehearsal.logs / "alerts.out"
    lines: list[str] = []
    while not lines:
        assert time.monotonic() < deadline, f"no alert printed\n{rehearsal.log_tail('alerts')}"
        for name in ("scorer", "alerts"):
            rehearsal.assert_alive(name)
        lines = [ln for ln in alerts_out.read_text().splitlines() if ALERT_LINE.match(ln)]
        time.sleep(1)
    assert not any("\x1b[" in ln for ln in alerts_out.read_text().splitlines()), "terminal codes"

    # what Prometheus would scrape from the scorer carries every series the dashboard queries
    url = f"http://127.0.0.1:{rehearsal.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        scraped = response.read().decode()
    names = {ln.split("{")[0].split(" ")[0] for ln in scraped.splitlines() if ln[:1] != "#"}
    wanted = set().union(*(metric_names(expr) for _where, expr in queries()))
    wanted -= {"fraudstream_scorer_dlq_total"}  # labelled: absent until a first dead letter
    assert wanted <= names, f"not scraped: {sorted(wanted - names)}"
    models = list((rehearsal.app / "models").glob("*/report.md"))
    assert models, "the trainer registered no version in the models mount"
