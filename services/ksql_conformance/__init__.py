"""ksqlDB's query-validation tests (QTT) run against the KSQL server's engine on the real broker.

A test harness, not part of the server: it drives `services.ksql_server.engine.Engine` from
above (layer 5 of the import graph), and the server never imports it. `fraudstream ksql
conformance` is mounted by `services.ksql_server.cli` through `importlib` from this package's
thin `cli` module; the runner (`qtt`, `report`, `schemas`) loads only when the command runs.
"""
