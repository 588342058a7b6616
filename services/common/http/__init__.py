"""HTTP serving shared by the KSQL server and the Schema Registry.

- `serving`: hypercorn on one port (HTTP/1.1 + HTTP/2, cleartext or TLS) and its timeouts;
- `guard`: the ASGI middleware every served app is wrapped in (Host allow-list, Basic auth,
  content types, body size and time limits), answering in each API's own error shape;
- `auth`, `hosts`, `limits`: the pieces the guard is made of;
- `clients`: what the project's own clients need to talk to a protected server.
"""

from __future__ import annotations

from typing import Any

__all__ = ["guard_config", "hypercorn_config", "run_asgi", "serve_api"]


def __getattr__(name: str) -> Any:
    """The serving names, imported on first use: the `serve` commands' options live in
    `services.common.http.cli`, and mounting them must not load hypercorn (PEP 562)."""
    if name in __all__:
        from services.common.http import serving

        return getattr(serving, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
