"""Start-up of the commands that neither train nor score: they must not load the heavy modules
(pandas, TensorFlow/Keras, scikit-learn, matplotlib, numba), which cost about a second before
the first record, nor those a command does not use itself: pydantic (typer's option coercion,
replaced by `services.cli_coercion` for plain options), numpy (only the commands that make
rows, and `produce` for the blocks its compiled path does not take), confluent-kafka (only those
that talk to Kafka), nor rich (typer's help panels: the help pages are click's plain text).
A command loads only the service that owns it. Checked on `sys.modules` in a fresh
interpreter, not by timing (`fraudstream bench producer` reports the time: under 0.3 s of CPU
for these)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.main import get_command_name
from typer.testing import CliRunner

from services.cli import SERVICES, build_app

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
    "rich",
    "markdown_it",
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
    code = _RUN.format(preamble=preamble)
    return _python(code, [json.dumps(commands), json.dumps(HEAVY)], tmp_path)


def _python(code: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter with `args`, away from any service and from the caller's
    OpenBLAS setting."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env.update(PYTHONPATH=str(ROOT), FRAUDSTREAM_HOME=str(tmp_path / "home"))
    env.update(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", KSQL_URL="http://127.0.0.1:1")
    return subprocess.run(
        [sys.executable, "-c", code, *args],
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


def test_datagen_starts_openblas_with_one_thread(tmp_path: Path) -> None:
    """Starting OpenBLAS's pool of one thread per core cost datagen 0.1 s of CPU: its numpy
    starts with one (checked on the library's own thread count, not on the variable)."""
    code = (
        "import json, sys\n"
        "from services.cli import app\n"
        "app(json.loads(sys.argv[1]), standalone_mode=False, prog_name='fraudstream')\n"
        "from threadpoolctl import threadpool_info\n"
        "print(json.dumps([p['num_threads'] for p in threadpool_info()"
        " if p['internal_api'] == 'openblas']))\n"
    )
    args = ["datagen", "--rows", "1", "--out", str(tmp_path / "rows.csv")]
    out = _python(code, [json.dumps(args)], tmp_path)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [1]


def test_produce_imports_only_kafka(tmp_path: Path) -> None:
    commands = [["produce", "--csv", str(tmp_path / "missing.csv")]]  # imports the replay, refuses
    assert _heavy_after(commands, tmp_path) == ["confluent_kafka"]


@pytest.mark.parametrize(("extended", "loads_numpy"), [(False, False), (True, True)])
def test_the_replay_loads_numpy_only_for_blocks_the_compiled_path_leaves(
    tmp_path: Path, extended: bool, loads_numpy: bool
) -> None:
    """A Kaggle file of plain rows (one with an exponent, as the real data set writes a few)
    is read by the compiled path alone, so `produce` starts without numpy (0.08 s of CPU); a
    file it does not take (the extended layout) loads the numpy path, and reads the same."""
    from services.producer.datagen import write_csv

    path = tmp_path / "rows.csv"
    write_csv(path, 3000, seed=5, extended=extended)
    lines = path.read_bytes().split(b"\n")
    fields = lines[1].split(b",")
    fields[-5] = b"-2.68638196892377e-05"  # V27
    lines[1] = b",".join(fields)
    path.write_bytes(b"\n".join(lines))
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from services.producer.csv_source import CsvSource\n"
        "records = sum(len(batch) for batch in CsvSource(Path(sys.argv[1])).batches())\n"
        "print(records, 'numpy' in sys.modules)\n"
    )
    out = _python(code, [str(path)], tmp_path)
    assert out.stdout.split() == ["3000", str(loads_numpy)]


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


_MAIN = """
import atexit, json, sys
out, args = sys.argv[1], json.loads(sys.argv[2])
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["fraudstream", *args]
from services.cli import main
main()
"""
CLI_MODULES = {
    f"services.{name}"
    for name in (
        "stack.cli", "schema_registry.cli", "ksql_server.cli", "producer.cli", "trainer.cli",
        "model_registry.cli", "scorer.cli", "alerts.cli", "pipeline.cli", "config_cli",
        "console.cli", "bench_cli",
    )
}  # fmt: skip
MAX_HELP_MODULES = 200
"""Modules a command's help page may load, the interpreter's own included (about 160 with
typer; `python -c pass` alone loads about 70): the bound catches a service or a library
pulled onto the path of every command, without timing anything."""


@pytest.mark.parametrize(
    ("args", "own"),
    [
        (["produce", "--help"], "services.producer.cli"),
        (["alerts", "--help"], "services.alerts.cli"),
        (["ksql", "query", "--help"], "services.ksql_server.cli"),
        (["stack", "up", "--help"], "services.stack.cli"),
    ],
)
def test_a_command_loads_only_its_own_service(tmp_path: Path, args: list[str], own: str) -> None:
    """Through `main`, as the `fraudstream` script runs: the owning service's CLI and no
    other's, and a bounded number of modules in all."""
    out = tmp_path / "modules.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), FRAUDSTREAM_HOME=str(tmp_path / "home"))
    env.pop("TYPER_USE_RICH", None)
    done = subprocess.run(
        [sys.executable, "-c", _MAIN, str(out), json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: fraudstream" in done.stdout and "--help" in done.stdout
    modules = set(json.loads(out.read_text()))
    assert own in modules
    assert not (modules & CLI_MODULES) - {own}
    assert not modules & set(HEAVY)
    assert len(modules) <= MAX_HELP_MODULES, len(modules)


def test_services_name_what_each_registers() -> None:
    """`SERVICES` (which service owns which top-level command) against each `register`."""
    for names, register in SERVICES:
        app = typer.Typer()
        register(app)
        commands = [
            c.name or get_command_name(getattr(c.callback, "__name__", ""))
            for c in app.registered_commands
        ]
        found = commands + [g.name for g in app.registered_groups]
        assert tuple(found) == names


@pytest.mark.parametrize(
    "args",
    [
        ["produce", "--help"],
        ["datagen", "--help"],
        ["alerts", "--help"],
        ["ksql", "query", "--help"],
        ["stack", "up", "--help"],
        ["config", "--help"],
        ["datagen", "--rows", "many", "--out", "x.csv"],
    ],
)
def test_a_command_alone_behaves_as_in_the_whole_app(args: list[str]) -> None:
    """The app built for one command answers as the whole app: same help, same errors."""
    alone = CliRunner().invoke(build_app(args), args, prog_name="fraudstream")
    whole = CliRunner().invoke(build_app(), args, prog_name="fraudstream")
    assert (alone.exit_code, alone.output) == (whole.exit_code, whole.output)
    assert alone.output.startswith("Usage: fraudstream")


def test_an_unknown_command_gets_the_whole_app() -> None:
    result = CliRunner().invoke(build_app(["nonesuch"]), ["nonesuch"], prog_name="fraudstream")
    assert result.exit_code == 2 and "No such command" in result.output
