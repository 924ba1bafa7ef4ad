"""Which node holds which room, as nodes come and go (`peers.on_change`).

Rooms are owned by `peers.owner(room JID)` (rendezvous hashing): a node that
leaves moves only its rooms, spread over the survivors; a node that joins takes
some rooms from every node.  What happens then:

- **a node is gone** (killed, or stopped): what it held in memory is lost.  Its
  sessions leave the rooms held elsewhere (each owner hears `RemoteSessionLost`
  from the session directory).  Its rooms: each survivor tells its own sessions
  that were in one of them that they are out (unavailable presence with status
  110 and 332, "the service is shutting down", XEP-0045 §10.10: clients join
  again), and the new owners load the persistent ones from the database
  (configuration, subject, affiliations, occupant-id key); temporary rooms are gone.
- **a node joins**: each node drops the rooms that now belong to the newcomer the
  same way (occupants get 110 and 332; a persistent room stays stored and is
  loaded by its new owner; a temporary room's archive goes, as when it empties),
  and forgets its own sessions' entries for rooms that moved.  This is the simple,
  safe path: nothing is handed over live, so nothing can be lost or handled twice
  during a handover; the price is that occupants of the moved rooms rejoin.

While persistent rooms are being loaded, a stanza for a room this node lacks waits
for the load (`RoomRelay.settled`), so a join can never create a temporary room in
place of a stored one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from chatgate.jid import JID
from chatgate.modules.muc import vocabulary as v
from chatgate.modules.muc.room import NONE, Room, RoomConfig
from chatgate.peers import rendezvous_owner
from chatgate.vocabulary import ns
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize

if TYPE_CHECKING:
    from chatgate.modules.muc.relay import RoomRelay
    from chatgate.modules.muc.service import MucService
    from chatgate.storage.repositories.rooms import RoomRepository

log = logging.getLogger(__name__)

#: XEP-0045 §10.10: the occupant is removed because the service is shutting down
SHUTDOWN = "332"


class RoomOwnership:
    """Loads the persistent rooms this node owns, and reacts to membership changes
    (see the module docstring)."""

    def __init__(
        self,
        svc: MucService,
        relay: RoomRelay,
        repository: RoomRepository,
        domains: Iterable[str],
    ) -> None:
        self.svc = svc
        self.relay = relay
        self.peers = relay.peers
        self.repository = repository
        self.domains = tuple(domains)
        self._alive = self.peers.alive()
        self._loading = 0
        self.peers.on_change(self.changed)

    async def start(self) -> None:
        """At start: the persistent rooms this node owns."""
        self._alive = self.peers.alive()
        await self._load()

    async def changed(self, alive: frozenset[str]) -> None:
        before, self._alive = self._alive, alive
        gone, joined = before - alive, alive - before
        if joined:
            self._moved_away(before, alive)
        if gone:
            self._orphaned(before, gone)
            await self._load()

    # ------------------------------------------------------------ loading

    async def _load(self) -> None:
        self._loading += 1
        self.relay.settled.clear()
        try:
            loaded = 0
            for domain in self.domains:
                for record in await self.repository.load(domain):
                    if self.svc.registry.get(record.jid) is not None:
                        continue
                    if self.peers.owner(record.jid) != self.peers.name:
                        continue
                    room = Room(
                        record.jid,
                        RoomConfig.from_dict(record.config),
                        history=self.svc.new_history(),
                        secret=record.secret,
                        affiliations=record.affiliations,
                        subject=record.subject,
                        subject_nick=record.subject_nick,
                    )
                    self.svc.registry.add(room)
                    loaded += 1
            if self.peers.clustered:
                log.info("muc: %d persistent rooms loaded on node %s", loaded, self.peers.name)
        except Exception:
            log.exception("muc: persistent rooms could not be loaded")
        finally:
            self._loading -= 1
            if not self._loading:
                self.relay.settled.set()

    # ------------------------------------------------------------ a node gone

    def _orphaned(self, before: frozenset[str], gone: frozenset[str]) -> None:
        """This node's sessions in rooms a gone node owned: they are out."""
        told = 0
        for full, rooms in self.relay.memberships.items():
            for room, nick in list(rooms.items()):
                if rendezvous_owner(room, before) in gone:
                    self.relay.memberships.left(full, room)
                    presence = shutdown_presence(room, nick, full)
                    self.svc.router.deliver_to_full(JID.parse(full), presence)
                    told += 1
        if told:
            log.info("muc: %d occupants here lost rooms of %s", told, ", ".join(sorted(gone)))

    # ------------------------------------------------------------ a node joined

    def _moved_away(self, before: frozenset[str], alive: frozenset[str]) -> None:
        """Rooms now owned by a node that joined: their occupants are out (they join
        again, on the new owner); this node's sessions forget rooms that moved."""
        me = self.peers.name
        for domain in self.domains:
            for room in list(self.svc.registry.rooms(domain)):
                if self.peers.owner(room.jid) != me:
                    self._evict(room)
        for full, rooms in self.relay.memberships.items():
            for jid in list(rooms):
                if rendezvous_owner(jid, before) != rendezvous_owner(jid, alive):
                    self.relay.memberships.left(full, jid)

    def _evict(self, room: Room) -> None:
        svc = self.svc
        for occupant in list(room.occupants.values()):
            el = svc.occupant_presence(
                room,
                occupant,
                with_jid=True,
                codes=(v.SELF, SHUTDOWN),
                unavailable=True,
                role=NONE,
            )
            svc.router.presence_to(list(occupant.sessions), serialize(el))
        for full in room.full_jids():
            self.relay.memberships.left(full, room.jid)
        temporary = not room.config.persistent
        room.destroyed = True
        room.history.clear()
        svc.registry.remove(room.jid)
        log.info("muc: room %s moved to node %s", room.jid, self.peers.owner(room.jid))
        if temporary and svc.archive is not None and svc.spawn is not None:
            archive = svc.archive
            svc.spawn(archive.delete(room.jid))


def shutdown_presence(room: str, nick: str, full: str) -> Element:
    """§10.10's unavailable presence for one of this node's sessions whose room is
    gone with its node."""
    el = Element(
        "presence", ns.CLIENT, {"from": f"{room}/{nick}", "to": full, "type": "unavailable"}
    )
    x = el.sub("x", v.MUC_USER)
    x.sub("item", attrs={"affiliation": NONE, "role": NONE})
    x.sub("status", attrs={"code": v.SELF})
    x.sub("status", attrs={"code": SHUTDOWN})
    return el
