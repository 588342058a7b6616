"""What the HTTP guard (services/common/http/guard.py) enforces in front of the registry's API.

- Refusals are Confluent's `{"error_code": <status>, "message": ...}` (401 "Unauthorized").
- Bodies: the types Confluent's server consumes: `application/vnd.schemaregistry.v1+json`
  (what confluent-kafka's client sends), `application/vnd.schemaregistry+json`,
  `application/json` and `application/octet-stream`; never a browser's cross-origin form types
  nor a body without a type.
- No public path: Confluent's registry has no built-in exception to authentication (its
  `authentication.skip.paths` is empty by default), so `/` — the stack's health probe — needs
  credentials too.
"""

from __future__ import annotations

import json

from services.common.http.guard import ApiPolicy
from services.schema_registry.app import CONTENT_TYPE, MAX_BODY_BYTES

SCHEMA_REGISTRY_REALM = "SchemaRegistry-Props"


def registry_error_body(status: int, message: str) -> bytes:
    return json.dumps({"error_code": status, "message": message}).encode()


SCHEMA_REGISTRY_POLICY = ApiPolicy(
    name="Schema Registry",
    error_body=registry_error_body,
    error_media_type=CONTENT_TYPE,
    body_media_types=frozenset(
        {
            "application/vnd.schemaregistry.v1+json",
            "application/vnd.schemaregistry+json",
            "application/json",
            "application/octet-stream",
        }
    ),
    max_body_bytes=MAX_BODY_BYTES,
    realm=SCHEMA_REGISTRY_REALM,
)
