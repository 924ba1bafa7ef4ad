"""Which accounts have a XEP-0357 registration, so that a message for anyone else
needs no read of the database (`RegisteredAccounts`), and its one-process
implementation.

Most messages that reach no session are for accounts without a phone; reading
their registrations for each would cost one query per offline message, and under
a flood the push module's bounded tasks would fill with those reads and drop the
notifications of accounts that do have one.  So the module asks `may_have`
first: False only when the account is known to have no registration.

The answer may err one way only: True for an account without a registration
(it disabled one: the read finds nothing), never False for one with a
registration.  Kept here, apart from the module, so that the cluster's
implementation (`chatgate.cluster.push_registered`) imports this small file
and not the module that chooses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

#: accounts with a registration known by name at most (beyond, each is read)
MAX_KNOWN_ACCOUNTS = 100_000

#: reads the bare JIDs with a registration; None when there are more than the limit
LoadRegistered = Callable[[int], Awaitable[set[str] | None]]


class RegisteredAccounts(Protocol):
    """The accounts with a registration, as far as this process knows."""

    async def start(self) -> None:
        """Learn the accounts (once, when the server starts)."""

    def may_have(self, bare: str) -> bool:
        """False only when `bare` is known to have no registration."""

    async def added(self, bare: str) -> None:
        """`bare` stored a registration (told after it is stored)."""


class KnownRegistrations:
    """`RegisteredAccounts` of one server: read at start, grown by each enable
    (only this process stores registrations)."""

    def __init__(self, load: LoadRegistered, limit: int = MAX_KNOWN_ACCOUNTS) -> None:
        self._load = load
        self._limit = limit
        #: None: not known (before start, or past the limit): every account is read
        self.known: set[str] | None = None

    async def start(self) -> None:
        self.known = await self._load(self._limit)

    def may_have(self, bare: str) -> bool:
        known = self.known
        return known is None or bare in known

    async def added(self, bare: str) -> None:
        known = self.known
        if known is not None:
            known.add(bare)
            if len(known) > self._limit:
                self.known = None
