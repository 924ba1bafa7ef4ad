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
- **a node joins** (it takes some rooms from every node): each old owner hands
  each such room over live (`handover.py`: occupants, roles, history, subject,
  configuration, affiliations), as a request the newcomer answers once the room is
  installed, then forgets it; stanzas for it meanwhile already go to the newcomer
  (the old owner sends on what reaches it), which holds stanzas for rooms it does
  not have until every other node has said it holds none of its rooms (a
  ``"muc-moved"`` request, sent after the handovers, and by every node at its own
  start for nodes starting together; or `HANDOVER_WAIT` seconds), so none is
  handled by two nodes or against a room not yet arrived.  The nodes it waits
  for are those counted in and those still starting when its module starts,
  and every node counted in while it waits (one still starting may have been
  handed rooms that are the newcomer's).  A room whose handover
  fails (the newcomer unreachable or refusing it for ~12 s, `HANDOVER_DELAYS`) is
  dropped instead: its occupants get 110
  and 332 and join again; a persistent one stays stored and is loaded by its new
  owner.  Nodes started together may still see each other at different moments:
  a room loaded from storage that nobody is in gives way to the live one handed
  over, and a room handed over by a node whose view was behind goes on to its
  owner; two passes over the rooms (two nodes joining in quick succession) hand
  each room over once.
- **a node stops cleanly** (SIGTERM; `stop`, the module's `OnStop`): after its
  own clients are gone, it tells every other node it is leaving (a
  ``"muc-leaving"`` request; from then on every node, this one included, counts
  it out of the owners, `leaving.py`), hands each of its rooms over live to its
  owner among the remaining nodes as for a node that joined, sends on the
  stanzas still waiting in its senders' lanes, then says ``"muc-moved"`` to
  each.  The others hold stanzas for rooms they lack until
  then (at most `HANDOVER_WAIT`), then load the persistent rooms nobody handed
  over.  Occupants elsewhere see nothing; a room that cannot be handed over (or
  is left when the stop's time is up) is dropped with 110 and 332 as above.

While persistent rooms are being loaded or handovers awaited, a stanza for a room
this node lacks waits (`RoomRelay.settled`), so a join can never create a
temporary room in place of a stored or arriving one.  Nothing here runs in the
cluster's heartbeat loop: membership changes start background work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING

from chatgate.jid import JID
from chatgate.modules.muc import vocabulary as v
from chatgate.modules.muc.handover import restore, room_state
from chatgate.modules.muc.leaving import LeavingAwarePeers
from chatgate.modules.muc.occupancy import leave
from chatgate.modules.muc.register import load_nicks
from chatgate.modules.muc.room import NONE, Room, RoomConfig
from chatgate.peers import PeerRefused, PeerUnreachable, rendezvous_owner
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
#: requests carrying a room to its new owner
HANDOVER_TOPIC = "muc-handover"
#: "every room of mine that is yours now is handed over" (to a node that joined)
MOVED_TOPIC = "muc-moved"
#: "I am stopping: count me out of the owners, my rooms are coming"
LEAVING_TOPIC = "muc-leaving"
#: rooms a stopping node hands over at once
STOP_CONCURRENCY = 16
#: seconds the module's stop work may take (then what is left is dropped with 332)
STOP_TIMEOUT = 12.0
#: seconds of the stop kept for saying "done" to the others after sending on
STOP_MARGIN = 2.0
#: seconds a joining node waits for the other nodes' handovers at most
HANDOVER_WAIT = 15.0
#: Seconds within which a stopping node tries again to tell an unreachable node
#: it leaves (its own connection to Redis back after a blip)
LEAVING_RETRY = 2.0
#: seconds between its looks for nodes it waits for that are gone meanwhile
EXPECTING_LOOK = 0.5
#: seconds before each attempt to hand a room over (a busy newcomer may refuse
#: one, "too many requests"; a node of an earlier release was seen before its
#: handlers were in place)
HANDOVER_DELAYS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 4.0)
#: seconds one handover request may take
HANDOVER_TIMEOUT = 5.0


class RoomOwnership:
    """Loads the persistent rooms this node owns, and reacts to membership changes
    (see the module docstring)."""

    def __init__(
        self,
        svc: MucService,
        relay: RoomRelay,
        repository: RoomRepository,
        domains: Iterable[str],
        peers: LeavingAwarePeers,
    ) -> None:
        self.svc = svc
        self.relay = relay
        #: the relay's peers too: counting stopping nodes out
        self.peers = peers
        self.repository = repository
        self.domains = tuple(domains)
        self._alive = self.peers.alive()
        #: reasons the room table is incomplete now (loads, handovers awaited)
        self._holds = 0
        #: nodes that said they handed over what they had of ours
        self._moved_from: set[str] = set()
        #: nodes whose handovers this node (just started) still waits for
        self._expecting: set[str] = set()
        #: this node (just started) still waits for the others' handovers
        self._starting = False
        #: rooms being handed over, by name, and when each is done (two nodes
        #: joining in quick succession start two passes over the rooms)
        self._handing: dict[str, asyncio.Future[None]] = {}
        self._expected = asyncio.Event()
        self._tasks: set[asyncio.Future[None]] = set()
        #: stopping nodes whose rooms this node still waits for, and their "done"
        self._leavers: dict[str, asyncio.Event] = {}
        if self.peers.clustered:
            self.peers.on_change(self.changed)
            self.peers.on_request(HANDOVER_TOPIC, self._received)
            self.peers.on_request(MOVED_TOPIC, self._moved)
            self.peers.on_request(LEAVING_TOPIC, self._leaving)

    async def start(self) -> None:
        """At start: the rooms other nodes hand over (when there are others, counted
        in or still starting), then the persistent rooms this node owns that nobody
        handed over."""
        self._alive = self.peers.alive()
        others = (self._alive | self.peers.joining()) - {self.peers.name}
        if not others:
            await self._load()
            return
        # A node still starting may be handed rooms that are this node's once
        # both are counted in: it says "moved" when it sees this node join, after
        # handing them over.  So does every node counted in while this one waits
        # (`changed`).
        self._expecting = set(others) - self._moved_from
        self._starting = True
        self._hold()
        self._background(self._after_handovers())
        # Nodes starting together may have seen this one before their module was
        # there to hand anything over: this node holds nothing of theirs, and says so.
        for node in self._alive - {self.peers.name}:
            self._background(self._tell_done(node))

    async def _after_handovers(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + HANDOVER_WAIT
            while self._expecting:
                self._expected.clear()
                left = deadline - loop.time()
                if left <= 0:
                    log.warning(
                        "muc: no word from node(s) %s about rooms to hand over; going on",
                        ", ".join(sorted(self._expecting)),
                    )
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._expected.wait(), min(left, EXPECTING_LOOK))
                # a node that died (or failed) while starting was never counted in,
                # so no membership change says it is gone: it is neither any more
                self._expecting &= self.peers.inner.alive() | self.peers.joining()
            self._starting = False
            await self._load()
        finally:
            self._release()

    async def changed(self, alive: frozenset[str]) -> None:
        before, self._alive = self._alive, alive
        # `alive` leaves out the stopping nodes: whether one is gone is the cluster's
        # word (another node's change must not end the wait for its rooms)
        cluster = self.peers.inner.alive()
        for node, done in list(self._leavers.items()):
            if node not in cluster:
                done.set()  # gone before saying it was done: wait no longer
        gone, joined = before - alive, alive - before
        if self._starting:
            # counted in while this node waits: it may hold rooms that are this
            # node's (handed to it while this one was starting); its "moved" comes
            # after it has handed them over
            self._expecting |= joined - self._moved_from
        for node in gone:
            self._moved_from.discard(node)
            self._heard(node)
        if gone:
            self._orphaned(before, gone)
            self._hold()
            self._background(self._load_then_release())
        if joined:
            self._background(self._hand_over(joined))

    # ------------------------------------------------------------ the table's holds

    def _hold(self) -> None:
        self._holds += 1
        if self.peers.name not in self.peers.leaving:
            # (a stopping node owns nothing: it holds nothing for rooms to come)
            self.relay.settled.clear()

    def _release(self) -> None:
        self._holds -= 1
        if not self._holds:
            self.relay.settled.set()

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("muc: room ownership work failed", exc_info=task.exception())

    # ------------------------------------------------------------ loading

    async def _load_then_release(self) -> None:
        try:
            await self._load()
        finally:
            self._release()

    async def _load(self) -> None:
        """The persistent rooms this node owns and does not hold, from the database."""
        self._hold()
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
                    load_nicks(room, record.config, self.svc.options.max_nick_length)
                    self.svc.registry.add(room)
                    loaded += 1
            if self.peers.clustered:
                log.info("muc: %d persistent rooms loaded on node %s", loaded, self.peers.name)
        except Exception:
            log.exception("muc: persistent rooms could not be loaded")
        finally:
            self._release()

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

    async def _hand_over(self, joined: frozenset[str]) -> None:
        """Each room now owned by a node that joined goes to it; then each joined node
        hears that this node is done."""
        me = self.peers.name
        moving = [
            room
            for domain in self.domains
            for room in list(self.svc.registry.rooms(domain))
            if self.peers.owner(room.jid) != me
        ]
        for room in moving:
            await self._hand_over_room(room)
        await asyncio.gather(*(self._tell_done(node) for node in joined))

    async def _tell_done(self, node: str) -> None:
        """Tell `node` that this node holds none of its rooms any more (a request,
        tried as long as a handover is: its handler may not be there yet)."""
        for delay in HANDOVER_DELAYS:
            if delay:
                await asyncio.sleep(delay)
            if node not in self._alive:
                return
            try:
                await self.peers.request(node, MOVED_TOPIC, b"", HANDOVER_TIMEOUT)
                return
            except (PeerUnreachable, PeerRefused):
                continue
        log.warning("muc: could not tell node %s that its rooms are handed over", node)

    async def _hand_over_room(self, room: Room) -> None:
        """Hand `room` to its owner, once: a handover of its name already under way
        (another pass, the stop, a room passed on) is waited for first, so a
        "moved" said after this is true, and this one then goes on only if the
        room is still here."""
        while (running := self._handing.get(room.jid)) is not None:
            await asyncio.shield(running)
        done = self._handing[room.jid] = asyncio.get_running_loop().create_future()
        try:
            await self._hand_over_once(room)
        finally:
            del self._handing[room.jid]
            done.set_result(None)

    async def _hand_over_once(self, room: Room) -> None:
        error: Exception | None = None
        for delay in HANDOVER_DELAYS:
            if delay:
                await asyncio.sleep(delay)
            target = self.peers.owner(room.jid)
            if self.svc.registry.get(room.jid) is not room:
                return  # destroyed or emptied meanwhile
            if target == self.peers.name:
                return  # the newcomer is gone again: the room stays here
            await self.svc.written(room.jid)
            try:
                await self.peers.request(target, HANDOVER_TOPIC, room_state(room), HANDOVER_TIMEOUT)
            except (PeerUnreachable, PeerRefused) as exc:
                error = exc
                continue
            # The new owner has it: this node forgets it (stored rooms stay stored),
            # unless another room of its name replaced it meanwhile.
            room.history.clear()
            if self.svc.registry.get(room.jid) is room:
                self.svc.registry.remove(room.jid)
            log.info("muc: room %s handed over to node %s", room.jid, target)
            return
        log.warning("muc: room %s could not be handed over (%s): occupants rejoin", room.jid, error)
        self._evict(room)

    async def _received(self, sender: str, payload: bytes) -> bytes:
        """A room handed over to this node (its new owner)."""
        if self.peers.name in self.peers.leaving:
            # this node is stopping too: the sender tries the next owner it sees
            raise ValueError("this node is stopping")
        history = self.svc.new_history()
        try:
            room = restore(payload, history, self.relay.max_stanza_bytes)
        except ValueError:
            history.clear()
            raise
        existing = self.svc.registry.get(room.jid)
        if existing is not None and not existing.occupants:
            # Loaded from storage while the nodes' views of each other differed
            # (nodes starting together), nobody in it: the live one replaces it.
            # Not destroyed (a write of it still queued would delete the stored
            # room): forgotten, after its writes.
            await self.svc.written(room.jid)
            if self.svc.registry.get(room.jid) is existing and not existing.occupants:
                log.info("muc: room %s from %s replaces the idle copy here", room.jid, sender)
                existing.history.clear()
                self.svc.registry.remove(room.jid)
            existing = self.svc.registry.get(room.jid)
        if existing is not None:
            # It came too late (this node stopped waiting and made or loaded its own,
            # and someone is in it): the sender drops its copy with 332, and its
            # occupants join this one.
            history.clear()
            raise ValueError(f"room {room.jid} exists here already")
        self.svc.registry.add(room)
        for full in room.full_jids():
            self.svc.registry.joined(full, room.jid)
        log.info("muc: room %s arrived from node %s", room.jid, sender)
        # Sessions whose end was heard here before their room arrived -- but after
        # they entered it: the end of an earlier session under the same full JID (a
        # client back under its resource) is not theirs.  `entered` came as an age,
        # so it is late by the request's transit: an end heard in the few ms after a
        # session entered may be missed (the session then leaves when a groupchat
        # message cannot reach it), never an earlier end taken for a later one.
        for full in room.full_jids():
            entered = room.entered.get(full, float("-inf"))
            if self.relay.ended.heard_since(full, entered) and not room.destroyed:
                leave(self.svc, room, full)
        if self.peers.owner(room.jid) != self.peers.name:
            # The sender's view was behind this node's (nodes starting together):
            # no pass here would move it, so it goes on to its owner now.
            self._background(self._hand_over_room(room))
        return b"ok"

    async def _moved(self, sender: str, payload: bytes) -> bytes:
        leaver = self._leavers.get(sender)
        if leaver is not None:
            leaver.set()
        else:
            self._moved_from.add(sender)
        self._heard(sender)
        return b"ok"

    def _heard(self, node: str) -> None:
        if node in self._expecting:
            self._expecting.discard(node)
            if not self._expecting:
                self._expected.set()

    # ------------------------------------------------------------ stopping

    async def stop(self) -> None:
        """This node stops cleanly: its rooms go live to their owners among the other
        nodes (see the module docstring); then, or alone, what its lanes hold is
        sent on within the stop's time.  Whatever way it ends (its time up, the
        module's stop cancelled), the lanes take nothing more and what is left in
        them is cancelled."""
        try:
            await self._stop()
        finally:
            dropped = self.relay.lanes.abandon()
            if dropped:
                log.warning(
                    "muc: %d lanes of other nodes' senders dropped at the stop"
                    " (their senders get no error)",
                    dropped,
                )

    async def _stop(self) -> None:
        me = self.peers.name
        # A node that stops before it was counted in (its start failed) was handed
        # nothing: telling the others it leaves would only hold their stanzas and
        # make them read their stored rooms again, at every restart of a crash loop.
        counted_in = self.peers.clustered and self.peers.counted_in
        others = self.peers.alive() - {me} if counted_in else frozenset()
        started = asyncio.get_running_loop().time()
        if not others:
            await self._send_on_what_lanes_hold(started)
            return
        self.peers.leave(me)
        self._alive = self.peers.alive()
        # This node owns nothing from now on: stanzas held for rooms it was to
        # receive go on to their owners (it refuses rooms handed to it).
        self.relay.settled.set()
        await asyncio.gather(*(self._tell_leaving(node) for node in others))
        rooms = [room for domain in self.domains for room in self.svc.registry.rooms(domain)]
        slots = asyncio.Semaphore(STOP_CONCURRENCY)

        async def hand_over(room: Room) -> None:
            async with slots:
                await self._hand_over_room(room)

        try:
            await asyncio.gather(*(hand_over(room) for room in rooms))
        finally:
            # time is up (cancelled): what is still here is dropped, occupants rejoin
            for room in rooms:
                if self.svc.registry.get(room.jid) is room:
                    self._evict(room)
        # Stanzas the others sent before they heard this node leave all came in
        # before their answers did; those still waiting in a sender's lane here
        # (sent on one at a time) go on before this node is gone, within what is
        # left of the stop's time (the others must still hear it is done).
        await self._send_on_what_lanes_hold(started)
        await asyncio.gather(*(self._tell_done(node) for node in others))
        log.info("muc: %d rooms handed over; node %s leaves", len(rooms), me)

    async def _send_on_what_lanes_hold(self, started: float) -> None:
        """Wait for the lanes within the stop's time, less `STOP_MARGIN`; what is
        left then is dropped (said in the log)."""
        left = STOP_TIMEOUT - STOP_MARGIN - (asyncio.get_running_loop().time() - started)
        try:
            await asyncio.wait_for(self.relay.lanes.drained(), max(left, 0.1))
        except TimeoutError:
            log.warning("muc: stanzas of other nodes' senders could not all be sent on in time")

    async def _tell_leaving(self, node: str) -> None:
        """Tell `node` this one leaves: a node that took this one's rooms without
        having heard it would send their occupants 332 when it sees it gone.  An
        unreachable node is tried again within `LEAVING_RETRY` (this node's own
        Redis connection may be back in a moment), not longer: the handovers to
        every node wait for this.  A refusal (a release without the handler) is
        final."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEAVING_RETRY
        delays = iter(HANDOVER_DELAYS[1:])
        while True:
            try:
                await self.peers.request(node, LEAVING_TOPIC, b"", HANDOVER_TIMEOUT)
                return
            except PeerRefused as exc:
                error: Exception = exc
                break
            except PeerUnreachable as exc:
                error = exc
            delay = next(delays, None)
            if delay is None or loop.time() + delay > deadline:
                break
            await asyncio.sleep(delay)
            if node not in self._alive:
                return
        log.warning("muc: node %s did not hear that this node leaves (%s)", node, error)

    async def _leaving(self, sender: str, payload: bytes) -> bytes:
        """`sender` stops: it owns nothing from now on; stanzas for rooms this node
        lacks wait until it has handed its rooms over (or `HANDOVER_WAIT`)."""
        if sender == self.peers.name or sender in self._leavers:
            return b"ok"
        self.peers.leave(sender)
        self._alive = self.peers.alive()
        done = self._leavers[sender] = asyncio.Event()
        self._hold()
        self._background(self._after_leaver(sender, done))
        return b"ok"

    async def _after_leaver(self, node: str, done: asyncio.Event) -> None:
        try:
            try:
                await asyncio.wait_for(done.wait(), HANDOVER_WAIT)
            except TimeoutError:
                log.warning("muc: stopping node %s did not say its rooms are handed over", node)
            await self._load()
        finally:
            self._leavers.pop(node, None)
            self._release()

    def _evict(self, room: Room) -> None:
        """Drop the room: occupants get 110 and 332 (they join again, on the new
        owner).  Its archive stays: the new owner may hold a live room of that
        name already (a handover that came too late), and a room made anew
        forgets what an earlier one left (`MucService.forget_leftovers`)."""
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
        room.destroyed = True
        room.history.clear()
        svc.registry.remove(room.jid)


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
