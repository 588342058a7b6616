"""docker-compose.yml checked without a Docker engine: what can be checked statically is.

Every project service's command must be a real `fraudstream` command with real options, every
environment variable a project container gets must be one the settings read, and ports and topics
must agree with DESIGN.md.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from services.cli import app
from services.common import topics
from services.common.settings import ENV_DEFAULTS, HTTP_SECURITY_ENV
from services.scorer.metrics import METRICS_HOST_ENV

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROJECT_SERVICES = {n: s for n, s in SERVICES.items() if s.get("build")}
CLI = typer.main.get_command(app)


def _fraudstream_invocations(service: dict[str, Any]) -> list[list[str]]:
    """The argument lists passed to `fraudstream` by a service (direct or via `sh -c`)."""
    command = service.get("command", [])
    if service.get("entrypoint") == ["sh", "-c"]:
        script = command[0] if isinstance(command, list) else command
        calls = []
        for part in script.split("&&"):
            words = shlex.split(part)
            assert words[0] == "fraudstream", f"shell step {part!r} is not a fraudstream command"
            calls.append(words[1:])
        return calls
    return [command if isinstance(command, list) else shlex.split(command)]


def _resolve(args: list[str]) -> tuple[Any, list[str]]:
    """Walk command groups (typer vendors click, so groups are found by their `commands`)."""
    command: Any = CLI
    rest = list(args)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.commands.get(name)
        assert sub is not None, f"`fraudstream {' '.join(args)}`: no command {name!r}"
        command = sub
    return command, rest


@pytest.mark.parametrize("name", sorted(PROJECT_SERVICES))
def test_every_command_and_option_exists_in_the_cli(name: str) -> None:
    for args in _fraudstream_invocations(PROJECT_SERVICES[name]):
        command, rest = _resolve(args)
        known = {opt for p in command.params for opt in getattr(p, "opts", [])}
        known |= {opt for p in command.params for opt in getattr(p, "secondary_opts", [])}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"{name}: `{word}` is not an option of {args}"


@pytest.mark.parametrize("name", sorted(PROJECT_SERVICES))
def test_environment_is_what_the_settings_read(name: str) -> None:
    env = PROJECT_SERVICES[name].get("environment", {})
    read = set(ENV_DEFAULTS) | set(HTTP_SECURITY_ENV)  # the security ones are optional
    read.add(METRICS_HOST_ENV)  # services/scorer/metrics.py
    assert set(env) <= read, f"{name} sets variables no setting reads"
    assert set(env) >= set(ENV_DEFAULTS), f"{name} leaves a setting at its localhost default"


def test_ports_agree_with_design() -> None:
    published = {
        name: [str(p).split(":")[-2] for p in svc.get("ports", [])]
        for name, svc in SERVICES.items()
    }
    assert published["kafka"] == ["9092"]
    assert published["schema-registry"] == ["8081"]
    assert published["ksqldb-server"] == ["8088"]


def test_ports_are_published_on_loopback_only() -> None:
    """No service of the stack authenticates, so none may be reachable from other machines."""
    for name, svc in SERVICES.items():
        for port in svc.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (
                f"{name} publishes {port!r} on every interface; write '127.0.0.1:HOST:CONTAINER'"
            )
            assert port.count(":") == 2, f"{name}: {port!r} is not 127.0.0.1:HOST:CONTAINER"


def test_images_are_pinned_and_infrastructure_has_health_checks() -> None:
    for name, svc in SERVICES.items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned image {image}"
    for name in ("kafka", "schema-registry", "ksqldb-server"):
        assert "healthcheck" in SERVICES[name], f"{name} has no health check"


def test_start_order_and_models_bind_mount() -> None:
    for name, svc in PROJECT_SERVICES.items():
        assert svc.get("depends_on"), f"{name} starts without waiting for anything"
        for dep, cond in svc["depends_on"].items():
            assert dep in SERVICES
            assert cond["condition"] in {
                "service_healthy",
                "service_completed_successfully",
                "service_started",
            }
        assert "./models:/app/models" in svc.get("volumes", []), f"{name} misses ./models"
        assert svc["environment"]["MODELS_DIR"] == "/app/models"


def test_topics_agree_with_design() -> None:
    used = set()
    for svc in PROJECT_SERVICES.values():
        for args in _fraudstream_invocations(svc):
            for flag, value in itertools.pairwise(args):
                if flag in {"--topic", "--alerts-topic"}:
                    used.add(value)
    design = {topics.SOURCE_TOPIC, topics.PREPROCESSED_TOPIC, topics.SCORING_TOPIC}
    assert used <= design | {topics.ALERTS_TOPIC}
    assert topics.ALERTS_TOPIC in used and topics.PREPROCESSED_TOPIC in used


def test_dockerfile_is_slim_non_root_and_one_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim-[a-z]+ ", dockerfile, re.MULTILINE)
    assert "USER fraudstream" in dockerfile
    assert 'ENTRYPOINT ["fraudstream"]' in dockerfile
    images = {svc["image"] for svc in PROJECT_SERVICES.values()}
    assert len(images) == 1


def validate_compose(document: dict[str, Any]) -> None:
    """Validate against tests/compose_spec/ (the Compose Specification's schema, see its
    README); raise AssertionError naming every violation."""
    import jsonschema

    schema = json.loads((ROOT / "tests/compose_spec/compose_spec.json").read_text())
    # the copy predates the top-level `name` the Compose Specification added since; that one
    # property (a string, as in today's spec) is the only addition
    schema["properties"].setdefault("name", {"type": "string"})
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_file_validates_against_the_compose_specification() -> None:
    validate_compose(COMPOSE)
    broken = dict(COMPOSE, services={"kafka": {"depends_on": {"x": {"condition": "soon"}}}})
    with pytest.raises(AssertionError, match="depends_on"):
        validate_compose(broken)


def test_images_are_exact_versions() -> None:
    """Exact releases: x.y.z (Confluent 8.x), never a floating minor or a bare major."""
    for name, svc in SERVICES.items():
        if "build" in svc:
            continue
        tag = svc["image"].rsplit(":", 1)[1]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {svc['image']} is not exact"
        if svc["image"].startswith("confluentinc/"):
            assert tag.startswith("8."), f"{name}: Confluent Platform 8.x expected"


def test_state_survives_compose_down() -> None:
    """Kafka's log dirs, the numba cache and Prometheus' data are volumes; ksqlDB is
    exactly-once (a restart never duplicates rows into the scoring topic)."""
    kafka = SERVICES["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert f"kafka-data:{log_dirs}" in kafka["volumes"]
    ksqldb = SERVICES["ksqldb-server"]["environment"]
    assert ksqldb["KSQL_KSQL_STREAMS_PROCESSING_GUARANTEE"] == "exactly_once_v2"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "NUMBA_CACHE_DIR=/app/.cache/numba" in dockerfile
    for name, svc in PROJECT_SERVICES.items():
        assert "cache:/app/.cache" in svc["volumes"], f"{name}: numba cache not kept"


def test_trainer_waits_for_the_rows_it_trains_on() -> None:
    (args,) = _fraudstream_invocations(PROJECT_SERVICES["trainer"])
    opts = dict(itertools.pairwise(args))
    assert opts["--wait-rows"] == opts["--max-records"]
    producer = " ".join(" ".join(a) for a in _fraudstream_invocations(PROJECT_SERVICES["producer"]))
    rows = int(re.search(r"--rows (\d+)", producer).group(1))  # type: ignore[union-attr]
    assert int(opts["--max-records"]) == int(rows * 0.7), "train on the earliest 70 %, as `run`"


def test_dockerfile_installs_the_lock_with_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r requirements/base.txt" in dockerfile
    assert "pip install --no-deps --no-build-isolation ." in dockerfile
