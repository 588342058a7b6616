"""The root of the project's error family, `FraudstreamError`, and what every member carries.

The aim (issue 12) is that every error a service raises on purpose derives from this root, one
subclass per service, with foreign errors wrapped where they enter the project. Each error
carries a `code`: a short, stable name chosen where the error is made, for metrics labels and
dead-letter headers, while people read the message. Until the per-service classes are
re-rooted, only the classes here and their direct subclasses follow it, and dead letters carry
the default code `other`.
"""

from __future__ import annotations

from typing import ClassVar


class FraudstreamError(Exception):
    """A failure with a message meant for the user (no stack trace needed) and a stable code."""

    default_code: ClassVar[str] = "error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.code: str = code or self.default_code


class ServiceUnavailable(FraudstreamError):
    """A service (broker, registry, KSQL server) did not answer."""

    default_code = "service_unavailable"


class RecordRejected(FraudstreamError, ValueError):
    """One record that cannot be processed; it goes to the dead-letter topic, nothing else fails.

    The `code` names the rule the record broke (`framing`, `schema_id`, `missing_feature`, ...):
    it becomes the `fraudstream.reason` header of the dead letter and the `reason` label of the
    dead-letter counters, so its set of values must stay small and fixed.
    """

    default_code = "other"
