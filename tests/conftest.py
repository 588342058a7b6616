"""Shared fixtures: the real Apache Kafka broker (started once per session, or the one running),
the Schema Registry and the KSQL server, and per-test topic names.

Integration tests are marked `slow`; `pytest -m "not slow"` is the quick loop.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"


def _start(only: str) -> None:
    """Start what is not running yet. Under pytest-xdist several workers ask at once: a file
    lock lets the first start each component while the others wait and then find it healthy."""
    import fcntl

    from services.stack.cli import up

    home = Path(get_settings().home)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".test-stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        up(only)


_handed_out: list[str] = []
"""The topic names and suffixes this test process gave its tests (`topic_name`, `unique`)."""
_broker_used = False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """A real broker: the one at KAFKA_BOOTSTRAP_SERVERS, or the embedded one started now."""
    global _broker_used
    _start("kafka")
    _broker_used = True
    return get_settings().bootstrap_servers


@pytest.fixture(scope="session")
def schema_registry_url(kafka_bootstrap: str) -> str:
    _start("kafka,schema-registry")
    return get_settings().schema_registry_url


@pytest.fixture(scope="session")
def ksql_url(schema_registry_url: str) -> str:
    _start("kafka,schema-registry,ksql-server")
    return get_settings().ksql_url


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh topic name for this test (the topic itself is created by the code under test)."""
    base = re.sub(r"[^A-Za-z0-9]+", "_", request.node.name)[:60]
    name = f"t_{base}_{uuid.uuid4().hex[:8]}"
    _handed_out.append(name)
    yield name


@pytest.fixture
def unique() -> str:
    """A short random suffix for consumer groups, subjects and other per-test names."""
    suffix = uuid.uuid4().hex[:10]
    _handed_out.append(suffix)
    return suffix


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Delete the `t_…` topics this process's tests left on the shared broker.

    The stack outlives the tests (it is the developer's `make run` stack too), and every
    partition left behind stays in the broker's heap and start-up for good (docs/latency.md,
    seventh pass). Only names built from this process's own `topic_name` / `unique` values go,
    so a test process running beside this one (the own-stack tests of `make test`) loses none."""
    if not (_broker_used and _handed_out):
        return
    from confluent_kafka import KafkaException

    from services.common.kafka import delete_topics, make_admin

    try:
        topics = make_admin(quiet=True).list_topics(timeout=10).topics
        left = [t for t in topics if t.startswith("t_") and any(h in t for h in _handed_out)]
        delete_topics(left)
    except KafkaException as exc:  # the broker went away: nothing to tidy
        print(f"\nnote: the tests' topics were not deleted: {exc}")


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
