"""The root of the project's error family, `FraudstreamError`, and what every member carries.

Every error a service raises on purpose derives from this root, through one subclass per service
(`KsqlServiceError`, `SchemaRegistryError`, `ModelRegistryError`, `TrainerError`,
`ProducerError`; the shared layer raises the root and the classes here). A caller can then catch
one class for "anything the project meant to say", and the CLI turns any of them into one line.

Each error carries a `code`: a short, stable snake_case name chosen where the error is made, for
metrics labels, dead-letter headers and tools, while people read the message. Codes are part of
the interface (docs/errors.md lists them); messages are not and may change.

Foreign errors (librdkafka's `KafkaException`, fastavro's, `json`'s, `OSError`) are wrapped where
they enter the project, with `raise ... from exc` so the cause stays on the chain;
`kafka_error_code` gives a librdkafka error its stable code.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # at run time librdkafka's types are looked up only once something loaded them
    from confluent_kafka import KafkaError, KafkaException

ONE_LINE_CHARS = 2000
"""`one_line` cuts a message to this many characters (messages may quote bad input)."""
CODE_PATTERN = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
"""What every code looks like: lowercase snake_case, so it is safe as a metric label value."""


class FraudstreamError(Exception):
    """A failure with a message meant for the user (no stack trace needed) and a stable code."""

    default_code: ClassVar[str] = "error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.code: str = code or self.default_code


class ServiceUnavailable(FraudstreamError):
    """A service (broker, registry, KSQL server) did not answer."""

    default_code = "service_unavailable"


class KafkaOperationFailed(FraudstreamError):
    """A Kafka client call failed; `code` is `kafka_error_code` of librdkafka's error, which is
    kept as `kafka_error` (so callers can still ask `retriable()` or `txn_requires_abort()`)."""

    default_code = "kafka"

    def __init__(self, message: str, kafka_error: KafkaError | None = None) -> None:
        code = kafka_error_code(kafka_error) if kafka_error is not None else None
        super().__init__(message, code=code)
        self.kafka_error = kafka_error

    @classmethod
    def wrap(cls, doing: str, exc: KafkaException | KafkaError) -> KafkaOperationFailed:
        """The error for `exc` raised while `doing` something (`raise X.wrap(...) from exc`)."""
        error = _kafka_error(exc)
        text = error.str() if error is not None else str(exc)
        return cls(f"{doing}: {text}", error)


class RecordRejected(FraudstreamError, ValueError):
    """One record that cannot be processed; it goes to the dead-letter topic, nothing else fails.

    The `code` names the rule the record broke (`framing`, `schema_id`, `missing_feature`, ...):
    it becomes the `fraudstream.reason` header of the dead letter and the `reason` label of the
    dead-letter counters, so its set of values must stay small and fixed.
    """

    default_code = "other"


def _kafka_types() -> tuple[type, type] | tuple[()]:
    """(KafkaException, KafkaError) once confluent-kafka is loaded, else nothing to match.

    Importing confluent-kafka costs a command about 0.1 s (its package loads asyncio and its
    serializers), and this module sits under every command. No object can be one of librdkafka's
    errors before its module is loaded, so a look in `sys.modules` answers exactly."""
    cimpl = sys.modules.get("confluent_kafka.cimpl")
    return (cimpl.KafkaException, cimpl.KafkaError) if cimpl is not None else ()


def _kafka_error(exc: KafkaException | KafkaError | BaseException) -> KafkaError | None:
    types = _kafka_types()
    if not types:
        return None
    kafka_error = types[1]
    if isinstance(exc, kafka_error):
        return exc  # type: ignore[return-value]
    args = getattr(exc, "args", ())
    first = args[0] if args else None
    return first if isinstance(first, kafka_error) else None  # type: ignore[return-value]


def kafka_error_code(error: KafkaError | KafkaException) -> str:
    """librdkafka's error as a stable code: `kafka_` and its name in lowercase, local errors
    without their leading underscore (`_TRANSPORT` → `kafka_transport`,
    `TOPIC_AUTHORIZATION_FAILED` → `kafka_topic_authorization_failed`)."""
    found = _kafka_error(error)
    if found is None:
        return "kafka"
    name = found.name().lstrip("_").lower()
    return f"kafka_{name}" if CODE_PATTERN.fullmatch(name) else "kafka"


def code_of(exc: BaseException) -> str:
    """The stable code of any exception: its own for the family, librdkafka's for Kafka
    errors, and a coarse one for the rest (which should have been wrapped where it entered)."""
    if isinstance(exc, FraudstreamError):
        return exc.code
    if isinstance(exc, _kafka_types()):
        return kafka_error_code(exc)  # type: ignore[arg-type]
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return "os_error"
    return "internal"


def one_line(exc: BaseException, limit: int = ONE_LINE_CHARS) -> str:
    """The error as one line of text for people: the message with its line breaks folded, cut
    to `limit` characters. A foreign error (a bug, or one not wrapped) also names its class,
    which the family's messages never need."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, FraudstreamError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    elif not text:
        text = exc.code.replace("_", " ")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text
