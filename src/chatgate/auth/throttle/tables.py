"""The in-process throttles' storage: bounded expiring tables, and the keys they use.

This module owns how a client address becomes a counter key (IPv4-mapped IPv6
to IPv4, IPv6 to its prefix, exemptions) and how a claimed username becomes a
short account key, plus the throttles' tables: `chatgate.lru.LruCache` maps
whose values carry their own `expires`, read through `live` and swept by
`prune`.  A shared store (PostgreSQL, Redis) would use the same keys
(`locate`, `account_key`) with its own expiry instead.

The least recently touched entry is evicted first: an attacker's own entry is
touched on each attempt, so rotating usernames or addresses evicts idle
entries, not the attacker's.  A table holds at most ``max_entries`` entries
(``[auth.throttle] max_entries``); its byte bound is derived from that, with
the largest key there can be (`MAX_KEY_BYTES`), so the entry bound is always
the one that binds and the byte count is there for statistics.  State records
are changed in place, so each table weighs its records at a fixed size
(`expiring_table`'s `state_bytes`).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import sys
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from chatgate.auth.throttle.options import ThrottleOptions
from chatgate.lru import ENTRY_OVERHEAD, LruCache

__all__ = [
    "MAX_KEY_BYTES",
    "Where",
    "account_key",
    "expiring_table",
    "is_exempt",
    "live",
    "locate",
    "prune",
]


class _Expiring(Protocol):
    expires: float


K = TypeVar("K", str, tuple[str, str])
V = TypeVar("V", bound=_Expiring)

_getsizeof = sys.getsizeof

#: The heaviest key a table can hold: an (account, address) pair of two 64-character
#: strings of the widest characters (`account_key` and `locate` cut longer ones).
MAX_KEY_BYTES: Final = _getsizeof(("", "")) + 2 * _getsizeof("\U0010ffff" * 64)


def _weigh_key(key: str | tuple[str, str]) -> int:
    if type(key) is tuple:
        return _getsizeof(key) + _getsizeof(key[0]) + _getsizeof(key[1])
    return _getsizeof(key)


def expiring_table(max_entries: int, state_bytes: int) -> LruCache[K, V]:
    """A table of at most `max_entries` entries whose values are weighed as
    `state_bytes` each (their size when typical; they change in place)."""
    per_entry = ENTRY_OVERHEAD + MAX_KEY_BYTES + state_bytes
    return LruCache(
        max_entries,
        max_entries * per_entry,
        lambda key, _value: _weigh_key(key) + state_bytes,
    )


def live(table: LruCache[K, V], key: K, now: float) -> V | None:
    """The entry, touched; None (and dropped) when it has expired."""
    value = table.get(key)
    if value is None:
        return None
    if value.expires <= now:
        table.pop(key)
        return None
    return value


def prune(table: LruCache[K, V], now: float) -> int:
    """Drop expired entries from the least recently touched end; stops at the first
    live one (best effort: a long-lived entry can shelter older ones)."""
    dropped = 0
    while (oldest := table.oldest()) is not None and oldest[1].expires <= now:
        table.pop(oldest[0])
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
