"""Past one machine the KSQL part runs on a ksqlDB cluster (docs/scaling.md): the scorer and the
trainer must not depend on anything only the embedded KSQL server does. They need Kafka, the
Schema Registry and the Avro topics, nothing else:

- statically, no module of services/scorer or services/trainer reaches services.ksql_server,
  directly or through the modules it imports (the import graph of tests/test_import_graph.py,
  which counts lazy imports too);
- at run time, importing every scorer and trainer module in a fresh interpreter loads no
  services.ksql_server module;
- neither reads the KSQL URL: their inputs are plain Avro topics (the scorer's and trainer's
  integration tests write them with confluent-kafka's AvroSerializer, no KSQL server involved).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_import_graph import EDGES, MODULES

ROOT = Path(__file__).resolve().parent.parent
CONSUMERS = ("services.scorer", "services.trainer")


def _of(package: str) -> list[str]:
    return sorted(m for m in MODULES if m == package or m.startswith(package + "."))


def _reach(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        for nxt in EDGES.get(module, set()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("package", CONSUMERS)
def test_no_import_path_reaches_the_ksql_server(package: str) -> None:
    modules = _of(package)
    assert modules, package
    for module in modules:
        reached = sorted(m for m in _reach(module) if m.startswith("services.ksql_server"))
        assert reached == [], f"{module} reaches {reached}"


def test_the_reach_check_sees_a_ksql_import() -> None:
    """The check can fail: the CLI, which mounts `fraudstream ksql`, does reach it."""
    assert any(m.startswith("services.ksql_server") for m in _reach("services.cli"))


@pytest.mark.slow  # imports TensorFlow: seconds, not milliseconds
def test_loading_the_scorer_and_trainer_loads_no_ksql_server_module() -> None:
    modules = [m for package in CONSUMERS for m in _of(package)]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('services.ksql_server'))))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("package", CONSUMERS)
def test_neither_reads_the_ksql_url(package: str) -> None:
    uses = re.compile(r"ksql_url|KSQL_URL|KsqlClient")
    for module in _of(package):
        path, _is_package = MODULES[module]
        assert not uses.search(path.read_text()), f"{module} talks to a KSQL server"
