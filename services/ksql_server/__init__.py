"""ksql_server service."""
