"""Smoke test of bench/bench_trainer.py on a tiny topic (slow: broker, registry, a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_trainer_runs_and_prints_its_ratio(schema_registry_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "bench/bench_trainer.py", "--rows", "3000", "--epochs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("trainer ingest / bare consume = ")
    ratio = float(lines[-1].split("=")[1].split()[0])
    assert ratio > 0
    assert any("peak resident memory" in line for line in lines)
