"""`fraudstream bench`: the options it hands to the bench scripts (without running a real one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services import bench_cli
from services.cli import app

ECHO = """import argparse, sys
parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=7)
print("rounds", parser.parse_args().rounds)
"""


@pytest.fixture
def bench_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "bench_echo.py").write_text(ECHO)
    (tmp_path / "bench_plain.py").write_text("import sys\nprint('argv', sys.argv[1:])\n")
    monkeypatch.setattr(bench_cli, "BENCH_DIR", tmp_path)
    return tmp_path


def test_rounds_reach_a_bench_that_takes_them(bench_dir: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "echo", "--rounds", "3"])
    assert result.exit_code == 0, result.output
    assert "rounds 3" in result.output


def test_without_rounds_each_bench_keeps_its_default(bench_dir: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "echo"])
    assert "rounds 7" in result.output


def test_a_bench_without_rounds_is_not_handed_them(bench_dir: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "plain", "--rounds", "3"])
    assert result.exit_code == 0, result.output
    assert "argv []" in result.output


def test_rounds_must_be_positive(bench_dir: Path) -> None:
    assert CliRunner().invoke(app, ["bench", "echo", "--rounds", "0"]).exit_code != 0
