"""The whole pipeline against a secured broker, as a user would run it on a real cluster.

`fraudstream stack up --sasl-ssl` starts a broker of our own (temp home, free ports) whose only
client listener is SASL_SSL with SCRAM-SHA-512, with a CA and certificate made at start and ACLs;
the Schema Registry and the KSQL server connect to it as their own SASL users. Then, with nothing
but the trainer's environment file (`$FRAUDSTREAM_HOME/kafka/sasl/trainer.env`),
`fraudstream run --rows 20000 --exit` must pass end to end; with a wrong password it must stop
within seconds with a one-line error. No password may appear in any output or log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.broker.launcher import KafkaBroker
from services.common.config_file import CONFIG_ENV, client_setting_names
from services.common.process import free_port, free_port_pair

pytestmark = [pytest.mark.slow, pytest.mark.own_stack]

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class SecuredStack:
    home: Path
    env: dict[str, str]
    """The stack's addresses, without credentials: what a user has before sourcing a file."""

    def user_env(self, user: str) -> dict[str, str]:
        """The environment of `user`, from the file `stack up` wrote for it."""
        lines = (self.home / "kafka" / "sasl" / f"{user}.env").read_text().splitlines()
        values = dict(line.split("=", 1) for line in lines if "=" in line)
        return {**self.env, **values}

    def secrets(self) -> list[str]:
        users = json.loads((self.home / "kafka" / "sasl" / "users.json").read_text())
        keystore = (self.home / "kafka" / "tls" / "keystore.password").read_text().strip()
        return [*users.values(), keystore]


def fraudstream(
    env: dict[str, str], *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def secured_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredStack]:
    home = tmp_path_factory.mktemp("sasl-ssl-home")
    (home / "kafka").mkdir()
    (home / "kafka" / "libs").symlink_to(KafkaBroker.from_env().resolve_jars())
    env = {
        k: v for k, v in os.environ.items() if k not in client_setting_names() and k != CONFIG_ENV
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port_pair()}",
            "SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{free_port()}",
            "KSQL_URL": f"http://127.0.0.1:{free_port()}",
            "FRAUDSTREAM_HOME": str(home),
            "MODELS_DIR": str(home / "models"),
            # not the default 9464: the shared-stack tests run a pipeline beside this one
            "FRAUDSTREAM_METRICS_PORT": str(free_port()),
        }
    )
    stack = SecuredStack(home, env)
    try:
        up = fraudstream(env, "stack", "up", "--sasl-ssl", timeout=400)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "SASL_SSL on" in up.stderr and up.stdout.count("healthy") == 3
        yield stack
    finally:
        down = fraudstream(env, "stack", "down", timeout=120)
        print(down.stdout, down.stderr)


def _assert_no_secret(stack: SecuredStack, text: str) -> None:
    for secret in stack.secrets():
        assert secret not in text
    for log in (stack.home / "logs").rglob("*"):
        if log.is_file():
            content = log.read_text(errors="replace")
            assert not any(secret in content for secret in stack.secrets()), log


def test_the_broker_takes_only_sasl_ssl(secured_stack: SecuredStack) -> None:
    props = (secured_stack.home / "kafka" / "config" / "server.properties").read_text()
    assert "advertised.listeners=SASL_SSL://127.0.0.1:" in props
    assert "PLAINTEXT://" not in props.replace("SASL_PLAINTEXT://", "")
    shown = fraudstream(secured_stack.user_env("trainer"), "config", "show", timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "KAFKA_SECURITY_PROTOCOL" in shown.stdout and "SASL_SSL" in shown.stdout
    assert "KAFKA_SASL_PASSWORD" in shown.stdout and "****" in shown.stdout
    _assert_no_secret(secured_stack, shown.stdout + shown.stderr)


def test_wrong_password_is_a_one_line_error_within_seconds(secured_stack: SecuredStack) -> None:
    env = {**secured_stack.user_env("trainer"), "KAFKA_SASL_PASSWORD": "not-the-password"}
    started = time.monotonic()
    result = fraudstream(env, "run", "--rows", "1000", "--exit", timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0]
    assert "refused the credentials of user 'trainer'" in errors[0]
    assert "not-the-password" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 60, f"{elapsed:.1f}s"  # Python start-up included: 8 s here, loaded


def test_the_whole_pipeline_runs_over_sasl_ssl(secured_stack: SecuredStack) -> None:
    result = fraudstream(secured_stack.user_env("trainer"), "run", "--rows", "20000", "--exit")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("records 20000 alerts "), last
    alerts = int(last.split()[3])
    assert alerts > 0
    assert "SASL authentication error" not in result.stderr  # no scary noise on success
    _assert_no_secret(secured_stack, result.stdout + result.stderr)
