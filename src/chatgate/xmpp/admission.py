"""How many not-yet-established connections each client address holds.

A connection counts from its first byte until its session is bound (or it
closes): the stretch in which it costs the server work (TLS handshakes, SASL,
registration forms) without anyone being accountable for it.  Past
`[limits] max_preauth_connections_per_address`, a new connection from that
address is closed with `policy-violation` before anything else is done for it.

`ConnectionGauge` is the interface; `LocalConnectionGauge` keeps the counts of
this process.  Several processes behind one address would each count their own
share: a shared store (Redis INCR/DECR with a TTL) can implement the same two
methods when the cluster layer arrives.
"""

from __future__ import annotations

from typing import Protocol


class ConnectionGauge(Protocol):
    def enter(self, address: str) -> int:
        """Count one more connection from `address`; return the count including it."""
        ...

    def leave(self, address: str) -> None:
        """One connection from `address` was established or closed."""


class LocalConnectionGauge:
    """In-process counts; an address with no connection has no entry (bounded by
    the number of open connections)."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def enter(self, address: str) -> int:
        count = self._counts.get(address, 0) + 1
        self._counts[address] = count
        return count

    def leave(self, address: str) -> None:
        count = self._counts.get(address, 0) - 1
        if count > 0:
            self._counts[address] = count
        else:
            self._counts.pop(address, None)

    def count(self, address: str) -> int:
        return self._counts.get(address, 0)
