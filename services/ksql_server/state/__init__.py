"""State stores of stateful queries (aggregations, materialised tables, joins, windows).

`KeyValueStore` (store.py) is one store: a dict with an undo log, flushed into a compacted
changelog topic in the query's transaction; `QueryStores` (stores.py) is the set a query owns,
restored from the changelogs before it processes anything. See docs/ksql-engine.md, "State".
"""

from services.ksql_server.state.store import KeyValueStore, changelog_topic, decode, encode
from services.ksql_server.state.stores import QueryStores

__all__ = ["KeyValueStore", "QueryStores", "changelog_topic", "decode", "encode"]
