"""Rosters of online accounts, cached in memory, written through to storage.

Presence broadcast reads the roster on every available presence, so the
rosters of accounts with a bound session are kept in memory: `Roster` holds
the items, the version and the derived list of contacts who may see the
user's presence.  Writes go to storage first, then to the cache.  A roster is
dropped from memory when its account's last session ends.

Changes are serialised per account by `locks` (`modules/roster/locks.py`):
callers hold the account's lock around each read-decide-write (see
`RosterModule` and `PresenceModule`); `load` takes it itself when it fills the
cache, so a change landing between its reads cannot leave a stale roster in
memory.  The methods here never take a lock while a caller may hold one, except
`load`, which callers must not call while holding the owner's lock.

Item and request counts are bounded by `RosterLimits`; storage enforces them
in the transaction that would add a row and raises `RosterLimitReached`.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass, field

from chatgate.modules.roster.locks import AccountLocks, LocalAccountLocks
from chatgate.storage.records import RosterItem, Subscription
from chatgate.storage.repositories.roster import RosterRepository

Owner = tuple[str, str]  # (username, domain)


def bare(owner: Owner) -> str:
    return f"{owner[0]}@{owner[1]}"


@dataclass(frozen=True, slots=True)
class RosterLimits:
    """Per-account bounds on stored rows (`[limits]` max_roster_items and
    max_subscription_requests); None is unbounded."""

    max_items: int | None = None
    max_requests: int | None = None


@dataclass
class Roster:
    items: dict[str, RosterItem]
    version: int
    pending_in: set[str]
    _presence_subscribers: list[str] | None = field(default=None, repr=False)
    _presence_sources: list[str] | None = field(default=None, repr=False)
    _remote_subscribers: list[str] | None = field(default=None, repr=False)

    @property
    def presence_subscribers(self) -> list[str]:
        """Contacts who see the user's presence (subscription from/both, RFC 6121 §4.2.2)."""
        if self._presence_subscribers is None:
            self._presence_subscribers = [
                jid
                for jid, item in self.items.items()
                if item.subscription in (Subscription.FROM, Subscription.BOTH)
            ]
        return self._presence_subscribers

    @property
    def presence_sources(self) -> list[str]:
        """Contacts whose presence the user sees (subscription to/both, RFC 6121 §4.3)."""
        if self._presence_sources is None:
            self._presence_sources = [
                jid
                for jid, item in self.items.items()
                if item.subscription in (Subscription.TO, Subscription.BOTH)
            ]
        return self._presence_sources

    def remote_subscribers(self, hosts: Container[str]) -> list[str]:
        """The presence subscribers on domains not in `hosts` (a gateway's users, on
        an external component's domain), so that a broadcast to the accounts here
        costs nothing per subscriber for them; computed once per change (`hosts`,
        the served domains, is the same on every call)."""
        if self._remote_subscribers is None:
            self._remote_subscribers = [
                jid for jid in self.presence_subscribers if jid.rpartition("@")[2] not in hosts
            ]
        return self._remote_subscribers

    def _changed(self) -> None:
        self._presence_subscribers = None
        self._presence_sources = None
        self._remote_subscribers = None


class RosterService:
    def __init__(
        self,
        repository: RosterRepository,
        limits: RosterLimits | None = None,
        locks: AccountLocks | None = None,
    ) -> None:
        self.repository = repository
        self.limits = limits or RosterLimits()
        self.locks: AccountLocks = locks if locks is not None else LocalAccountLocks()
        #: what `load` and `refresh` hold: this process's lock only (filling this
        #: process's cache), the one `locks` takes first in a cluster
        self.cache_locks: AccountLocks = self.locks
        self._online: dict[Owner, Roster] = {}
        #: told the owner after every stored change, and the contact whose request
        #: its sender withdrew by it (None for any other change); a cluster tells the
        #: other nodes, whose cached copy of the roster is then stale
        self.changed: list[Callable[[Owner, str | None], None]] = []
        #: other processes keep copies of rosters and `refresh` them on `changed` (a
        #: cluster): a request stored here is delivered by each node to its own sessions
        self.kept_elsewhere = False
        #: told the owner and the inbound requests a `refresh` found (another node
        #: stored them), while the reread roster is put in place: the presence module
        #: delivers them to this node's available sessions (RFC 6121 §3.1.3)
        self.requests_arrived: list[Callable[[Owner, list[str]], None]] = []
        #: told the owner and the contact whose request another node noted withdrawn
        #: (`unsubscribe`, §3.1.3), after the `refresh` that reads the withdrawal:
        #: after the request itself, if this node delivered it
        self.request_withdrawn: list[Callable[[Owner, str], None]] = []
        #: owners whose roster `load` is reading: a `refresh` must wait for it
        self._loading: set[Owner] = set()
        #: owners with sessions being resumed here from another node (how many):
        #: their roster stays in memory meanwhile (`forget` leaves it)
        self._arrivals: dict[Owner, int] = {}

    def _stored(self, owner: Owner, withdrawn: str | None = None) -> None:
        for callback in self.changed:
            callback(owner, withdrawn)

    async def read(self, owner: Owner) -> Roster:
        """The roster as stored, not kept in memory (an account with no session here)."""
        roster = self._online.get(owner)
        if roster is not None:
            return roster
        return await self._read_stored(owner)

    async def _read_stored(self, owner: Owner) -> Roster:
        items = await self.repository.items(owner)
        version = await self.repository.version(owner)
        pending = await self.repository.pending_in(owner)
        return Roster({i.jid: i for i in items}, version, set(pending))

    async def refresh(self, owner: Owner, withdrawn: str | None = None) -> None:
        """Another node changed the roster: read it again if it is kept here, or
        being read into memory (that read may have missed the change).

        The requests found that the copy in memory did not hold are told to
        `requests_arrived` in the same step as the new copy is put in place, so
        a session that becomes available gets each request once: from the copy
        it reads then, or from here.  `withdrawn`: the change was that contact
        withdrawing its request; told to `request_withdrawn` when the copy in
        memory held the request (rereads take turns, so after the one that
        found it) and the stored roster no longer does.
        """
        if owner not in self._online and owner not in self._loading:
            return
        async with self.cache_locks.hold(bare(owner)):
            held = self._online.get(owner)
            if held is None:
                return
            fresh = await self._read_stored(owner)
            self._online[owner] = fresh
            arrived = fresh.pending_in - held.pending_in
            if arrived:
                for callback in self.requests_arrived:
                    callback(owner, sorted(arrived))
            if (
                withdrawn is not None
                and withdrawn in held.pending_in
                and withdrawn not in fresh.pending_in
            ):
                for told in self.request_withdrawn:
                    told(owner, withdrawn)

    async def load(self, owner: Owner) -> Roster:
        """The account's roster, read into memory on first use.

        Takes the owner's lock to read (never call it holding that lock): its
        three reads and the cache fill must not interleave with a change,
        which would update storage but not the roster not yet in memory.
        """
        roster = self._online.get(owner)
        if roster is not None:
            return roster
        async with self.cache_locks.hold(bare(owner)):
            roster = self._online.get(owner)
            if roster is None:
                self._loading.add(owner)
                try:
                    roster = await self._read_stored(owner)
                finally:
                    self._loading.discard(owner)
                self._online[owner] = roster
        return roster

    async def version(self, owner: Owner) -> int:
        roster = self._online.get(owner)
        if roster is not None:
            return roster.version
        return await self.repository.version(owner)

    def kept(self) -> list[Owner]:
        """The owners whose roster is in memory here or being read in."""
        return [*self._online, *self._loading]

    def cached(self, owner: Owner) -> Roster | None:
        return self._online.get(owner)

    def forget(self, owner: Owner) -> None:
        if owner not in self._arrivals:
            self._online.pop(owner, None)

    def arriving(self, owner: Owner) -> None:
        """A session of `owner` is being resumed here from another node."""
        self._arrivals[owner] = self._arrivals.get(owner, 0) + 1

    def arrived(self, owner: Owner) -> None:
        """That resumption is decided (the session bound here, or not)."""
        left = self._arrivals.pop(owner, 1) - 1
        if left > 0:
            self._arrivals[owner] = left

    def arrivals(self, owner: Owner) -> int:
        return self._arrivals.get(owner, 0)

    async def item(self, owner: Owner, contact: str) -> RosterItem | None:
        roster = self._online.get(owner)
        if roster is not None:
            return roster.items.get(contact)
        return await self.repository.item(owner, contact)

    async def pending(self, owner: Owner, contact: str) -> bool:
        roster = self._online.get(owner)
        if roster is not None:
            return contact in roster.pending_in
        return contact in await self.repository.pending_in(owner)

    async def put(self, owner: Owner, item: RosterItem) -> int:
        """Store the item; raises RosterLimitReached when adding it would pass
        `limits.max_items` (replacing an item is always allowed)."""
        version = await self.repository.put(owner, item, self.limits.max_items)
        roster = self._online.get(owner)
        if roster is not None:
            roster.items[item.jid] = item
            roster.version = version
            roster._changed()
        self._stored(owner)
        return version

    async def remove(self, owner: Owner, contact: str) -> int | None:
        version = await self.repository.remove(owner, contact)
        roster = self._online.get(owner)
        if roster is not None and version is not None:
            roster.items.pop(contact, None)
            roster.version = version
            roster._changed()
        if version is not None:
            self._stored(owner)
        return version

    async def set_pending(
        self, owner: Owner, contact: str, pending: bool, *, withdrawn: bool = False
    ) -> None:
        """Note or forget an inbound request (`withdrawn`: forgotten because its sender
        withdrew it); raises RosterLimitReached when noting a new one would pass
        `limits.max_requests`."""
        if pending:
            await self.repository.add_pending_in(owner, contact, None, self.limits.max_requests)
        else:
            await self.repository.remove_pending_in(owner, contact)
        roster = self._online.get(owner)
        if roster is not None:
            if pending:
                roster.pending_in.add(contact)
            else:
                roster.pending_in.discard(contact)
        self._stored(owner, contact if withdrawn and not pending else None)
