"""Free loopback ports for the servers tests start (chatgate, PostgreSQL, Redis,
slapd, Prosody...).

Picking a port with ``bind(("127.0.0.1", 0))`` and closing the socket is unsafe
once the suite runs in several processes (pytest-xdist): every client connection
takes its source port from that same ephemeral range, and the kernel may give a
port just released to another process's ``bind(0)``, so the server that was to
bind it finds it taken ("address already in use").  Ports are picked below the
ephemeral range instead, each xdist worker in a slice of its own, walked in turn
from a random start (a port comes back only after the whole slice), and each
checked bindable before it is handed out.
"""

from __future__ import annotations

import os
import random
import socket
from itertools import count

#: the lowest port used; the highest is below the kernel's ephemeral range
LOWEST = 10_000


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _worker_slice() -> range:
    """This process's ports: the span below the ephemeral range split evenly among
    the xdist workers (one process: all of it)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    index = int(name[2:]) if name[2:].isdigit() else 0
    size = (max(_ephemeral_start(), LOWEST + 2_000) - LOWEST) // workers
    start = LOWEST + (index % workers) * size
    return range(start, start + size)


_SLICE = _worker_slice()
_NEXT = count(random.randrange(len(_SLICE)))


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing uses now, not handed out again by this process
    before the rest of its slice."""
    for _ in range(len(_SLICE)):
        port = _SLICE[next(_NEXT) % len(_SLICE)]
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in {_SLICE}")


def free_ports(number: int) -> list[int]:
    """`number` distinct free ports."""
    return [free_port() for _ in range(number)]
