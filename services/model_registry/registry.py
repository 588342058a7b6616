"""The model registry on disk (`models/`) and its announcements on `fraudstream_models`.

Writers (the trainer) stage every file of a version in a hidden directory, record the sha256 of
each in `manifest.json`, fsync them all and rename the directory into place in one step, then
replace `models/LATEST` atomically, then announce the version. A reader (the scorer) therefore
never sees a half-written version through the registry: a directory named by a version is
complete, and `LATEST` always names such a directory. (Manifests and verification are in
`integrity.py`, announcements in `announcements.py`; this module stores versions.)

What a reader is *told* (an announcement on the topic, the contents of LATEST) is not trusted:
anyone who can write the topic can say anything. So a version is loaded only when its name is
well-formed (`api.validate_version`), its directory lies inside the models directory, and its
files still match the manifest written at registration (and the announced digest, if any). A
version without a manifest (written before manifests existed) is "unverified": it is loaded only
when the operator names it explicitly (`load(..., allow_unverified=True)`, `score --model V`),
or after `fraudstream models seal V` records its current files.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common.avro.features import N_FEATURES
from services.common.files import fsync_dir, fsync_tree
from services.common.settings import get_settings
from services.common.topics import MODELS_TOPIC
from services.model_registry.announcements import (
    MAX_ANNOUNCEMENT_BYTES,
    MAX_ANNOUNCEMENT_DEPTH,
    Announcer,
    BadAnnouncement,
    announcement_from_json,
    announcement_to_json,
    utc_now_iso,
)
from services.model_registry.api import (
    LATEST_ALIAS,
    LATEST_FILE,
    InvalidVersion,
    validate_version,
    version_dir,
)
from services.model_registry.dense_forward import DenseChain
from services.model_registry.errors import (
    BadLatest,
    IntegrityError,
    ModelRefused,
    ModelRegistryError,
    UnverifiedVersion,
    VersionNotFound,
)
from services.model_registry.feature_stats import FEATURE_STATS_FILE, FeatureStats
from services.model_registry.integrity import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MAX_MANIFEST_BYTES,
    MAX_VERSION_FILES,
    VersionIntegrity,
    build_manifest,
    read_bounded,
)
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
REQUIRED_FILES: tuple[str, ...] = (MODEL_FILE, PREPROCESSING_FILE, THRESHOLD_FILE, METRICS_FILE)
"""A directory without these is not a version (and is never published)."""
STAGING_PREFIX = ".staging-"
MAX_LATEST_BYTES = 256

__all__ = [  # the names callers import from here, wherever they are defined now
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "MAX_ANNOUNCEMENT_BYTES",
    "MAX_ANNOUNCEMENT_DEPTH",
    "MAX_MANIFEST_BYTES",
    "MAX_VERSION_FILES",
    "METRICS_FILE",
    "MODEL_FILE",
    "PREPROCESSING_FILE",
    "REPORT_FILE",
    "REQUIRED_FILES",
    "STAGING_PREFIX",
    "THRESHOLD_FILE",
    "BadAnnouncement",
    "BadLatest",
    "IntegrityError",
    "KerasLoadedModel",
    "ModelRefused",
    "ModelRegistry",
    "UnverifiedVersion",
    "VersionNotFound",
    "VersionSummary",
    "announcement_from_json",
    "announcement_to_json",
    "build_manifest",
    "error_clip",
    "load",
    "new_version_id",
    "utc_now_iso",
]

log = logging.getLogger("fraudstream.model_registry")


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


class KerasLoadedModel:
    """A registered version ready to score (implements `api.LoadedModel`).

    `score` runs preprocessing in numpy and then ONE model call per batch (forward pass plus
    per-row error): in numpy when the model is a plain chain of Dense layers, as the trainer's
    autoencoder is (`dense_forward`: a traced TensorFlow call costs more than the whole forward
    pass of a small batch), otherwise one traced TensorFlow call with a `[None, 30]` signature,
    so batches of any size reuse the same graph instead of retracing.

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
        self.dense_chain = DenseChain.from_keras(model)

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
        if self.dense_chain is not None:
            return self._dense_errors_and_parts(x)[0]
        errors = self._errors(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(errors.numpy())

    def errors_and_parts_preprocessed(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The errors and each feature's part of them [n, 30] (one model call)."""
        if len(x) == 0:
            return np.empty(0, dtype=np.float32), np.empty((0, N_FEATURES), dtype=np.float32)
        if self.dense_chain is not None:
            return self._dense_errors_and_parts(x)
        return self.errors_and_parts_traced(x)

    def errors_and_parts_traced(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The same through the traced TensorFlow call, whatever the model: the exact slow path
        the numpy chain is tested against."""
        errors, parts = self._explained(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(errors.numpy()), np.asarray(parts.numpy())

    def _dense_errors_and_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.dense_chain is not None
        rows = np.ascontiguousarray(x, dtype=np.float32)
        parts = np.square(rows - self.dense_chain(rows))
        np.minimum(parts, np.float32(self._cap), out=parts)
        return parts.mean(axis=1, dtype=np.float32), parts

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


class ModelRegistry(VersionIntegrity, Announcer):
    """Versions under `models_dir` (default: MODELS_DIR) and LATEST; their verification comes
    from `integrity.VersionIntegrity`, their announcements from `announcements.Announcer`."""

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
            raw = read_bounded(self.models_dir / LATEST_FILE, MAX_LATEST_BYTES)
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
