"""What a pull query's LIMIT may be, and how a pull query says it ended.

ksqlDB's PullQueryValidator refuses a LIMIT when `ksql.query.pull.limit.clause.enabled` is off
and a negative one always (the grammar itself takes any signed number, and the parser refuses a
fraction), each with the pull-query hint appended. A pull query that stopped at its LIMIT ends
with `Limit Reached`, one that ran out of rows with `Query Completed`; a push query only ends at
its LIMIT. The rules are pure (a parsed SELECT and the query's properties in, an error out) so
the engine, the REST layer and the conformance runner share them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.ksql_server.errors import KsqlError
from services.ksql_server.parser import ast as A

PULL_LIMIT_PROPERTY = "ksql.query.pull.limit.clause.enabled"
PULL_QUERY_SYNTAX_HELP = (
    " See https://cnfl.io/queries for more info.\n"
    "Add EMIT CHANGES if you intended to issue a push query."
)
FINAL_LIMIT = "Limit Reached"
FINAL_COMPLETED = "Query Completed"


def _enabled(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def check_pull_limit(select: A.Select, properties: Mapping[str, Any]) -> None:
    """Raise ksqlDB's error for a pull query's LIMIT it refuses."""
    if select.limit is None:
        return
    if not _enabled(properties.get(PULL_LIMIT_PROPERTY, True)):
        raise KsqlError(
            "LIMIT clause in pull queries is currently disabled. You can enable them by setting "
            f"{PULL_LIMIT_PROPERTY}=true." + PULL_QUERY_SYNTAX_HELP
        )
    if select.limit < 0:
        raise KsqlError(
            "Pull queries don't support negative integers in the LIMIT clause."
            + PULL_QUERY_SYNTAX_HELP
        )


def final_message(is_pull: bool, limit_reached: bool) -> str:
    """The `finalMessage` a query's response ends with."""
    return FINAL_LIMIT if limit_reached or not is_pull else FINAL_COMPLETED
