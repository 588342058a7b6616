"""Integrity of model versions: the manifest written at registration (sha256 and size of every
file), reading a version only as it was verified, and sealing a version written before manifests.

It lives apart from `registry.ModelRegistry`'s version storage (stage, publish, LATEST, listing)
because it is the trust boundary: whatever a reader is told (an announcement, LATEST), only files
that still match their manifest (and the announced digest) are handed out. `ModelRegistry`
inherits the `VersionIntegrity` mixin and provides `models_dir` and `resolve`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.files import fsync_dir, fsync_tree
from services.model_registry.api import MODEL_NAME, version_dir
from services.model_registry.errors import IntegrityError, ModelRegistryError, UnverifiedVersion

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
MAX_MANIFEST_BYTES = 1 << 20
MAX_VERSION_FILES = 256
"""A manifest (or a version directory) beyond these is not one the trainer wrote."""
_DIGEST_LENGTH = 64


def is_digest(value: object) -> bool:
    """A sha256 as the registry writes it: 64 lower-case hex digits."""
    return (
        isinstance(value, str)
        and len(value) == _DIGEST_LENGTH
        and all(c in "0123456789abcdef" for c in value)
    )


def sha256_hex(data: bytes) -> str:
    """The sha256 of `data` as lower-case hex (what a manifest and an announcement carry)."""
    return hashlib.sha256(data).hexdigest()


def read_bounded(path: Path, limit: int) -> bytes:
    """The file's bytes, or ValueError when it holds more than `limit` (never read whole)."""
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is larger than {limit} bytes")
    return data


def _version_files(folder: Path) -> dict[str, Path]:
    """Every file of a version directory but the manifest, by its relative POSIX name.

    A symlink, or more files than any version has, is an integrity failure: nothing the trainer
    writes looks like that."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for name in (*dirnames, *filenames):
            if (here / name).is_symlink():
                raise IntegrityError(f"{folder.name}: symlink {ascii(name)[:40]} in a version")
        for name in filenames:
            relative = (here / name).relative_to(folder).as_posix()
            if relative != MANIFEST_FILE:
                found[relative] = here / name
            if len(found) > MAX_VERSION_FILES:
                raise IntegrityError(f"{folder.name}: more than {MAX_VERSION_FILES} files")
    return found


def build_manifest(folder: Path, version: str) -> bytes:
    """The manifest of a complete version directory: sha256 and size of every file in it."""
    files = {}
    for name, path in sorted(_version_files(folder).items()):
        data = path.read_bytes()
        files[name] = {"sha256": sha256_hex(data), "size": len(data)}
    doc = {"format": MANIFEST_FORMAT, "model": MODEL_NAME, "version": version, "files": files}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _parse_manifest(raw: bytes, version: str) -> dict[str, dict[str, Any]]:
    """The `files` table of a manifest that belongs to `version` (IntegrityError otherwise)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise IntegrityError(f"{version}: {MANIFEST_FILE} is not JSON") from exc
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise IntegrityError(f"{version}: {MANIFEST_FILE} has an unknown format")
    if doc.get("version") != version:  # a version copied under another name
        raise IntegrityError(f"{version}: {MANIFEST_FILE} was written for another version")
    files = doc.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(entry, dict) and is_digest(entry.get("sha256")) for entry in files.values()
    ):
        raise IntegrityError(f"{version}: {MANIFEST_FILE} has a malformed file table")
    return files


class VersionIntegrity:
    """Checks a version's files against its manifest; records one for an unverified version."""

    models_dir: Path

    if TYPE_CHECKING:

        def resolve(self, version: str) -> str: ...

    def manifest_digest(self, version: str) -> str | None:
        """sha256 of the version's manifest.json (None: an unverified, manifest-less version)."""
        path = version_dir(self.models_dir, self.resolve(version)) / MANIFEST_FILE
        try:
            return sha256_hex(read_bounded(path, MAX_MANIFEST_BYTES))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise IntegrityError(f"{version}: {exc}") from exc

    def read_verified(self, version: str, digest: str | None = None) -> dict[str, bytes]:
        """Every file of the version, read once and checked against its manifest (and the
        manifest against `digest` when given): what is returned is what was verified.

        VersionNotFound, UnverifiedVersion (no manifest) or IntegrityError otherwise."""
        version = self.resolve(version)
        folder = version_dir(self.models_dir, version)
        try:
            raw = read_bounded(folder / MANIFEST_FILE, MAX_MANIFEST_BYTES)
        except FileNotFoundError as exc:
            raise UnverifiedVersion(
                f"model version {version} has no {MANIFEST_FILE} (registered before manifests, "
                f"or copied incompletely): pin it with --model {version}, or vouch for its files "
                f"with `fraudstream models seal {version}`"
            ) from exc
        except ValueError as exc:
            raise IntegrityError(f"{version}: {exc}") from exc
        if digest is not None and sha256_hex(raw) != digest:
            raise IntegrityError(f"{version}: the manifest differs from the announced digest")
        expected = _parse_manifest(raw, version)
        on_disk = _version_files(folder)
        if set(on_disk) != set(expected):
            differ = sorted(set(on_disk) ^ set(expected))
            raise IntegrityError(f"{version}: files differ from the manifest: {differ[:5]}")
        contents: dict[str, bytes] = {}
        for name, path in on_disk.items():
            data = path.read_bytes()
            if sha256_hex(data) != expected[name]["sha256"]:
                raise IntegrityError(f"{version}: {ascii(name)[:60]} differs from the manifest")
            contents[name] = data
        return contents

    def integrity(self, version: str) -> str:
        """`verified`, `unverified` or `tampered: …` (for `models show`)."""
        try:
            self.read_verified(version)
        except UnverifiedVersion:
            return "unverified"
        except IntegrityError as exc:
            return f"tampered: {exc}"
        return "verified"

    def seal(self, version: str) -> str:
        """Record a manifest for an unverified version as it is now (the operator vouches for
        its files); returns the manifest digest. A version that has a manifest is left alone."""
        version = self.resolve(version)
        folder = version_dir(self.models_dir, version)
        if (folder / MANIFEST_FILE).exists():
            raise ModelRegistryError(
                f"model version {version} already has a {MANIFEST_FILE}", code="manifest_exists"
            )
        manifest = build_manifest(folder, version)
        fsync_tree(folder)
        fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(manifest)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, folder / MANIFEST_FILE)
            fsync_dir(folder)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha256_hex(manifest)
