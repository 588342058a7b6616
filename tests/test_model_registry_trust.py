"""The registry hands out only what it published: version names checked by one pattern and
resolved inside models/, a manifest (sha256 per file) recorded at registration and checked at
every load, announcements parsed as untrusted JSON, LATEST read as untrusted bytes, fsync
before every rename."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_scorer_support import save_model

from services.common.errors import FraudstreamError
from services.model_registry.api import (
    LATEST_FILE,
    MODEL_NAME,
    InvalidVersion,
    validate_version,
    version_dir,
)
from services.model_registry.registry import (
    MANIFEST_FILE,
    MAX_ANNOUNCEMENT_BYTES,
    THRESHOLD_FILE,
    BadAnnouncement,
    BadLatest,
    IntegrityError,
    ModelRegistry,
    UnverifiedVersion,
    VersionNotFound,
    announcement_from_json,
    announcement_to_json,
)

BAD_NAMES: list[Any] = [
    "/etc/passwd",
    "/tmp/evil/20260101-000000-aaaaaa",
    "../evil",
    "a/../../b",
    "..",
    ".",
    ".staging-x",
    "a/b",
    "a\\b",
    "a..b",
    "v1\x00",
    "v1\n",
    "\x1b[31mred",
    "latest",
    "LATEST",
    "é",
    "",
    "a" * 65,
    5,
    None,
    ["v1"],
]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One published version (saved once; tests copy the folder to tamper with it)."""
    folder = tmp_path_factory.mktemp("published")
    return folder, save_model(folder, seed=1)


def _copy(published: tuple[Path, str], tmp_path: Path) -> tuple[ModelRegistry, str]:
    source, version = published
    shutil.copytree(source, tmp_path, dirs_exist_ok=True)
    return ModelRegistry(tmp_path), version


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: ascii(n)[:20])
def test_bad_version_names_are_refused_everywhere(name: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidVersion):
        validate_version(name)
    if isinstance(name, str):
        with pytest.raises(InvalidVersion):
            version_dir(tmp_path, name)
        registry = ModelRegistry(tmp_path)
        assert not registry.exists(name)
        with pytest.raises((InvalidVersion, VersionNotFound)):
            registry.load(name, allow_unverified=True)
        with pytest.raises(InvalidVersion):
            registry.stage(name or "x/y")


@pytest.mark.parametrize("name", ["20260101-000000-aaaaaa", "v1", "1.2.0", "a" * 64, "A_b-c"])
def test_good_version_names_resolve_inside(name: str, tmp_path: Path) -> None:
    assert validate_version(name) == name
    assert version_dir(tmp_path, name).parent.resolve() == tmp_path.resolve()


def test_a_symlinked_version_pointing_outside_is_refused(
    published: tuple[Path, str], tmp_path: Path
) -> None:
    source, version = published
    models = tmp_path / "models"
    models.mkdir()
    (models / "20260101-000000-evil00").symlink_to(source / version)
    registry = ModelRegistry(models)
    with pytest.raises(InvalidVersion):
        version_dir(models, "20260101-000000-evil00")
    assert not registry.exists("20260101-000000-evil00") and registry.versions() == []


def test_publish_records_a_manifest_the_announcement_carries(
    published: tuple[Path, str],
) -> None:
    folder, version = published
    registry = ModelRegistry(folder)
    manifest = json.loads((folder / version / MANIFEST_FILE).read_text())
    on_disk = {p.name for p in (folder / version).iterdir()} - {MANIFEST_FILE}
    assert manifest["version"] == version and set(manifest["files"]) == on_disk
    event = registry.announcement(version)
    assert event.digest is not None and len(event.digest) == 64
    assert set(registry.read_verified(version, event.digest)) == on_disk
    assert registry.show(version)["integrity"] == "verified"


@pytest.mark.parametrize("tamper", ["edit", "extra", "truncated", "renamed", "manifest"])
def test_tampered_versions_never_load(
    tamper: str, published: tuple[Path, str], tmp_path: Path
) -> None:
    registry, version = _copy(published, tmp_path)
    folder = tmp_path / version
    name = version
    if tamper == "edit":  # an absurd threshold: the attack that silences every alert
        (folder / THRESHOLD_FILE).write_text(json.dumps({"threshold": 1e30, "rule": "x"}))
    elif tamper == "extra":
        (folder / "extra.py").write_text("print('hi')\n")
    elif tamper == "truncated":  # a half-copied model file
        data = (folder / "model.keras").read_bytes()
        (folder / "model.keras").write_bytes(data[: len(data) // 2])
    elif tamper == "renamed":  # a version's files copied under another name
        name = "20990101-000000-ffffff"
        shutil.copytree(folder, tmp_path / name)
    else:
        (folder / MANIFEST_FILE).write_bytes(b"\xff\xfe not json")
    with pytest.raises(IntegrityError):
        registry.load(name)
    with pytest.raises(IntegrityError):
        registry.load(name, allow_unverified=True)  # a broken manifest is never "unverified"
    assert registry.show(name)["integrity"].startswith("tampered")


def test_a_wrong_announced_digest_is_refused(published: tuple[Path, str]) -> None:
    folder, version = published
    with pytest.raises(IntegrityError, match="announced digest"):
        ModelRegistry(folder).read_verified(version, "0" * 64)


def test_versions_without_manifest_load_only_when_pinned_and_can_be_sealed(
    published: tuple[Path, str], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from services.cli import app

    registry, version = _copy(published, tmp_path)
    (tmp_path / version / MANIFEST_FILE).unlink()
    with pytest.raises(UnverifiedVersion):
        registry.load(version)
    with pytest.raises(UnverifiedVersion):
        registry.load("latest")  # LATEST is a signal, not the operator naming a version
    with pytest.raises(UnverifiedVersion):
        registry.load(version, digest="0" * 64, allow_unverified=True)
    with pytest.raises(UnverifiedVersion):
        registry.set_latest(version)
    assert registry.load(version, allow_unverified=True).version == version
    assert registry.show(version)["integrity"] == "unverified"
    sealed = CliRunner().invoke(app, ["models", "seal", version, "--models-dir", str(tmp_path)])
    assert sealed.exit_code == 0, sealed.output
    digest = registry.manifest_digest(version)
    assert sealed.output.strip() == f"sealed {version} digest={digest}"
    assert registry.load(version, digest=digest).version == version
    with pytest.raises(FraudstreamError, match="already has"):
        registry.seal(version)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe\x00\x9c garbage", BadLatest),
        (b"../../etc/passwd\n", BadLatest),
        (b"/abs/path\n", BadLatest),
        (b"v" * 300, BadLatest),
        (b"", None),
        (b"  \n", None),
    ],
)
def test_latest_is_read_as_untrusted_bytes(
    content: bytes, expected: type[Exception] | None, tmp_path: Path
) -> None:
    registry = ModelRegistry(tmp_path)
    (tmp_path / LATEST_FILE).write_bytes(content)
    if expected is None:
        assert registry.latest() is None
    else:
        with pytest.raises(expected):
            registry.latest()
        assert registry.versions() == []  # listing still works


def _event(**fields: Any) -> bytes:
    doc = {
        "model": MODEL_NAME,
        "version": "20260101-000000-aaaaaa",
        "path": "/models/20260101-000000-aaaaaa",
        "threshold": 1.5,
        "created_at": "2026-01-01T00:00:00Z",
        **fields,
    }
    return json.dumps(doc).encode()


SECRET = "SECRET-INPUT-MARKER"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (_event(path="x" * MAX_ANNOUNCEMENT_BYTES + SECRET), "too_large"),
        (b"\xff\xfe" + SECRET.encode(), "not_json"),
        (b"[" * 2000 + b"]" * 2000, "not_json"),
        (b'{"model": "' + SECRET.encode(), "not_json"),
        (b"", "not_json"),
        (None, "not_json"),
        (b'["' + SECRET.encode() + b'"]', "bad_fields"),
        (_event(version="/tmp/" + SECRET), "bad_version"),
        (_event(version="../" + SECRET), "bad_version"),
        (_event(version=SECRET + "\x00"), "bad_version"),
        (_event(version=7), "bad_fields"),
        (_event(threshold="1.5"), "bad_fields"),
        (_event(threshold=True), "bad_fields"),
        (_event(threshold=None), "bad_fields"),
        (
            b'{"model": "m", "version": "v", "path": "", "threshold": NaN, "created_at": ""}',
            "bad_fields",
        ),
        (_event(threshold=1e308 * 10), "bad_fields"),
        (_event(created_at={"a": SECRET}), "bad_fields"),
        (_event(digest=SECRET), "bad_fields"),
        (_event(digest="A" * 64), "bad_fields"),
        (b'{"version": "v1"}', "bad_fields"),
    ],
    ids=lambda v: ascii(v)[:30],
)
def test_garbage_announcements_are_refused_without_dumping_them(
    value: bytes | None, reason: str
) -> None:
    with pytest.raises(BadAnnouncement) as caught:
        announcement_from_json(value)
    assert caught.value.code == reason
    message = str(caught.value)  # at most a short escaped prefix of a bad version name
    assert len(message) < 120 and message.isascii() and message.isprintable()
    if reason != "bad_version":
        assert SECRET not in message


def test_a_well_formed_announcement_round_trips_with_its_digest() -> None:
    event = announcement_from_json(_event(digest="ab" * 32))
    assert event.digest == "ab" * 32
    assert announcement_from_json(announcement_to_json(event)) == event
    assert announcement_from_json(_event()).digest is None  # older writers send none


def test_publish_and_latest_fsync_before_they_rename(
    published: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import services.model_registry.registry as registry_module

    calls: list[str] = []
    real_rename, real_replace = os.rename, os.replace
    monkeypatch.setattr(registry_module, "fsync_tree", lambda p: calls.append(f"tree {p.name}"))
    monkeypatch.setattr(registry_module, "fsync_dir", lambda p: calls.append(f"dir {p.name}"))

    def rename(source: Any, target: Any) -> None:
        calls.append("rename")
        real_rename(source, target)

    def replace(source: Any, target: Any) -> None:
        calls.append("replace")
        real_replace(source, target)

    monkeypatch.setattr(registry_module.os, "rename", rename)
    monkeypatch.setattr(registry_module.os, "replace", replace)
    registry = ModelRegistry(tmp_path)
    version, staging = registry.stage("20260101-000000-abcdef")
    source, published_version = published
    for item in (source / published_version).iterdir():
        if item.name != MANIFEST_FILE:
            shutil.copy(item, staging / item.name)
    registry.publish(version, staging)
    registry.set_latest(version)
    assert calls == [
        f"tree {staging.name}",
        "rename",
        f"dir {tmp_path.name}",
        "replace",
        f"dir {tmp_path.name}",
    ]
    assert registry.load("latest").version == version
