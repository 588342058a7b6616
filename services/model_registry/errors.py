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
