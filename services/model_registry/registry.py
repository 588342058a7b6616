"""The model registry on disk (`models/`) and its announcements on `fraudstream_models`.

Writers (the trainer) stage every file of a version in a hidden directory and rename it into
place in one step, then replace `models/LATEST` atomically, then announce the version. A reader
(the scorer) therefore never sees a half-written version: a directory named by a version is
complete, and `LATEST` always names such a directory.
"""

from __future__ import annotations

import json
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

from services.common.errors import FraudstreamError, ServiceUnavailable
from services.common.features import N_FEATURES
from services.common.settings import get_settings
from services.common.topics import MODELS_TOPIC
from services.model_registry.api import (
    LATEST_FILE,
    MODEL_NAME,
    ModelAnnouncement,
    version_dir,
)
from services.model_registry.preprocessing import Preprocessing

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


class VersionNotFound(FraudstreamError):
    """The named version (or LATEST) does not exist in the registry."""


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


def announcement_from_json(value: bytes | str) -> ModelAnnouncement:
    """Parse an event from `fraudstream_models` (raises ValueError on a malformed one)."""
    try:
        doc = json.loads(value)
        return ModelAnnouncement(
            model=str(doc["model"]),
            version=str(doc["version"]),
            path=str(doc["path"]),
            threshold=float(doc["threshold"]),
            created_at=str(doc["created_at"]),
        )
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a model announcement: {exc}") from exc


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
        self._errors = tf.function(
            self._reconstruction_errors,
            input_signature=[tf.TensorSpec([None, N_FEATURES], tf.float32)],
            reduce_retracing=True,
        )

    def _reconstruction_errors(self, x: Any) -> Any:
        import tensorflow as tf

        reconstruction = self.model(x, training=False)
        return tf.reduce_mean(tf.minimum(tf.square(x - reconstruction), self._cap), axis=1)

    def errors_preprocessed(self, x: np.ndarray) -> np.ndarray:
        """Reconstruction error of rows that are already preprocessed (one model call)."""
        if len(x) == 0:
            return np.empty(0, dtype=np.float32)
        errors = self._errors(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(errors.numpy())

    def score(self, features: np.ndarray) -> np.ndarray:
        """Reconstruction error per row of raw features float32 [n, 30]."""
        return self.errors_preprocessed(self.preprocessing.transform(features))

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
        version = version or new_version_id()
        self.models_dir.mkdir(parents=True, exist_ok=True)
        if version_dir(self.models_dir, version).exists():
            raise FraudstreamError(f"model version {version} already exists")
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
        """Rename a complete staging directory to `models/<version>` (one atomic step)."""
        missing = [name for name in REQUIRED_FILES if not (staging / name).exists()]
        if missing:
            raise FraudstreamError(f"version {version} is incomplete: missing {', '.join(missing)}")
        target = version_dir(self.models_dir, version)
        os.rename(staging, target)
        return target

    def set_latest(self, version: str) -> None:
        """Point LATEST at a published version: write a temporary file, then os.replace."""
        if not self.exists(version):
            raise VersionNotFound(f"model version {version} does not exist in {self.models_dir}")
        fd, tmp = tempfile.mkstemp(prefix=".LATEST.", dir=self.models_dir)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(version + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.models_dir / LATEST_FILE)
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
        )

    def announce(
        self,
        version: str,
        bootstrap: str | None = None,
        timeout: float = 15.0,
        topic: str = MODELS_TOPIC,
    ) -> ModelAnnouncement:
        """Publish the version's event on `fraudstream_models`, keyed by the model name."""
        from services.common.kafka import ensure_topic, make_producer

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
        path = version_dir(self.models_dir, version)
        return not version.startswith(".") and all((path / f).exists() for f in REQUIRED_FILES)

    def latest(self) -> str | None:
        try:
            name = (self.models_dir / LATEST_FILE).read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def resolve(self, version: str) -> str:
        """`latest` → the version LATEST names; otherwise the version itself, checked."""
        if version == "latest":
            latest = self.latest()
            if latest is None:
                raise VersionNotFound(f"no model registered yet in {self.models_dir} (no LATEST)")
            version = latest
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
        autoencoder = metrics.get("test", {}).get("autoencoder", {})
        return VersionSummary(
            version=version,
            created_at=str(metrics.get("created_at", "")),
            threshold=float(threshold["threshold"]),
            rule=str(threshold["rule"]),
            roc_auc=autoencoder.get("roc_auc"),
            pr_auc=autoencoder.get("pr_auc"),
            latest=version == self.latest(),
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
            "latest": version == self.latest(),
            "files": sorted(p.name for p in path.iterdir() if p.is_file()),
            "threshold": self.threshold_info(version),
            "metrics": self.metrics(version),
        }

    def load(self, version: str = "latest") -> KerasLoadedModel:
        """The version (or LATEST) as a scorer-ready model."""
        import keras

        version = self.resolve(version)
        path = version_dir(self.models_dir, version)
        preprocessing = Preprocessing.from_dict(json.loads((path / PREPROCESSING_FILE).read_text()))
        threshold = self.threshold_info(version)
        model = keras.models.load_model(path / MODEL_FILE, compile=False)
        return KerasLoadedModel(
            version=version,
            path=path,
            model=model,
            preprocessing=preprocessing,
            threshold=float(threshold["threshold"]),
            threshold_info=threshold,
            error_clip=error_clip(threshold),
        )


def error_clip(threshold_info: dict[str, Any]) -> float | None:
    """The per-feature residual cap a version was scored with (None: plain MSE)."""
    clip = (threshold_info.get("error") or {}).get("clip")
    return None if clip is None else float(clip)


def load(version: str = "latest", models_dir: Path | str | None = None) -> KerasLoadedModel:
    """Shortcut for the scorer: `load("latest")` or `load(VERSION)` from MODELS_DIR."""
    return ModelRegistry(models_dir).load(version)
