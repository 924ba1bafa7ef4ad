"""Per-account serialisation of roster and subscription changes.

Every change to an account's roster or pending subscription requests is a
read, an await (storage), then a write.  Two changes for one account running
at once can both read the old state, and the second write then undoes the
first (a subscription approved while the user renamed the contact ends up
unapproved).  `AccountLocks` makes such changes take turns, per bare JID.

`AccountLocks` is the interface a cluster needs to implement across processes
(a PostgreSQL advisory lock or a Redis lock per bare JID would do);
`LocalAccountLocks` is the in-process implementation.  This module only
orders coroutines: it must not touch storage, route or read the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["AccountLocks", "LocalAccountLocks"]


class AccountLocks(Protocol):
    """Mutual exclusion per account (bare JID)."""

    def hold(self, *accounts: str) -> AbstractAsyncContextManager[None]:
        """Hold every named account until the block ends.

        The accounts are taken in sorted order, so two holders of overlapping
        sets (alice then bob, bob then alice) cannot deadlock.  Names may repeat.
        Holding is not re-entrant: a task that already holds one of the
        accounts gets RuntimeError instead of waiting for itself forever.
        """
        ...


@dataclass(slots=True)
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: coroutines holding or waiting for this account; the slot goes when it is 0
    users: int = 0
    holder: asyncio.Task[object] | None = None


class LocalAccountLocks:
    """`AccountLocks` for one process: an `asyncio.Lock` per account in use.

    Memory is bounded by what is in flight, not by how many accounts exist: a
    slot lives only while a coroutine holds or waits for its account, and is
    dropped by the last one to leave (also when it leaves by cancellation).
    Each connection processes its stanzas one at a time, so there are at most
    two slots per connection.  Waiters are served first come, first served.
    """

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    def __len__(self) -> int:
        """Accounts currently held or waited for."""
        return len(self._slots)

    def waiting(self, account: str) -> int:
        """Coroutines waiting for `account` (not counting its holder)."""
        slot = self._slots.get(account)
        if slot is None:
            return 0
        return slot.users - (1 if slot.holder is not None else 0)

    @asynccontextmanager
    async def hold(self, *accounts: str) -> AsyncIterator[None]:
        names = sorted(set(accounts))
        task = asyncio.current_task()
        for name in names:
            slot = self._slots.get(name)
            if slot is not None and task is not None and slot.holder is task:
                raise RuntimeError(f"{name} is already held by this task")
        counted: list[tuple[str, _Slot]] = []
        acquired: list[_Slot] = []
        try:
            for name in names:
                slot = self._slots.get(name)
                if slot is None:
                    slot = self._slots[name] = _Slot()
                slot.users += 1
                counted.append((name, slot))
                await slot.lock.acquire()
                slot.holder = task
                acquired.append(slot)
            yield
        finally:
            for slot in reversed(acquired):
                slot.holder = None
                slot.lock.release()
            for name, slot in counted:
                slot.users -= 1
                if slot.users == 0:
                    del self._slots[name]
