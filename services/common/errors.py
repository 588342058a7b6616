"""One error family for the whole project, rooted at `FraudstreamError`.

Every error a service raises on purpose derives from the root, through one subclass per service
(`KsqlError`, `RegistryError`, `TrainingDataError`, ...), so a caller can catch "anything the
project refused" with one clause and the CLI prints any of them as one line. Errors from other
libraries (fastavro, confluent-kafka, numpy) are wrapped where they cross into the project, as
confluent-kafka wraps its own serializer errors.

Each error carries a `code`: a short, stable, machine-readable name chosen where the error is
made. Metrics labels, dead-letter headers and API error bodies use the code; people read the
message. Matching on message texts written in another file is what this replaces.
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
