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


class Networks:
    """A configured list of networks (`trusted_proxies`, `[streams] hook_networks`)
    and the question whether an address is in one of them."""

    __slots__ = ("_networks",)

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )

    def __contains__(self, address: object) -> bool:
        """`address` (text) is in a network; an IPv4-mapped IPv6 address counts as
        its IPv4 address and a zone (`%eth0`) is ignored; anything that is not an
        address is in none."""
        if not self._networks or not isinstance(address, str):
            return False
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._networks)


class ClientAddresses:
    """Resolves a request's client address; built once per listener."""

    __slots__ = ("_proxies",)

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._proxies = Networks(trusted_proxies)

    def _trusted(self, address: str) -> bool:
        return address in self._proxies

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
