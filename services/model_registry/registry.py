"""The model registry on disk (`models/`) and its announcements on `fraudstream_models`.

Writers (the trainer) stage every file of a version in a hidden directory, record the sha256 of
each in `manifest.json`, fsync them all and rename the directory into place in one step, then
replace `models/LATEST` atomically, then announce the version. A reader (the scorer) therefore
never sees a half-written version through the registry: a directory named by a version is
complete, and `LATEST` always names such a directory.

What a reader is *told* (an announcement on the topic, the contents of LATEST) is not trusted:
anyone who can write the topic can say anything. So a version is loaded only when its name is
well-formed (`api.validate_version`), its directory lies inside the models directory, and its
files still match the manifest written at registration (and the announced digest, if any). A
version without a manifest (written before manifests existed) is "unverified": it is loaded only
when the operator names it explicitly (`load(..., allow_unverified=True)`, `score --model V`),
or after `fraudstream models seal V` records its current files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common.avro.features import N_FEATURES
from services.common.errors import ServiceUnavailable
from services.common.files import fsync_dir, fsync_tree
from services.common.json_limits import loads_bounded
from services.common.settings import get_settings
from services.common.topics import MODELS_TOPIC
from services.model_registry.api import (
    LATEST_ALIAS,
    LATEST_FILE,
    MODEL_NAME,
    InvalidVersion,
    ModelAnnouncement,
    validate_version,
    version_dir,
)
from services.model_registry.errors import ModelRegistryError
from services.model_registry.feature_stats import FEATURE_STATS_FILE, FeatureStats
from services.model_registry.preprocessing import Preprocessing
from services.model_registry.scoring import (
    CANDIDATE_FILES,
    SCORING_FILE,
    CandidateLoadedModel,
    load_candidate,
)

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
PREPROCESSING_FILE = "preprocessing.json"
THRESHOLD_FILE = "threshold.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
MANIFEST_FILE = "manifest.json"
REQUIRED_FILES: tuple[str, ...] = (MODEL_FILE, PREPROCESSING_FILE, THRESHOLD_FILE, METRICS_FILE)
"""A directory without these is not a version (and is never published)."""
STAGING_PREFIX = ".staging-"
MANIFEST_FORMAT = 1
MAX_MANIFEST_BYTES = 1 << 20
MAX_VERSION_FILES = 256
"""A manifest (or a version directory) beyond these is not one the trainer wrote."""
MAX_ANNOUNCEMENT_BYTES = 4096
"""An announcement is a few hundred bytes; anything far larger is refused unparsed."""
MAX_ANNOUNCEMENT_DEPTH = 2
"""An announcement is one flat object; a little room for a future nested field."""
MAX_LATEST_BYTES = 256
_DIGEST_LENGTH = 64

log = logging.getLogger("fraudstream.model_registry")


class ModelRefused(ModelRegistryError):
    """A version the registry will not hand out; `code` is the metric label saying why."""

    default_code = "refused"


class VersionNotFound(ModelRefused):
    """The named version (or LATEST) does not exist in the registry."""

    default_code = "unknown_version"


class UnverifiedVersion(ModelRefused):
    """The version has no manifest (registered before manifests existed, or half copied)."""

    default_code = "unverified"


class IntegrityError(ModelRefused):
    """The version's files differ from its manifest, or the manifest from the announced digest."""

    default_code = "tampered"


class BadLatest(ModelRefused):
    """`models/LATEST` holds something other than a version name (garbage, binary, too long)."""

    default_code = "bad_latest"


class BadAnnouncement(ModelRegistryError, ValueError):
    """A record on `fraudstream_models` that is not a well-formed announcement; `code` says
    which rule it broke (`too_large`, `not_json`, `bad_fields`, `bad_version`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True)
class VersionSummary:
    """One line of `fraudstream models list`."""

    version: str
    created_at: str
    threshold: float
    rule: str
    roc_auc: float | None
    pr_auc: float | None
    latest: bool


def new_version_id(now: datetime | None = None) -> str:
    """`YYYYMMDD-HHMMSS-xxxxxx` (UTC): sorts by creation time, unique across processes."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def announcement_to_json(announcement: ModelAnnouncement) -> bytes:
    return json.dumps(asdict(announcement)).encode()


def announcement_from_json(value: bytes | str | None) -> ModelAnnouncement:
    """Parse an untrusted event from `fraudstream_models`: bounded size, strict types, a valid
    version name. Raises BadAnnouncement (a ValueError) whose message never echoes the input."""
    raw = value.encode() if isinstance(value, str) else (value or b"")
    if len(raw) > MAX_ANNOUNCEMENT_BYTES:
        raise BadAnnouncement("too_large", f"{len(raw)} bytes (limit {MAX_ANNOUNCEMENT_BYTES})")
    try:
        doc = loads_bounded(raw, MAX_ANNOUNCEMENT_DEPTH)
    except ValueError as exc:  # JsonTooDeep and UnicodeDecodeError are ValueErrors
        raise BadAnnouncement("not_json", "not a JSON document") from exc
    if not isinstance(doc, dict):
        raise BadAnnouncement("bad_fields", "not a JSON object")
    version = _text_field(doc, "version", 256)
    try:
        validate_version(version)
    except InvalidVersion as exc:
        raise BadAnnouncement("bad_version", str(exc)) from exc
    return ModelAnnouncement(
        model=_text_field(doc, "model", 128),
        version=version,
        path=_text_field(doc, "path", 1024),
        threshold=_number_field(doc, "threshold"),
        created_at=_text_field(doc, "created_at", 64),
        digest=_digest_field(doc),
    )


def _text_field(doc: dict[str, Any], name: str, max_length: int) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or len(value) > max_length:
        raise BadAnnouncement("bad_fields", f"'{name}' must be a string of <= {max_length} chars")
    return value


def _number_field(doc: dict[str, Any], name: str) -> float:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadAnnouncement("bad_fields", f"'{name}' must be a number")
    try:
        number = float(value)
    except OverflowError as exc:
        raise BadAnnouncement("bad_fields", f"'{name}' is out of range") from exc
    if not math.isfinite(number):
        raise BadAnnouncement("bad_fields", f"'{name}' must be finite")
    return number


def _digest_field(doc: dict[str, Any]) -> str | None:
    value = doc.get("digest")
    if value is None:
        return None
    if not _is_digest(value):
        raise BadAnnouncement("bad_fields", "'digest' must be 64 lower-case hex digits")
    return str(value)


def _is_digest(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == _DIGEST_LENGTH
        and all(c in "0123456789abcdef" for c in value)
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_bounded(path: Path, limit: int) -> bytes:
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
        files[name] = {"sha256": _sha256(data), "size": len(data)}
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
        isinstance(entry, dict) and _is_digest(entry.get("sha256")) for entry in files.values()
    ):
        raise IntegrityError(f"{version}: {MANIFEST_FILE} has a malformed file table")
    return files


class KerasLoadedModel:
    """A registered version ready to score (implements `api.LoadedModel`).

    `score` runs preprocessing in numpy and then ONE traced TensorFlow call per batch (model
    forward pass plus per-row error), with a `[None, 30]` signature so batches of any size reuse
    the same graph instead of retracing.

    The error is the mean squared residual, each feature's squared residual capped at
    `error_clip`² when the version says so (threshold.json `error`): with heavy-tailed features
    one wild value must not outweigh a moderate deviation in many features.
    """

    def __init__(
        self,
        version: str,
        path: Path,
        model: keras.Model,
        preprocessing: Preprocessing,
        threshold: float,
        threshold_info: dict[str, Any],
        error_clip: float | None = None,
        feature_stats: FeatureStats | None = None,
    ) -> None:
        import tensorflow as tf

        self.version = version
        self.path = path
        self.model = model
        self.preprocessing = preprocessing
        self.threshold = float(threshold)
        self.threshold_info = threshold_info
        self.error_clip = error_clip
        self._cap = float("inf") if error_clip is None else float(error_clip) ** 2
        self.feature_stats = feature_stats
        signature = [tf.TensorSpec([None, N_FEATURES], tf.float32)]
        self._errors = tf.function(
            self._reconstruction_errors, input_signature=signature, reduce_retracing=True
        )
        self._explained = tf.function(
            self._errors_and_parts, input_signature=signature, reduce_retracing=True
        )

    def _reconstruction_errors(self, x: Any) -> Any:
        return self._errors_and_parts(x)[0]

    def _errors_and_parts(self, x: Any) -> Any:
        """Per row the error, and per row and feature its part: the (capped) squared residual
        whose mean the error is. One forward pass gives both."""
        import tensorflow as tf

        reconstruction = self.model(x, training=False)
        parts = tf.minimum(tf.square(x - reconstruction), self._cap)
        return tf.reduce_mean(parts, axis=1), parts

    def errors_preprocessed(self, x: np.ndarray) -> np.ndarray:
        """Reconstruction error of rows that are already preprocessed (one model call)."""
        if len(x) == 0:
            return np.empty(0, dtype=np.float32)
        errors = self._errors(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(errors.numpy())

    def errors_and_parts_preprocessed(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The errors and each feature's part of them [n, 30] (one model call)."""
        if len(x) == 0:
            return np.empty(0, dtype=np.float32), np.empty((0, N_FEATURES), dtype=np.float32)
        errors, parts = self._explained(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(errors.numpy()), np.asarray(parts.numpy())

    def score(self, features: np.ndarray) -> np.ndarray:
        """Reconstruction error per row of raw features float32 [n, 30]."""
        return self.errors_preprocessed(self.preprocessing.transform(features))

    def score_explained(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """`score` and, from the same compiled call, each feature's part of every row's error
        [n, 30] (what the scorer's explanations rank)."""
        return self.errors_and_parts_preprocessed(self.preprocessing.transform(features))

    def is_alert(self, errors: np.ndarray) -> np.ndarray:
        """The rule the threshold was chosen with (and the scorer's): at or above alerts."""
        return np.asarray(errors) >= self.threshold


class ModelRegistry:
    """Versions under `models_dir` (default: MODELS_DIR), LATEST, and their announcements."""

    def __init__(self, models_dir: Path | str | None = None) -> None:
        self.models_dir = Path(models_dir) if models_dir else get_settings().models_dir

    # ----------------------------------------------------------------- writing
    def stage(self, version: str | None = None) -> tuple[str, Path]:
        """A fresh hidden directory to write a version into; publish() moves it into place."""
        version = validate_version(version or new_version_id())
        self.models_dir.mkdir(parents=True, exist_ok=True)
        if version_dir(self.models_dir, version).exists():
            raise ModelRegistryError(
                f"model version {version} already exists", code="version_exists"
            )
        staging = self.models_dir / f"{STAGING_PREFIX}{version}"
        staging.mkdir()
        return version, staging

    def save_version(
        self,
        model: keras.Model,
        preprocessing: Preprocessing,
        threshold: dict[str, Any],
        metrics: dict[str, Any],
        write_extra: Callable[[Path, str], None] | None = None,
        version: str | None = None,
        make_latest: bool = True,
        announce: bool = True,
        bootstrap: str | None = None,
        models_topic: str = MODELS_TOPIC,
    ) -> str:
        """Write a complete version, publish it, optionally make it LATEST and announce it.

        `threshold` must hold at least `threshold` (float) and `rule` (str); `write_extra`
        gets the staging directory and the version to add plots and the report.
        """
        if "threshold" not in threshold or "rule" not in threshold:
            raise ValueError("threshold needs 'threshold' and 'rule'")
        version, staging = self.stage(version)
        try:
            model.save(staging / MODEL_FILE)
            _write_json(staging / PREPROCESSING_FILE, preprocessing.to_dict())
            _write_json(staging / THRESHOLD_FILE, threshold)
            _write_json(
                staging / METRICS_FILE, {"version": version, "created_at": utc_now_iso(), **metrics}
            )
            if write_extra is not None:
                write_extra(staging, version)
            self.publish(version, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if make_latest:
            self.set_latest(version)
        if announce:
            self.announce(version, bootstrap=bootstrap, topic=models_topic)
        return version

    def publish(self, version: str, staging: Path) -> Path:
        """Record the manifest, fsync everything, rename the staging directory to
        `models/<version>` (one atomic step) and fsync the models directory."""
        target = version_dir(self.models_dir, version)
        missing = [name for name in REQUIRED_FILES if not (staging / name).exists()]
        if missing:
            raise ModelRegistryError(
                f"version {version} is incomplete: missing {', '.join(missing)}",
                code="incomplete",
            )
        (staging / MANIFEST_FILE).write_bytes(build_manifest(staging, version))
        fsync_tree(staging)  # data before names: a crash never leaves a name over lost data
        os.rename(staging, target)
        fsync_dir(self.models_dir)
        return target

    def set_latest(self, version: str) -> None:
        """Point LATEST at a published, verified version: write a temporary file, fsync it,
        os.replace, fsync the directory. An unverified version is refused (scorers would refuse
        it too); `seal` it first."""
        self.read_verified(version)
        fd, tmp = tempfile.mkstemp(prefix=".LATEST.", dir=self.models_dir)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(version + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.models_dir / LATEST_FILE)
            fsync_dir(self.models_dir)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def announcement(self, version: str) -> ModelAnnouncement:
        version = self.resolve(version)
        threshold = self.threshold_info(version)
        path = version_dir(self.models_dir, version)
        return ModelAnnouncement(
            model=MODEL_NAME,
            version=version,
            path=str(path),
            threshold=float(threshold["threshold"]),
            created_at=str(self.metrics(version).get("created_at", utc_now_iso())),
            digest=self.manifest_digest(version),
        )

    def announce(
        self,
        version: str,
        bootstrap: str | None = None,
        timeout: float = 15.0,
        topic: str = MODELS_TOPIC,
    ) -> ModelAnnouncement:
        """Publish the version's event on `fraudstream_models`, keyed by the model name (only a
        verified version: scorers act on nothing else)."""
        from services.common.kafka import ensure_topic, make_producer

        self.read_verified(version)
        event = self.announcement(version)
        try:
            ensure_topic(topic, bootstrap=bootstrap, timeout=timeout)
        except Exception as exc:
            raise ServiceUnavailable(f"cannot announce model {version}: {exc}") from exc
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        producer = make_producer(bootstrap)
        producer.produce(
            topic,
            key=MODEL_NAME.encode(),
            value=announcement_to_json(event),
            on_delivery=on_delivery,
        )
        if producer.flush(timeout) > 0 or errors:
            reason = errors[0] if errors else f"not delivered within {timeout:.0f}s"
            raise ServiceUnavailable(f"cannot announce model {version} on {topic}: {reason}")
        return event

    # ----------------------------------------------------------------- reading
    def exists(self, version: str) -> bool:
        """A well-formed name whose directory (inside models/) holds the required files."""
        try:
            path = version_dir(self.models_dir, version)
        except InvalidVersion:
            return False
        return path.is_dir() and all((path / f).is_file() for f in REQUIRED_FILES)

    def latest(self) -> str | None:
        """The version LATEST names (None: no LATEST yet). BadLatest when it holds anything but
        a version name: the file is read bounded and never trusted to be text."""
        try:
            raw = _read_bounded(self.models_dir / LATEST_FILE, MAX_LATEST_BYTES)
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise BadLatest(f"{LATEST_FILE} in {self.models_dir}: {exc}") from exc
        try:
            name = raw.decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise BadLatest(f"{LATEST_FILE} in {self.models_dir} is not text") from exc
        if not name:
            return None
        try:
            return validate_version(name)
        except InvalidVersion as exc:
            raise BadLatest(f"{LATEST_FILE} in {self.models_dir}: {exc}") from exc

    def _latest_or_none(self) -> str | None:
        """LATEST for display (a garbled LATEST marks nothing as latest)."""
        try:
            return self.latest()
        except BadLatest:
            return None

    def resolve(self, version: str) -> str:
        """`latest` → the version LATEST names; otherwise the version itself, checked."""
        if version == LATEST_ALIAS:
            latest = self.latest()
            if latest is None:
                raise VersionNotFound(f"no model registered yet in {self.models_dir} (no LATEST)")
            version = latest
        validate_version(version)
        if not self.exists(version):
            raise VersionNotFound(f"model version {version} does not exist in {self.models_dir}")
        return version

    def manifest_digest(self, version: str) -> str | None:
        """sha256 of the version's manifest.json (None: an unverified, manifest-less version)."""
        path = version_dir(self.models_dir, self.resolve(version)) / MANIFEST_FILE
        try:
            return _sha256(_read_bounded(path, MAX_MANIFEST_BYTES))
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
            raw = _read_bounded(folder / MANIFEST_FILE, MAX_MANIFEST_BYTES)
        except FileNotFoundError as exc:
            raise UnverifiedVersion(
                f"model version {version} has no {MANIFEST_FILE} (registered before manifests, "
                f"or copied incompletely): pin it with --model {version}, or vouch for its files "
                f"with `fraudstream models seal {version}`"
            ) from exc
        except ValueError as exc:
            raise IntegrityError(f"{version}: {exc}") from exc
        if digest is not None and _sha256(raw) != digest:
            raise IntegrityError(f"{version}: the manifest differs from the announced digest")
        expected = _parse_manifest(raw, version)
        on_disk = _version_files(folder)
        if set(on_disk) != set(expected):
            differ = sorted(set(on_disk) ^ set(expected))
            raise IntegrityError(f"{version}: files differ from the manifest: {differ[:5]}")
        contents: dict[str, bytes] = {}
        for name, path in on_disk.items():
            data = path.read_bytes()
            if _sha256(data) != expected[name]["sha256"]:
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
        return _sha256(manifest)

    def versions(self) -> list[str]:
        """Published versions, oldest first."""
        if not self.models_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.models_dir.iterdir() if p.is_dir() and self.exists(p.name)
        )

    def metrics(self, version: str) -> dict[str, Any]:
        path = version_dir(self.models_dir, self.resolve(version)) / METRICS_FILE
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc

    def threshold_info(self, version: str) -> dict[str, Any]:
        path = version_dir(self.models_dir, self.resolve(version)) / THRESHOLD_FILE
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc

    def summary(self, version: str) -> VersionSummary:
        version = self.resolve(version)
        metrics = self.metrics(version)
        threshold = self.threshold_info(version)
        champion = str(metrics.get("champion", {}).get("name", "autoencoder"))
        autoencoder = metrics.get("test", {}).get(champion, {})
        return VersionSummary(
            version=version,
            created_at=str(metrics.get("created_at", "")),
            threshold=float(threshold["threshold"]),
            rule=str(threshold["rule"]),
            roc_auc=autoencoder.get("roc_auc"),
            pr_auc=autoencoder.get("pr_auc"),
            latest=version == self._latest_or_none(),
        )

    def list(self) -> list[VersionSummary]:
        return [self.summary(v) for v in self.versions()]

    def show(self, version: str) -> dict[str, Any]:
        """Everything about one version: files, threshold and metrics."""
        version = self.resolve(version)
        path = version_dir(self.models_dir, version)
        return {
            "version": version,
            "path": str(path),
            "latest": version == self._latest_or_none(),
            "integrity": self.integrity(version),
            "files": sorted(p.name for p in path.iterdir() if p.is_file()),
            "threshold": self.threshold_info(version),
            "metrics": self.metrics(version),
        }

    def load(
        self, version: str = LATEST_ALIAS, digest: str | None = None, allow_unverified: bool = False
    ) -> KerasLoadedModel | CandidateLoadedModel:
        """The version (or LATEST) as a scorer-ready model, built from the verified bytes.

        `allow_unverified` (the operator named this version explicitly) lets a manifest-less
        version load with a warning; a version whose files differ from its manifest never loads.
        """
        version = self.resolve(version)
        try:
            files = self.read_verified(version, digest)
        except UnverifiedVersion:
            if not allow_unverified or digest is not None:
                raise
            log.warning(
                "loading a model version without a manifest: its files are not verified",
                extra={"fields": {"version": version}},
            )
            files = self._read_required(version)
        return _keras_model(version_dir(self.models_dir, version), version, files)

    def _read_required(self, version: str) -> dict[str, bytes]:
        folder = version_dir(self.models_dir, version)
        names = (*REQUIRED_FILES, *CANDIDATE_FILES, FEATURE_STATS_FILE)
        return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


def _keras_model(
    path: Path, version: str, files: dict[str, bytes]
) -> KerasLoadedModel | CandidateLoadedModel:
    """The version's champion from its file contents: a KerasLoadedModel, or when the version
    has a `scoring.json` the candidate it names (services/model_registry/scoring.py). Models go
    through a private temporary copy, so Keras reads exactly the bytes that were checked."""
    import keras

    preprocessing = Preprocessing.from_dict(json.loads(files[PREPROCESSING_FILE]))
    threshold: dict[str, Any] = json.loads(files[THRESHOLD_FILE])
    with tempfile.TemporaryDirectory(prefix="fraudstream-model-") as private:
        copy = Path(private) / MODEL_FILE
        copy.write_bytes(files[MODEL_FILE])
        model = keras.models.load_model(copy, compile=False)
    autoencoder = KerasLoadedModel(
        version=version,
        path=path,
        model=model,
        preprocessing=preprocessing,
        threshold=float(threshold["threshold"]),
        threshold_info=threshold,
        error_clip=error_clip(threshold),
        feature_stats=_feature_stats(version, files),
    )
    if SCORING_FILE not in files:  # the autoencoder is the champion (and every older version)
        return autoencoder
    return load_candidate(version, path, files, preprocessing, threshold, autoencoder)


def _feature_stats(version: str, files: dict[str, bytes]) -> FeatureStats | None:
    """The version's training statistics (None: written before them, or unreadable; the
    explanations then carry no normal range, and scoring goes on)."""
    raw = files.get(FEATURE_STATS_FILE)
    if raw is None:
        return None
    try:
        return FeatureStats.from_json(raw)
    except ValueError as exc:
        log.warning(
            "feature statistics unreadable; explanations without normal ranges",
            extra={"fields": {"version": version, "error": str(exc)[:200]}},
        )
        return None


def error_clip(threshold_info: dict[str, Any]) -> float | None:
    """The per-feature residual cap a version was scored with (None: plain MSE)."""
    clip = (threshold_info.get("error") or {}).get("clip")
    return None if clip is None else float(clip)


def load(
    version: str = "latest", models_dir: Path | str | None = None
) -> KerasLoadedModel | CandidateLoadedModel:
    """Shortcut for the scorer: `load("latest")` or `load(VERSION)` from MODELS_DIR."""
    return ModelRegistry(models_dir).load(version)
