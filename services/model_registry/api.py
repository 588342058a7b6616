"""The model registry's contract, shared by the trainer (writes versions) and the scorer (reads).

`models/<version>/` holds `model.keras`, `preprocessing.json`, `threshold.json`, `metrics.json`,
plots, `report.md` and `manifest.json` (sha256 of every other file, written at registration);
a version whose champion is not the autoencoder adds `scoring.json` and `forest.npz` or
`supervised.keras` (scoring.py);
`models/LATEST` names the current version (replaced atomically); each new version is announced on
`fraudstream_models` as a JSON event keyed by the model name.

Version names arrive from places nobody vouches for (the topic, the LATEST file, the command
line), so they are checked here, by ONE pattern, and turned into a directory here only:
`version_dir` is the single place a name becomes a path, and the path it returns always lies
directly inside the models directory.

This module fixes the names both sides use; `registry.py` implements them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from services.model_registry.errors import ModelRegistryError

MODEL_NAME = "creditcardfraud-autoencoder"
LATEST_FILE = "LATEST"
LATEST_ALIAS = "latest"
"""What `--model` takes for "whatever LATEST names"; never a version name itself."""

MAX_VERSION_LENGTH = 64
VERSION_PATTERN = re.compile(
    rf"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_VERSION_LENGTH - 1}}}", re.ASCII
)
"""A version name: one path component of letters, digits, `.`, `_` and `-`, starting with a
letter or digit (so never hidden, never a staging directory), no `..`, at most 64 characters.
No separator, no control character, no absolute path can match. Used with fullmatch only."""


class InvalidVersion(ModelRegistryError, ValueError):
    """A version name that the registry would never publish (and must never turn into a path)."""

    default_code = "bad_version"


def validate_version(name: object) -> str:
    """`name` if it is a well-formed version name, else InvalidVersion (the message quotes at
    most a short, escaped prefix: the name may be anything an attacker sent)."""
    # `latest` is the alias and `LATEST` the file: neither can name a version
    if isinstance(name, str) and VERSION_PATTERN.fullmatch(name) and name.lower() != LATEST_ALIAS:
        return name
    shown = ascii(name)[:40] if isinstance(name, str) else type(name).__name__
    raise InvalidVersion(f"not a model version name: {shown}")


def version_dir(models_dir: Path, version: str) -> Path:
    """`models_dir/<version>` for a valid name; InvalidVersion unless the resolved directory is
    a direct child of the resolved models directory (a symlinked version pointing elsewhere
    counts as outside)."""
    version = validate_version(version)
    path = models_dir / version
    root = models_dir.resolve()
    if path.resolve().parent != root:
        raise InvalidVersion(f"model version {version} resolves outside {models_dir}")
    return path


@dataclass(frozen=True)
class ModelAnnouncement:
    """The JSON event on `fraudstream_models` (key: model name).

    `path` is informational only (where the writer kept it): a reader resolves `version` in its
    own models directory and never opens `path`. `digest` is the sha256 of the version's
    `manifest.json`; when present, a reader acts only if its copy has the same one."""

    model: str
    version: str
    path: str
    threshold: float
    created_at: str
    digest: str | None = None


class LoadedModel(Protocol):
    """A model version ready to score: preprocessing + the champion + threshold."""

    version: str
    threshold: float

    def score(self, features: np.ndarray) -> np.ndarray:
        """The champion's score per row (the autoencoder's reconstruction error, or a
        candidate's score; higher = riskier) for raw features float32 [n, 30] (TIME, V1..V28,
        AMOUNT as in common.avro.features); compiled calls for the whole batch."""
        ...
