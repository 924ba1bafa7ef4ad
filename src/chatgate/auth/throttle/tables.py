"""The in-process throttles' storage: bounded LRU tables, and the keys they use.

This module owns how a client address becomes a counter key (IPv4-mapped IPv6
to IPv4, IPv6 to its prefix, exemptions) and how a claimed username becomes a
short account key, plus `LruTable`, an entry-bounded map whose values expire.
A shared store (PostgreSQL, Redis) would use the same keys (`locate`,
`account_key`) with its own expiry instead of `LruTable`.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from chatgate.auth.throttle.options import ThrottleOptions

__all__ = ["LruTable", "Where", "account_key", "is_exempt", "locate"]


class _Expiring(Protocol):
    expires: float


K = TypeVar("K")
V = TypeVar("V", bound=_Expiring)


class LruTable(Generic[K, V]):
    """An insertion/touch-ordered map of at most `limit` entries; values carry `expires`.

    The least recently touched entry is evicted first: an attacker's own entry is
    touched on each attempt, so rotating usernames or addresses evicts idle entries,
    not the attacker's."""

    __slots__ = ("_data", "_limit", "evicted")

    def __init__(self, limit: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._limit = limit
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._data)

    def live(self, key: K, now: float) -> V | None:
        """The entry, touched; None (and dropped) when it has expired."""
        value = self._data.get(key)
        if value is None:
            return None
        if value.expires <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._limit:
            self._data.popitem(last=False)
            self.evicted += 1

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def prune(self, now: float) -> int:
        """Drop expired entries from the least recently touched end; stops at the first
        live one (best effort: a long-lived entry can shelter older ones)."""
        dropped = 0
        data = self._data
        while data:
            key, value = next(iter(data.items()))
            if value.expires > now:
                break
            del data[key]
            dropped += 1
        return dropped


@dataclass(frozen=True, slots=True)
class Where:
    key: str  # what counters are keyed by
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None


@functools.lru_cache(maxsize=8192)
def locate(address: str | None, ipv6_prefix: int) -> Where:
    """Normalise a transport's address: IPv4-mapped IPv6 to IPv4, IPv6 to its prefix."""
    if not address:
        return Where("unknown", None)
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return Where(address[:64], None)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            ip = ipaddress.IPv6Address(ip.packed)  # drop any %scope
            net = ipaddress.IPv6Network((ip, ipv6_prefix), strict=False)
            return Where(str(net), ip)
    return Where(str(ip), ip)


def is_exempt(options: ThrottleOptions, where: Where) -> bool:
    ip = where.ip
    if ip is None:
        return False
    if options.exempt_loopback and ip.is_loopback:
        return True
    return any(ip in net for net in options.exempt_networks)


def account_key(account: str) -> str:
    """Accounts longer than 64 characters are keyed by a 128-bit hash, so entries stay
    small however long the claimed name.  NUL never occurs in a prepared localpart,
    so hashed keys cannot collide with names."""
    if len(account) <= 64:
        return account
    return (
        "\0" + hashlib.blake2b(account.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    )
