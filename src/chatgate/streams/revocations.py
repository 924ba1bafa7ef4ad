"""Stream tokens revoked before they expire.

A signed token is checked by its MAC alone, so revoking one means remembering
its id until it would have expired anyway.  Revocations are rare and checks are
many (every play of every viewer), so each process keeps the ids in memory and
reloads them from the store only when the change signal says they changed: a
check is a set look-up, never a database read.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chatgate.storage.repositories.streams import TokenRevocationRepository
from chatgate.streams.stores import ChangeSignal

__all__ = ["DatabaseRevokedTokens", "LocalRevokedTokens"]


class LocalRevokedTokens:
    """`RevokedTokens` in this process (tests, one process without storage)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._until: dict[str, int] = {}
        self._clock = clock

    async def revoke(self, token_id: str, expires_at: int) -> bool:
        if token_id in self._until:
            return False
        self._until[token_id] = expires_at
        return True

    async def is_revoked(self, token_id: str) -> bool:
        until = self._until.get(token_id)
        return until is not None and self._clock() < until

    async def forget_expired(self, now: float) -> int:
        gone = [token for token, until in self._until.items() if until <= now]
        for token in gone:
            del self._until[token]
        return len(gone)


class DatabaseRevokedTokens:
    """`RevokedTokens` on the database, with the unexpired ids held in memory and
    reloaded when `signal` (its own watcher of the streams stamp) fires."""

    def __init__(
        self,
        repository: TokenRevocationRepository,
        signal: ChangeSignal,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._repository = repository
        self._signal = signal
        self._clock = clock
        self._ids: set[str] | None = None

    async def revoke(self, token_id: str, expires_at: int) -> bool:
        added = await self._repository.revoke(token_id, expires_at)
        self._ids = None
        self._signal.raise_()
        return added

    async def is_revoked(self, token_id: str) -> bool:
        if self._signal.changed():
            self._ids = None
        ids = self._ids
        if ids is None:
            ids = self._ids = await self._repository.revoked(int(self._clock()))
        return token_id in ids

    async def forget_expired(self, now: float) -> int:
        self._ids = None
        return await self._repository.forget_expired(int(now))
