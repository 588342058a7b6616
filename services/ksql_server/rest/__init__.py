"""ksqlDB's REST API (Starlette ASGI app) over the `KsqlEngine` seam in `engine_api.py`."""

from services.ksql_server.rest.app import create_app

__all__ = ["create_app"]
