"""HTTP serving shared by the KSQL server and the Schema Registry.

- `serving`: hypercorn on one port (HTTP/1.1 + HTTP/2, cleartext or TLS) and its timeouts;
- `guard`: the ASGI middleware every served app is wrapped in (Host allow-list, Basic auth,
  content types, body size and time limits), answering in each API's own error shape;
- `auth`, `hosts`, `limits`: the pieces the guard is made of;
- `clients`: what the project's own clients need to talk to a protected server.
"""

from services.common.http.serving import guard_config, hypercorn_config, run_asgi, serve_api

__all__ = ["guard_config", "hypercorn_config", "run_asgi", "serve_api"]
