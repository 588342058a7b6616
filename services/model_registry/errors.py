"""The model registry's branch of the error family.

Everything the registry refuses (a version name, a version's files, an announcement) derives from
`ModelRegistryError`; its `code` is the label the scorer's `model_ignored` counter and the
trainer's promotion report use, so the set of codes stays small and fixed (docs/errors.md).
"""

from __future__ import annotations

from services.common.errors import FraudstreamError


class ModelRegistryError(FraudstreamError):
    """Anything the model registry raises on purpose."""

    default_code = "model_registry"
