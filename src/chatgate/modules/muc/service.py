"""The MUC service of one or more `conference.HOST` domains: stanzas in, deliveries out.

Every stanza a local client sends to the service or to a room comes here (the
router's `ServiceDomain` seam) with 'from' stamped.  `handle` sorts it by kind
and target; the work is in `occupancy.py` (presence: join, leave, nick changes),
`chat.py` (groupchat, private messages, invitations, moderation) and `admin.py`
(muc#owner, muc#admin, disco).  What a handler refuses it raises as a
`StanzaError`, which `handle` turns into the error reply (RFC 6120 §8.3).

Everything goes out through the router; state is in the `RoomRegistry`; what
must be stored (persistent rooms) is returned as an awaitable, so the sender's
connection awaits it in order (per-account serialisation).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from chatgate.jid import JID
from chatgate.modules.muc import vocabulary as v
from chatgate.modules.muc.options import MucOptions
from chatgate.modules.muc.registry import RoomRegistry
from chatgate.modules.muc.room import History, HistoryBudget, Occupant, Room, RoomConfig
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import error_reply

if TYPE_CHECKING:
    from chatgate.storage.repositories.rooms import RoomRecord
    from chatgate.xmpp.router import Router

log = logging.getLogger(__name__)
Pending = Awaitable[None] | None


class RoomStore(Protocol):
    """Where persistent rooms are kept (`storage/repositories/rooms.py`)."""

    async def save(self, record: RoomRecord) -> None: ...

    async def exists(self, jid: str) -> bool: ...

    async def delete(self, jid: str) -> None: ...


class RoomArchive(Protocol):
    """What the service needs of the message archive (XEP-0313) for rooms
    (`archive.py` adapts the MAM module's API)."""

    def new_id(self) -> str:
        """The stanza-id of the next archived message (the archive's own id)."""
        ...

    def append(
        self, room: str, stanza: Element, stanza_id: str, nick: str, sender: str
    ) -> None: ...

    async def retract(self, room: str, stanza_id: str, tombstone: Element) -> bool:
        """Replace an archived message by its tombstone; False when there is none."""
        ...

    async def delete(self, room: str, before: str | None = None) -> None:
        """Delete the room's archive, or its messages with an id below `before`."""
        ...

    async def query(self, session: C2SSession, iq: Element, room: str) -> None: ...


class MucService:
    """The rooms of the services this module runs (one per virtual host)."""

    def __init__(
        self,
        router: Router,
        options: MucOptions,
        registry: RoomRegistry,
        store: RoomStore,
        *,
        archive: RoomArchive | None = None,
        now: Callable[[], float] = time.time,
        spawn: Callable[[Awaitable[None]], None] | None = None,
    ) -> None:
        self.router = router
        self.options = options
        self.registry = registry
        self.store = store
        self.archive = archive
        self.now = now
        #: runs work nobody waits for (the server's `spawn`: awaited at shutdown)
        self.spawn = spawn
        #: the last storage write asked for, per room JID (`_in_order`)
        self._writes: dict[str, asyncio.Future[None]] = {}
        #: history bytes all rooms hold together
        self.history_budget = HistoryBudget(options.history_total_bytes)
        #: takes a session a stanza could not reach out of a room (`occupancy.leave`,
        #: set by the module: this file does not import the handlers that import it)
        self.leave: Callable[[Room, str], None] = lambda room, full: None

    def error(self, session: C2SSession, stanza: Element, exc: StanzaError) -> None:
        """The error reply to `stanza` (never to an error, RFC 6120 §8.3.1); error
        presence carries the `<x xmlns='…/muc'/>` of XEP-0045 §7.2.6."""
        if stanza.get("type") == "error":
            return
        reply = error_reply(stanza, exc.condition, exc.text, error_type=exc.error_type)
        reply.attrs["to"] = session.full
        if stanza.name == "presence":
            reply.children.insert(0, Element("x", v.MUC))
        session.send(reply)

    async def guarded(self, session: C2SSession, stanza: Element, work: Awaitable[None]) -> None:
        """Await `work`, answering a `StanzaError` it raises as `handle` does."""
        try:
            await work
        except StanzaError as exc:
            self.error(session, stanza, exc)

    # ------------------------------------------------------------ rooms

    def new_room(self, jid: str, owner: str) -> Room:
        o = self.options
        config = RoomConfig(
            persistent=o.persistent_by_default,
            public=o.public_by_default,
            history_length=min(o.default_history, o.history_messages),
        )
        room = Room(jid, config, history=self.new_history())
        room.affiliations[owner] = "owner"
        room.locked = o.lock_new_rooms
        return room

    def new_history(self) -> History:
        o = self.options
        return History(o.history_messages, o.history_bytes, self.history_budget)

    def max_occupants(self, room: Room) -> int:
        limit = self.options.max_occupants
        return min(limit, room.config.max_occupants) if room.config.max_occupants else limit

    def record(self, room: Room) -> RoomRecord:
        from chatgate.storage.repositories.rooms import RoomRecord

        return RoomRecord(
            jid=room.jid,
            config=room.stored_config(),
            secret=room.secret,
            subject=room.subject,
            subject_nick=room.subject_nick,
            affiliations=dict(room.affiliations),
        )

    def persist(self, room: Room) -> Pending:
        """Store a persistent room (or forget one that is no longer persistent): what
        the sender's connection awaits after an owner's or admin's change."""
        return self._in_order(room.jid, lambda: self._save_or_delete(room))

    async def _save_or_delete(self, room: Room) -> None:
        # the room as it is when its turn comes: a later change is never overwritten
        if room.config.persistent and not room.destroyed:
            await self.store.save(self.record(room))
        else:
            await self.store.delete(room.jid)

    def _in_order(self, jid: str, work: Callable[[], Awaitable[None]]) -> Awaitable[None]:
        """Run `work` after every write for `jid` asked for before it (two accounts'
        changes to one room are stored in the order they were made, and a destroyed
        room's deletion comes before a new room of its name is saved).  A failure is
        logged: the change holds in memory, and the room is as stored after a restart."""
        previous = self._writes.get(jid)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                await work()
            except Exception:
                log.exception("could not store room %s", jid)

        task = asyncio.ensure_future(run())
        self._writes[jid] = task

        def done(finished: asyncio.Future[None]) -> None:
            if self._writes.get(jid) is finished:
                del self._writes[jid]

        task.add_done_callback(done)
        if self.spawn is not None:
            self.spawn(task)  # the server waits for it at shutdown too
        return task

    async def written(self, jid: str) -> None:
        """Until every storage write asked for `jid` so far is done (a room handed to
        another node must not have an older write of ours land after its newer one)."""
        previous = self._writes.get(jid)
        if previous is not None:
            await asyncio.wait([previous])

    def destroy(self, room: Room) -> Pending:
        """Forget the room (occupants already told)."""
        was_persistent = room.config.persistent
        room.destroyed = True
        room.history.clear()
        self.registry.remove(room.jid)
        if not was_persistent and self.archive is None:
            return None
        return self._forget(room.jid, was_persistent)

    def _forget(self, jid: str, stored: bool) -> Awaitable[None]:
        """A destroyed room's stored configuration and archive go (§10.9); a room
        of the same name made before this runs keeps what it archived (ids from
        this node's generator only grow)."""
        archive = self.archive
        before = archive.new_id() if archive is not None else None

        async def forget() -> None:
            if stored:
                await self.store.delete(jid)
            if archive is not None:
                await archive.delete(jid, before)

        return self._in_order(jid, forget)

    def forget_leftovers(self, jid: str) -> None:
        """A room made anew: what an earlier temporary room of its name left in the
        archive goes before anyone can read it (its owner node died, or the
        server, before that room ended, or its deletion failed).  Skipped when a
        room of that name is stored: that is a persistent room's archive, whose
        room could not be loaded."""
        archive = self.archive
        if archive is None or self.spawn is None:
            return
        before = archive.new_id()  # this room's messages come after

        async def forget() -> None:
            if not await self.store.exists(jid):
                await archive.delete(jid, before)

        self.spawn(self._in_order(jid, forget))

    def drop_if_empty(self, room: Room) -> None:
        """§10.9 for temporary rooms: gone when the last occupant leaves."""
        # a room never configured (still locked) is not kept either
        if room.is_empty() and not room.destroyed and (room.locked or not room.config.persistent):
            room.destroyed = True
            room.history.clear()
            self.registry.remove(room.jid)
            if self.archive is not None and self.spawn is not None:
                # a later room of the same name must not read this one's archive
                self.spawn(self._forget(room.jid, False))

    # ------------------------------------------------------------ building stanzas

    def occupant_presence(
        self,
        room: Room,
        occupant: Occupant,
        *,
        with_jid: bool,
        codes: Iterable[str] = (),
        unavailable: bool = False,
        new_nick: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
        affiliation: str | None = None,
        role: str | None = None,
        status_from: Element | None = None,
    ) -> Element:
        """§7.2.3: an occupant's presence as the room sends it (from room/nick, the
        muc#user item, status codes, XEP-0421 occupant-id)."""
        el = Element("presence", ns.CLIENT, {"from": f"{room.jid}/{occupant.nick}"})
        if unavailable:
            el.attrs["type"] = "unavailable"
            if status_from is not None:  # §7.14: the leaving occupant's last words
                for status in status_from.find_all("status", ns.CLIENT)[:1]:
                    el.append(status)
        else:
            for child in occupant.presence.children:
                if isinstance(child, Element) and child.ns not in _STRIPPED:
                    el.append(child)
        x = el.sub("x", v.MUC_USER)
        attrs = {
            "affiliation": affiliation or room.affiliation(occupant.bare),
            "role": role or ("none" if unavailable else occupant.role),
        }
        if with_jid:
            attrs["jid"] = next(reversed(occupant.sessions), occupant.bare)
        if new_nick is not None:
            attrs["nick"] = new_nick
        item = x.sub("item", attrs=attrs)
        if actor is not None:
            item.sub("actor", attrs={"nick": actor})
        if reason:
            item.sub("reason", text=reason)
        for code in codes:
            x.sub("status", attrs={"code": code})
        el.sub("occupant-id", v.OCCUPANT_ID, {"id": room.occupant_id(occupant.bare)})
        return el

    def broadcast_presence(
        self,
        room: Room,
        occupant: Occupant,
        *,
        codes: tuple[str, ...] = (),
        self_codes: tuple[str, ...] = (),
        only_self: Iterable[str] | None = None,
        **item: str | bool | Element | None,
    ) -> None:
        """Send `occupant`'s presence to every occupant: with the real JID to those
        who may see it, with `self_codes` (110 and the like) to the occupant's own
        sessions (or to `only_self` when given)."""
        plain: list[str] = []
        revealed: list[str] = []
        for other in room.occupants.values():
            if other is occupant:
                continue
            (revealed if room.sees_jids(other) else plain).extend(other.sessions)
        if revealed:
            el = self.occupant_presence(room, occupant, with_jid=True, codes=codes, **item)  # type: ignore[arg-type]
            self.router.presence_to(revealed, serialize(el))
        if plain:
            el = self.occupant_presence(room, occupant, with_jid=False, codes=codes, **item)  # type: ignore[arg-type]
            self.router.presence_to(plain, serialize(el))
        own = list(occupant.sessions) if only_self is None else list(only_self)
        if own:
            el = self.occupant_presence(
                room,
                occupant,
                with_jid=True,
                codes=(*self_codes, *codes),
                **item,  # type: ignore[arg-type]
            )
            self.router.presence_to(own, serialize(el))

    def deliver(self, full: str, stanza: Element) -> bool:
        """Write `stanza`, addressed to `full`, to that session; False when it is gone."""
        bare, _, resource = full.partition("/")
        local, _, domain = bare.partition("@")
        stanza.attrs["to"] = full
        return self.router.deliver_to_full(JID(local, domain, resource), stanza)

    def to_everyone(self, room: Room, stanza: Element) -> None:
        """`stanza` to every occupant's sessions; a session that is no longer there
        (ended on another cluster node, or between its end and our hearing of it)
        leaves the room, as XEP-0045 §7.14 has a service treat a bounced stanza."""
        stanza.attrs.pop("to", None)
        gone = self.router.message_to(list(room.by_full), serialize(stanza))
        for full in gone:
            if not room.destroyed:
                self.leave(room, full)


#: what an occupant's own presence may not carry into the room's
_STRIPPED = frozenset({v.MUC, v.MUC_USER, v.OCCUPANT_ID})
