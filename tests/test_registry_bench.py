"""Smoke test of the registry benchmark's code (the benchmark itself is not run by `make test`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from services.schema_registry import schemas

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_registry.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_registry", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_schemas_are_valid_and_distinct() -> None:
    bench = load_bench()
    texts = [schemas.parse(bench.schema_text(i)).canonical for i in range(20)]
    assert len(set(texts)) == 20


def test_rate_counts_every_call() -> None:
    bench = load_bench()
    calls: list[int] = []
    assert bench.rate(50, calls.append) > 0
    assert calls == list(range(50))
