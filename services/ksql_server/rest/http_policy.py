"""What the HTTP guard (services/common/http/guard.py) enforces in front of ksqlDB's REST API.

- Refusals are ksqlDB `generic_error` objects, `error_code` = status * 100 (401 → 40100,
  "Unauthorized", as ksqlDB's own auth handler answers).
- Bodies: JSON (`application/json`, `application/vnd.ksql.v1+json`, which ksql-python-ng and
  ksqlDB's CLI send) or ksqlDB's delimited type; never a browser's cross-origin form types.
- `/healthcheck` needs no credentials: ksqlDB skips authentication on it (and /v1/metadata).
- `/inserts-stream` is an open-ended stream of rows: the app bounds each line, the guard sets
  no total size or deadline there.
- `/close-query` may come without a Content-Type: ksql-python-ng's `close_query` sends none.
  The browser types are still refused there.
"""

from __future__ import annotations

import json

from services.common.http.guard import ApiPolicy
from services.ksql_server.rest.app import MAX_BODY_BYTES

KSQL_REALM = "KsqlServer-Props"


def ksql_error_body(status: int, message: str) -> bytes:
    body = {"@type": "generic_error", "error_code": status * 100, "message": message}
    return json.dumps(body).encode()


KSQL_POLICY = ApiPolicy(
    name="KSQL server",
    error_body=ksql_error_body,
    error_media_type="application/json",
    body_media_types=frozenset(
        {
            "application/json",
            "application/vnd.ksql.v1+json",
            "application/vnd.ksqlapi.delimited.v1",
        }
    ),
    max_body_bytes=MAX_BODY_BYTES,
    realm=KSQL_REALM,
    public_paths=frozenset({"/healthcheck", "/v1/metadata", "/v1/metadata/id"}),
    streaming_paths=frozenset({"/inserts-stream"}),
    untyped_body_paths=frozenset({"/close-query"}),
)
