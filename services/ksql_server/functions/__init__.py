"""Scalar functions (UDFs) with ksqlDB's names, null handling and return types.

`registry.py` holds the Function type, the table and the core functions; each other module
registers one family (importing it is what registers it): strings, maths, date/time, JSON,
arrays and maps, URLs. The aggregate functions (UDAFs) follow the contract in
`aggregates.py`; `agg_stats`, `agg_collect` and `agg_offset` register ksqlDB's library.
`docs/ksql-functions.md` lists them against ksqlDB's documentation.
"""

from services.ksql_server.functions import (  # noqa: F401 - imported to register
    agg_collect,
    agg_offset,
    agg_stats,
    collections,
    datetime_fns,
    json_fns,
    maths,
    strings,
    url,
)
from services.ksql_server.functions.registry import FUNCTIONS, Function, lookup

__all__ = ["FUNCTIONS", "Function", "lookup"]
