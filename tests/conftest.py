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


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """A real broker: the one at KAFKA_BOOTSTRAP_SERVERS, or the embedded one started now."""
    _start("kafka")
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
    yield f"t_{base}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def unique() -> str:
    """A short random suffix for consumer groups, subjects and other per-test names."""
    return uuid.uuid4().hex[:10]


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
