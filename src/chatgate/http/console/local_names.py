"""Whether a request named this machine in its `Host` header (DNS rebinding).

A page that is served to loopback clients only (the setup wizard) is still
reachable by another site: its page, open in a browser on the server's own
machine, makes its own name resolve to 127.0.0.1 and then talks to the
server as a loopback client, reading the answers as its own (same origin).
What such a request cannot change is the name it was sent to, which is the
other site's.  So loopback-only pages also require `Host` to name this machine:
a loopback address, `localhost` (or a name under `.localhost`, RFC 6761), the
machine's own host name, or a domain this server serves (the operator's names,
not an attacker's).

Pure: reads nothing but its arguments and the machine's host name.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from urllib.parse import urlsplit


def host_name(host_header: str) -> str | None:
    """The name or address a `Host` value names, lower case, without its port or
    IPv6 brackets; None when it is malformed."""
    try:
        name = urlsplit("//" + host_header).hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


def names_this_machine(host_header: str, served: Collection[str]) -> bool:
    """Whether `host_header` names this machine (see the module docstring)."""
    name = host_name(host_header)
    if not name:
        return False
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    if name == "localhost" or name.endswith(".localhost"):
        return True
    return name in served or name == socket.gethostname().lower()
