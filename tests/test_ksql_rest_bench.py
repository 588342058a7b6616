"""A tiny run of bench/bench_ksql.py, so the benchmark cannot rot (figures are not checked)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_ksql.py"


@pytest.mark.slow
def test_bench_ksql_runs(ksql_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_ksql", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ratio = bench.run(rows=3000, latency_records=20, rounds=2)
    out = capsys.readouterr().out
    assert ratio > 0
    assert "push query latency (produce → row): p50" in out
    assert out.strip().splitlines()[-1].startswith(f"ksql: ratio {ratio:.2f}")
