"""Which property overrides a client may send: `GET /is_valid_property/{name}` and the same
check on the `streamsProperties` / `properties` of every request.

ksqlDB's rules (KsqlResource.isValidProperty): a property named in the server's
`ksql.properties.overrides.denylist` is refused; with shared runtimes on
(`ksql.runtime.feature.shared.enabled`) only the query-level properties may be overridden, and a
known Kafka Streams / consumer / producer or ksql property outside them is refused. Everything
else is valid. A refusal is a 400 with error code 40000.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.ksql_server.rest.errors import BadRequest

DENYLIST_PROPERTY = "ksql.properties.overrides.denylist"
SHARED_RUNTIME_PROPERTY = "ksql.runtime.feature.shared.enabled"

QUERY_LEVEL_PROPERTIES = frozenset(
    {
        "auto.offset.reset",
        "buffered.records.per.partition",
        "cache.max.bytes.buffering",
        "ksql.fail.on.deserialization.error",
        "ksql.functions.string.case.config.toggle.enabled",
        "ksql.nested.error.set.null",
        "ksql.query.retry.backoff.max.ms",
        "ksql.query.pull.max.allowed.offset.lag",
        "ksql.query.pull.table.scan.enabled",
        "ksql.timestamp.throw.on.invalid",
        "max.task.idle.ms",
        "task.timeout.ms",
    }
)
"""ksqlDB's PropertiesList.QueryLevelProperties."""


def _denylist(server: Mapping[str, Any]) -> set[str]:
    raw = server.get(DENYLIST_PROPERTY) or ""
    items: Iterable[Any] = raw.split(",") if isinstance(raw, str) else raw
    return {str(item).strip() for item in items if str(item).strip()}


def _enabled(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def check_overrides(names: Iterable[str], server: Mapping[str, Any]) -> None:
    """BadRequest (40000) for the first denied name, in ksqlDB's words."""
    denied = _denylist(server)
    for name in names:
        if name in denied:
            raise BadRequest(
                "A property override was set locally for a property that the server prohibits "
                f"overrides for: '{name}'"
            )


def check_property(name: str, server: Mapping[str, Any]) -> bool:
    """True, or BadRequest (40000) with ksqlDB's message."""
    check_overrides([name], server)
    if _enabled(server.get(SHARED_RUNTIME_PROPERTY)):
        key = name.removeprefix("ksql.streams.")
        known = not name.startswith("ksql.") or name.startswith("ksql.streams.")
        if known and key not in QUERY_LEVEL_PROPERTIES and name not in QUERY_LEVEL_PROPERTIES:
            raise BadRequest(
                f"When shared runtimes are enabled, the config {{{name}=}} can only be set for "
                "the entire cluster and all queries currently running in it, and not "
                "configurable for individual queries. Please use ALTER SYSTEM to change this "
                "config for all queries."
            )
    return True
