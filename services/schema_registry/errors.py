"""The Schema Registry's branch of the error family, with Confluent's numeric error codes.

Clients (confluent_kafka's `SchemaRegistryError`, ksqlDB, Kafka Connect) branch on `error_code`,
not on the message, so every failure carries the exact `error_code` Confluent's server would
send; `code` is the family's stable string for the same failure (logs, metrics).
"""

from __future__ import annotations

from services.common.errors import FraudstreamError


class SchemaRegistryError(FraudstreamError):
    """Anything the Schema Registry service raises on purpose."""

    default_code = "schema_registry"


ERROR_CODES = {
    400: "bad_request",
    405: "method_not_allowed",
    409: "incompatible_schema",
    413: "body_too_large",
    40401: "subject_not_found",
    40402: "version_not_found",
    40403: "schema_not_found",
    40404: "subject_soft_deleted",
    40405: "subject_not_soft_deleted",
    40406: "version_soft_deleted",
    40407: "version_not_soft_deleted",
    40408: "subject_config_not_found",
    40409: "subject_mode_not_found",
    42201: "invalid_schema",
    42202: "invalid_version",
    42203: "invalid_compatibility_level",
    42204: "invalid_mode",
    42205: "operation_not_permitted",
    42206: "reference_exists",
    50001: "store_error",
    50002: "timeout",
    50003: "forwarding_error",
    50004: "unknown_leader",
}
"""Confluent's numeric `error_code` → the family's `code`."""


class RegistryError(SchemaRegistryError):
    """A failure answered as `{"error_code": error_code, "message": message}` with HTTP
    `status`; `code` is the stable name of `error_code` unless the caller names a finer one."""

    def __init__(
        self, status: int, error_code: int, message: str, *, code: str | None = None
    ) -> None:
        super().__init__(message, code=code or ERROR_CODES.get(error_code, "schema_registry"))
        self.status = status
        self.error_code = error_code
        self.message = message


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(subject: str, version: int | str) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found.")


def schema_not_found(detail: str = "Schema not found") -> RegistryError:
    return RegistryError(404, 40403, detail)


def subject_soft_deleted(subject: str) -> RegistryError:
    return RegistryError(
        404,
        40404,
        f"Subject '{subject}' was soft deleted.Set permanent=true to delete permanently",
    )


def subject_not_soft_deleted(subject: str) -> RegistryError:
    return RegistryError(
        404,
        40405,
        f"Subject '{subject}' was not deleted first before being permanently deleted",
    )


def version_soft_deleted(subject: str, version: int) -> RegistryError:
    return RegistryError(
        404,
        40406,
        f"Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete "
        "permanently",
    )


def version_not_soft_deleted(subject: str, version: int) -> RegistryError:
    return RegistryError(
        404,
        40407,
        f"Subject '{subject}' Version {version} was not deleted first before being permanently "
        "deleted",
    )


def subject_config_not_found(subject: str) -> RegistryError:
    return RegistryError(
        404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured"
    )


def subject_mode_not_found(subject: str) -> RegistryError:
    return RegistryError(
        404, 40409, f"Subject '{subject}' does not have subject-level mode configured"
    )


def incompatible_schema(messages: list[str]) -> RegistryError:
    detail = "; ".join(messages) if messages else "incompatible"
    return RegistryError(
        409,
        409,
        f"Schema being registered is incompatible with an earlier schema for subject: {detail}",
    )


def invalid_schema(detail: str) -> RegistryError:
    return RegistryError(422, 42201, f"Invalid schema: {detail}")


def invalid_version(version: str) -> RegistryError:
    return RegistryError(
        422,
        42202,
        f"The specified version '{version}' is not a valid version id. Allowed values are between "
        '[1, 2^31-1] and the string "latest"',
    )


def invalid_compatibility_level(level: object) -> RegistryError:
    return RegistryError(
        422,
        42203,
        f"Invalid compatibility level. Valid values are none, backward, forward, full, "
        f"backward_transitive, forward_transitive, and full_transitive (got {level!r})",
    )


def invalid_mode(mode: object) -> RegistryError:
    return RegistryError(
        422, 42204, f"Invalid mode. Valid values are READWRITE, READONLY, IMPORT (got {mode!r})"
    )


def operation_not_permitted(detail: str) -> RegistryError:
    return RegistryError(422, 42205, detail)


def bad_request(detail: str) -> RegistryError:
    return RegistryError(400, 400, detail)


def store_error(detail: str) -> RegistryError:
    return RegistryError(500, 50001, f"Error in the backend data store: {detail}")


def timeout(detail: str) -> RegistryError:
    return RegistryError(500, 50002, f"Operation timed out: {detail}")


def not_ready() -> RegistryError:
    return RegistryError(
        503,
        50002,
        "Schema Registry is still reading the _schemas topic; try again shortly",
        code="not_ready",
    )


def forwarding_error(detail: str) -> RegistryError:
    return RegistryError(500, 50003, f"Error while forwarding the request to the leader: {detail}")


def unknown_leader() -> RegistryError:
    return RegistryError(500, 50004, "Unknown leader: no Schema Registry instance is the writer")


def reference_exists(subject: str, version: int) -> RegistryError:
    """Confluent's 42206: a schema that other schemas reference cannot be deleted."""
    return RegistryError(
        422,
        42206,
        "One or more references exist to the schema "
        f"{{magic=1,keytype=SCHEMA,subject={subject},version={version}}}.",
    )
