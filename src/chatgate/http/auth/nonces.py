"""Digest nonce counts: each nonce's highest `nc`, so a replayed response is refused.

`NonceCounts` is the interface a shared store (Redis, a table) will implement so
that every process sees one count per nonce; `LocalNonceCounts` keeps them in
this process, bounded.  What a bounded table must not do is forget a nonce and
then take its old `nc` again: when an entry is pushed out, every nonce issued
at or before it is answered FORGOTTEN from then on (the method sends
`stale=true`, the client takes a fresh nonce), so eviction never reopens a
replay.  Entries past the nonce lifetime are dropped: such nonces are stale anyway.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Protocol

__all__ = ["LocalNonceCounts", "NonceCounts", "NonceUse"]


class NonceUse(enum.Enum):
    FRESH = "fresh"  # nc is above every nc seen with this nonce: go on
    REPLAYED = "replayed"  # nc was seen already (or a lower one): refuse
    FORGOTTEN = "forgotten"  # the table cannot tell any more: answer stale=true


class NonceCounts(Protocol):
    async def advance(self, nonce: str, issued_at: float, nc: int, now: float) -> NonceUse:
        """Record `nc` for `nonce` if it is above the highest seen (atomically, in a
        shared store); `issued_at`: when the nonce was minted (or first seen)."""
        ...


class LocalNonceCounts:
    """`NonceCounts` in this process: at most `max_entries` nonces, each kept for
    `lifetime` seconds after it was issued."""

    def __init__(self, lifetime: float, max_entries: int = 65536) -> None:
        self.lifetime = lifetime
        self.max_entries = max_entries
        #: nonce -> (issued_at, highest nc), oldest use first
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()
        #: nonces issued at or before this were pushed out of the table
        self.floor = float("-inf")

    async def advance(self, nonce: str, issued_at: float, nc: int, now: float) -> NonceUse:
        return self.advance_now(nonce, issued_at, nc, now)

    def advance_now(self, nonce: str, issued_at: float, nc: int, now: float) -> NonceUse:
        self._expire(now)
        entry = self._seen.get(nonce)
        if entry is None:
            if issued_at <= self.floor:
                return NonceUse.FORGOTTEN
            self._seen[nonce] = (issued_at, nc)
            while len(self._seen) > self.max_entries:
                _, (evicted_at, _) = self._seen.popitem(last=False)
                self.floor = max(self.floor, evicted_at)
            return NonceUse.FRESH
        if nc <= entry[1]:
            return NonceUse.REPLAYED
        self._seen[nonce] = (entry[0], nc)
        return NonceUse.FRESH

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            nonce, (issued_at, _) = next(iter(seen.items()))
            if issued_at + self.lifetime >= now:
                break
            del seen[nonce]

    def __len__(self) -> int:
        return len(self._seen)
