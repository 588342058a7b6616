"""Start-up of the commands that neither train nor score: they must not load the heavy modules
(pandas, TensorFlow/Keras, scikit-learn, matplotlib, numba), which cost about a second before
the first record. Checked on `sys.modules` in a fresh interpreter, not by timing (the bench
line `fraudstream bench producer` reports the time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("pandas", "tensorflow", "keras", "sklearn", "matplotlib", "numba")
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
    env = dict(os.environ, PYTHONPATH=str(ROOT), FRAUDSTREAM_HOME=str(tmp_path / "home"))
    env.update(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", KSQL_URL="http://127.0.0.1:1")
    out = subprocess.run(
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
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_light_commands_do_not_import_heavy_modules(tmp_path: Path) -> None:
    commands = [
        ["--help"],
        ["datagen", "--rows", "2", "--out", str(tmp_path / "rows.csv")],
        ["produce", "--help"],
        ["produce", "--csv", str(tmp_path / "missing.csv")],  # imports the replay, then refuses
        ["alerts", "--help"],
        ["ksql", "apply", "--help"],
        ["ksql", "query", "--help"],
        ["stack", "status", "--help"],
        ["stack", "up", "--help"],
        ["config", "show"],
    ]
    assert _heavy_after(commands, tmp_path) == []
    assert (tmp_path / "rows.csv").exists()


def test_the_check_sees_a_heavy_import(tmp_path: Path) -> None:
    """The check can fail: the same run with pandas loaded first reports it."""
    assert _heavy_after([["--help"]], tmp_path, preamble="import pandas") == ["pandas"]
