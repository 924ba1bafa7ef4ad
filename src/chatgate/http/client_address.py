"""Who the client of an HTTP request is, for brute-force protection and logs.

The peer of the TCP connection is the client, unless that peer is a reverse
proxy the operator trusts (`[http] trusted_proxies`): then `X-Forwarded-For`
names the client.  The header is read from its right end, skipping addresses
of trusted proxies, because every proxy appends the address it received the
request from and only the right end was written by someone we trust; a client
can put anything at the left end.  From an untrusted peer the header is
ignored: otherwise any client could choose the address it is throttled under.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddresses:
    """Resolves a request's client address; built once per listener."""

    __slots__ = ("_proxies",)

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._proxies: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(p, strict=False) for p in trusted_proxies
        )

    def _trusted(self, address: str) -> bool:
        if not self._proxies:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._proxies)

    def client(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: `peer` itself, or what trusted proxies forwarded."""
        if peer is None or not forwarded_for or not self._trusted(peer):
            return peer
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return peer  # a malformed chain proves nothing
            if not self._trusted(hop):
                return hop
        return peer
