"""Which `Host` header values a server answers: the defence against DNS rebinding.

A web page can make the analyst's browser resolve its own name to 127.0.0.1 and then talk to a
server on loopback as if same-origin; the request then carries the attacker's name in `Host`.
Refusing every name the server was not told about closes that door. By default a server bound to
loopback accepts only loopback names and addresses; one bound elsewhere also accepts its bind
address and the machine's own names. Configured names are added; `*` turns the check off.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name part of a Host header value: no port, no IPv6 brackets, lower case."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


class HostAllowList:
    """The Host names one server accepts."""

    def __init__(self, bind_host: str, extra: Iterable[str] = ()) -> None:
        names = {host_name(n) if not n.strip().startswith("*") else "*" for n in extra}
        self.any = "*" in names
        self.names = frozenset(n for n in names if n and n != "*")
        self.bind_host = bind_host
        self.machine_names = frozenset() if is_loopback(bind_host) else _machine_names(bind_host)

    def allows(self, header: str | None) -> bool:
        if self.any:
            return True
        if not header:
            return False  # HTTP/1.1 requires Host; hypercorn fills it from :authority for h2
        name = host_name(header)
        return is_loopback(name) or name in self.names or name in self.machine_names

    def describe(self) -> str:
        if self.any:
            return "any Host"
        return ", ".join(sorted({"loopback", *self.names, *self.machine_names}))


def _machine_names(bind_host: str) -> frozenset[str]:
    """The bind address (unless a wildcard) and the names this machine goes by."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    if bind_host not in WILDCARD_BINDS:
        names.add(host_name(bind_host))
    return frozenset(n for n in names if n)
