"""Start-up of the commands that neither train nor score: they must not load the heavy modules
(pandas, TensorFlow/Keras, scikit-learn, matplotlib, numba), which cost about a second before
the first record, nor those a command does not use itself: pydantic (typer's option coercion,
replaced by `services.cli_coercion` for plain options), numpy (only the commands that make or
read rows), confluent-kafka (only those that talk to Kafka). Checked on `sys.modules` in a fresh
interpreter, not by timing (`fraudstream bench producer` reports the time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "pandas",
    "tensorflow",
    "keras",
    "sklearn",
    "matplotlib",
    "numba",
    "pydantic",
    "numpy",
    "confluent_kafka",
)
_RUN = """
import json, sys
{preamble}
from services.cli import app
for args in json.loads(sys.argv[1]):
    try:
        app(args, standalone_mode=False, prog_name="fraudstream")
    except BaseException as exc:  # a refused file or a help page: the imports are what count
        print(type(exc).__name__, exc, file=sys.stderr)
print(json.dumps(sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)))
"""


def _heavy_after(commands: list[list[str]], tmp_path: Path, preamble: str = "") -> list[str]:
    out = _run(commands, tmp_path, preamble)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _run(
    commands: list[list[str]], tmp_path: Path, preamble: str = ""
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), FRAUDSTREAM_HOME=str(tmp_path / "home"))
    env.update(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", KSQL_URL="http://127.0.0.1:1")
    return subprocess.run(
        [
            sys.executable,
            "-c",
            _RUN.format(preamble=preamble),
            json.dumps(commands),
            json.dumps(HEAVY),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )


def test_help_and_local_commands_import_none_of_them(tmp_path: Path) -> None:
    commands = [
        ["--help"],
        ["produce", "--help"],
        ["datagen", "--help"],
        ["alerts", "--help"],
        ["ksql", "apply", "--help"],
        ["ksql", "query", "--help"],
        ["stack", "--help"],
        ["stack", "status", "--help"],
        ["stack", "up", "--help"],
        ["config", "show"],
    ]
    assert _heavy_after(commands, tmp_path) == []


def test_datagen_imports_only_numpy(tmp_path: Path) -> None:
    commands = [["datagen", "--rows", "2", "--out", str(tmp_path / "rows.csv"), "--seed", "3"]]
    assert _heavy_after(commands, tmp_path) == ["numpy"]
    assert (tmp_path / "rows.csv").exists()


def test_produce_imports_only_numpy_and_kafka(tmp_path: Path) -> None:
    commands = [["produce", "--csv", str(tmp_path / "missing.csv")]]  # imports the replay, refuses
    assert _heavy_after(commands, tmp_path) == ["confluent_kafka", "numpy"]


def test_the_alerts_viewer_loads_no_compiled_codecs(tmp_path: Path) -> None:
    """`fraudstream alerts` decodes record by record (fastavro): no numba, no numpy."""
    assert _heavy_after([], tmp_path, preamble="import services.alerts.viewer") == [
        "confluent_kafka"
    ]


def test_a_bad_option_still_gets_typers_message(tmp_path: Path) -> None:
    """Only plain values skip pydantic: a bad one goes through typer's adapter, which says
    what is wrong in its own words."""
    out = _run([["datagen", "--rows", "many", "--out", str(tmp_path / "x.csv")]], tmp_path)
    assert "BadParameter" in out.stderr and "valid integer" in out.stderr
    assert not (tmp_path / "x.csv").exists()


def test_the_check_sees_a_heavy_import(tmp_path: Path) -> None:
    """The check can fail: the same run with pandas loaded first reports it."""
    assert "pandas" in _heavy_after([["--help"]], tmp_path, preamble="import pandas")
