"""requirements/*.txt (the lock files `make lock` writes) agree with pyproject.toml.

The Dockerfile installs base.txt and `make setup` dev.txt, both with --require-hashes and
--no-deps: a dependency added to pyproject.toml but not locked would be missing at run time, a
version outside pyproject's range would be installed untested. So every requirement of
pyproject (runtime, dev, notebook, build) must be pinned there, inside its range, with hashes,
and the two files must agree on every package they share.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked(name: str) -> dict[str, tuple[str, str | None, int]]:
    """canonical name → (version, marker, number of hashes) of requirements/NAME."""
    pins: dict[str, tuple[str, str | None, int]] = {}
    current = ""
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        if m := PIN.match(line):
            current = canonicalize_name(m.group(1))
            pins[current] = (m.group(2), m.group(3), 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, marker, hashes = pins[current]
            pins[current] = (version, marker, hashes + 1)
    return pins


def check(requirements: list[str], lock: str) -> None:
    pins = locked(lock)
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{text!r} is not in requirements/{lock}: run `make lock`"
        version, _marker, hashes = pins[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements/{lock} pins {name}=={version}, outside {text!r}: run `make lock`"
        )
        assert hashes > 0, f"{name} has no hash in requirements/{lock}"


def test_runtime_dependencies_are_locked_for_the_image() -> None:
    check(PYPROJECT["project"]["dependencies"], "base.txt")


def test_setup_lock_has_runtime_dev_and_notebook() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    check(PYPROJECT["project"]["dependencies"] + extras["dev"] + extras["notebook"], "dev.txt")


def test_build_requirements_are_locked() -> None:
    check(PYPROJECT["build-system"]["requires"], "build.txt")


@pytest.mark.parametrize("lock", ["base.txt", "dev.txt", "build.txt"])
def test_every_pin_has_hashes(lock: str) -> None:
    pins = locked(lock)
    assert pins
    assert all(hashes > 0 for _v, _m, hashes in pins.values()), lock


def test_image_and_setup_install_the_same_versions() -> None:
    base, dev, build = locked("base.txt"), locked("dev.txt"), locked("build.txt")
    for name, (version, _m, _h) in base.items():
        assert dev[name][0] == version, f"{name}: base.txt {version}, dev.txt {dev[name][0]}"
    for name, (version, _m, _h) in build.items():
        if name in dev:
            assert dev[name][0] == version, f"{name}: build.txt {version}, dev.txt {dev[name][0]}"


def test_lock_files_name_the_command_make_lock_runs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    compile_flags = re.search(
        r"^UV_COMPILE := \$\(BIN\)/uv (pip compile [^\n]*?) -q$", makefile, re.M
    )
    assert compile_flags is not None
    for lock in ("base.txt", "dev.txt", "build.txt"):
        header = (ROOT / "requirements" / lock).read_text().splitlines()[1]
        assert f"uv {compile_flags.group(1)}" in header, f"{lock} was not written by `make lock`"


def test_removed_dependencies_stay_out() -> None:
    names = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    assert "lark" not in names, "lark is unused"
    assert "ksql-python-ng" not in names, "ksql-python-ng belongs to the notebook extra"
