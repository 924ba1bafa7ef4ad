"""Rosters of online accounts, cached in memory, written through to storage.

Presence broadcast reads the roster on every available presence, so the
rosters of accounts with a bound session are kept in memory: `Roster` holds
the items, the version and the derived list of contacts who may see the
user's presence.  Writes go to storage first, then to the cache.  A roster is
dropped from memory when its account's last session ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatgate.storage.records import RosterItem, Subscription
from chatgate.storage.repositories.roster import RosterRepository

Owner = tuple[str, str]  # (username, domain)


@dataclass
class Roster:
    items: dict[str, RosterItem]
    version: int
    pending_in: set[str]
    _presence_subscribers: list[str] | None = field(default=None, repr=False)
    _presence_sources: list[str] | None = field(default=None, repr=False)

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

    def _changed(self) -> None:
        self._presence_subscribers = None
        self._presence_sources = None


class RosterService:
    def __init__(self, repository: RosterRepository) -> None:
        self.repository = repository
        self._online: dict[Owner, Roster] = {}

    async def load(self, owner: Owner) -> Roster:
        roster = self._online.get(owner)
        if roster is None:
            items = await self.repository.items(owner)
            version = await self.repository.version(owner)
            pending = await self.repository.pending_in(owner)
            roster = Roster({i.jid: i for i in items}, version, set(pending))
            # Another coroutine may have loaded it meanwhile: keep the first.
            roster = self._online.setdefault(owner, roster)
        return roster

    def cached(self, owner: Owner) -> Roster | None:
        return self._online.get(owner)

    def forget(self, owner: Owner) -> None:
        self._online.pop(owner, None)

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
        version = await self.repository.put(owner, item)
        roster = self._online.get(owner)
        if roster is not None:
            roster.items[item.jid] = item
            roster.version = version
            roster._changed()
        return version

    async def remove(self, owner: Owner, contact: str) -> int | None:
        version = await self.repository.remove(owner, contact)
        roster = self._online.get(owner)
        if roster is not None and version is not None:
            roster.items.pop(contact, None)
            roster.version = version
            roster._changed()
        return version

    async def set_pending(self, owner: Owner, contact: str, pending: bool) -> None:
        if pending:
            await self.repository.add_pending_in(owner, contact, None)
        else:
            await self.repository.remove_pending_in(owner, contact)
        roster = self._online.get(owner)
        if roster is not None:
            if pending:
                roster.pending_in.add(contact)
            else:
                roster.pending_in.discard(contact)
