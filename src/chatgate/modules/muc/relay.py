"""Rooms in a cluster: every stanza for a room is handled by the room's owning node.

A room's state (occupants, roles, history) changes with every stanza, so it lives
on exactly one node: `peers.owner(room JID)` (rendezvous hashing over the live
nodes, the same answer everywhere).  `RoomRelay.handle` is the `ServiceDomain`
handler of every node:

- not clustered (`LocalPeers`): straight to `dispatch.handle`, as before;
- a stanza to a room or an occupant (``room@service[/nick]``): handled here when
  this node owns the room, else serialized with the sender's full JID and sent to
  the owner on topic ``"muc"``.  The owner handles it exactly as a local stanza,
  for a `ForwardedSender` standing in for the session (what it is sent goes out
  through the router, which reaches sessions on other nodes); it trusts the full
  JID, which only a node can have written.  A stanza for a room the receiving node
  no longer owns (the nodes saw a membership change at different moments) is sent
  on to the owner it sees, at most `MAX_HOPS` times, as a request (``"muc-hop"``)
  tried again until this node's view catches up: the owner it sees may be dead;
- one sender's stanzas to a room keep their order (RFC 6120 §10.1) when the room's
  owner changes (a node joins, or stops cleanly): the first stanza for the new
  owner waits until the node the sender's previous stanzas went to says it has
  handled or sent on every one of them (a request on ``"muc-flush"``, answered
  once the sender's lane there is through them), then until what was sent on to
  this node is through the sender's lane here; each wait at most
  `FLUSH_TIMEOUT`.  Without that, the stanzas the old owner still sends on could
  be overtaken by those sent straight to the new one.  The sender's connection
  awaits it (its next stanzas wait too), once per room whose owner changed;
- the service itself: disco#items gathers the public rooms of every node (a
  request on ``"muc-rooms"`` to each, answered within `LIST_TIMEOUT`; a node that
  does not answer is left out); disco#info and ping are answered here.

What storage a forwarded stanza's handling awaits (a persistent room's save, an
archive query) is awaited in order per sender (`Lanes`), as the sender's own
connection awaits it for a local stanza.

Node changes (`ownership.py`) decide what happens to rooms when nodes come and go;
`Memberships` is what this node remembers of its own sessions' rooms for that.

Must not: touch session tables (delivery is the router's), or block: nothing here
awaits on the hot path (a sender waits only when a room's owner changed, above).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from chatgate.jid import JID
from chatgate.modules.muc import dispatch, roomlist
from chatgate.modules.muc.admin import public_rooms
from chatgate.modules.muc.occupancy import session_closed
from chatgate.peers import PeerRefused, PeerUnreachable
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.modules.muc.service import MucService, Pending
    from chatgate.peers import Peers

log = logging.getLogger(__name__)

#: stanzas for rooms, and sessions that ended, between nodes
TOPIC = "muc"
#: requests for a node's public rooms (the service's disco#items)
ROOMS_TOPIC = "muc-rooms"
#: stanzas sent on by a node that no longer owns their room, as requests
HOP_TOPIC = "muc-hop"
#: times a forwarded stanza may be sent on to another owner
MAX_HOPS = 3
#: seconds before each attempt to send a stanza on (about a heartbeat timeout in
#: all: until this node's view of the nodes has caught up with the sender's)
HOP_DELAYS = (0.0, 0.25, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0)
#: seconds one such attempt may take
HOP_TIMEOUT = 5.0
#: seconds the service's room list waits for the other nodes' lists
LIST_TIMEOUT = 2.0
#: "has everything this sender sent you been handled or sent on?" (`Routes`)
FLUSH_TOPIC = "muc-flush"
#: seconds a sender's first stanza for a room's new owner waits for that answer
FLUSH_TIMEOUT = 2.0
#: bytes of (sender, room) pairs whose last owner is remembered, at most (the
#: bound is in bytes: room names may be long)
ROUTES_BYTES = 16 << 20
#: what a remembered sender and a remembered pair cost besides their names
_SENDER_OVERHEAD = 300
_ROUTE_OVERHEAD = 150
#: stanzas of one sender waiting behind its stanza whose storage is awaited
MAX_WAITING_PER_SENDER = 100
#: senders with stanzas waiting that way, at most
MAX_WAITING_SENDERS = 10_000

#: how long, and how many, ended sessions of other nodes are remembered (`Ended`)
ENDED_SECONDS = 60.0
ENDED_COUNT = 10_000

_STANZA = b"S"
_ENDED = b"E"
#: a "muc-hop" answer for a presence handled at once: the sender's nick in the
#: room after it, or that it is not in the room (b"" when it waits: not known yet)
_IN_ROOM = b"N"
_NOT_IN_ROOM = b"-"
#: a moving session's rooms, in `SessionMovingOut.carry` (`MAX_CARRY` is for every
#: module: the rooms take at most this much of it, the most recent first)
CARRY_KEY = "muc"
CARRY_BYTES = 8192
E = StanzaErrorCondition


def unreachable() -> StanzaError:
    """What a sender gets when the room's node cannot be reached now (Redis away,
    the node's queue full): try again later."""
    return StanzaError(
        E.RESOURCE_CONSTRAINT, "the room's node cannot be reached now; try again", "wait"
    )


class ForwardedSender:
    """The session that sent a forwarded stanza, as the owner's handlers see it:
    what they send it goes out through the router (to the session's node)."""

    __slots__ = ("_jid", "_max", "_router", "bare", "domain", "full", "resource", "username")

    def __init__(self, full: str, router: object, max_bytes: int) -> None:
        jid = JID.parse(full)
        self._jid = jid
        self._router = router
        self._max = max_bytes
        self.full = full
        self.bare = str(jid.bare)
        self.username = jid.local or ""
        self.domain = jid.domain
        self.resource = jid.resource or ""

    def send(self, el: Element) -> None:
        self._router.deliver_to_full(self._jid, el)  # type: ignore[attr-defined]

    def write(self, data: bytes) -> None:
        # Only a room archive's result pages come here already serialized.
        self.send(parse_fragment(data, max_stanza_bytes=max(len(data) + 1, self._max)))


class Ran(enum.IntEnum):
    """What `Lanes.run` did with a work (false only when refused)."""

    REFUSED = 0
    DONE = 1  # ran and finished at once
    WAITING = 2  # queued behind its lane, or awaiting something


@dataclass(slots=True)
class _LaneTask:
    """One task of `Lanes`: what it must clean up if it is cancelled before its
    first step (then none of its own code runs)."""

    key: str | None  # None: a work awaiting outside the lanes
    queue: deque[Callable[[], Pending]] | None
    first: Awaitable[None]  # handed to the task; closed if never awaited
    started: bool = False


class _Mark:
    """A place in a lane (`Lanes.after`): set when reached, or when the lane ends."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __call__(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Lanes:
    """Per-sender order for handling whose storage is awaited: while one stanza of a
    sender awaits, its next ones wait behind it (bounded: `MAX_WAITING_PER_SENDER`
    each, `MAX_WAITING_SENDERS` senders).  Its tasks are its own, not the server's
    background work (the server waits for that, then cancels it, before the
    modules stop; a stopping node must still send on what its lanes hold), and
    `abandon` ends them.  A work that fails is logged and its lane goes on."""

    def __init__(self) -> None:
        self._waiting: dict[str, deque[Callable[[], Pending]]] = {}
        self._tasks: dict[asyncio.Future[None], _LaneTask] = {}
        #: works awaiting outside any lane (over `MAX_WAITING_SENDERS`), and the
        #: event set when there are none (for `drained`)
        self._outside = 0
        self._none_outside = asyncio.Event()
        self._none_outside.set()
        #: set by `abandon`: nothing more is taken
        self.closed = False

    def run(self, key: str, work: Callable[[], Pending]) -> Ran:
        """Run `work` now or after what `key` awaits; `Ran.REFUSED` when its lane is
        full (or the lanes are closed)."""
        if self.closed:
            return Ran.REFUSED
        queue = self._waiting.get(key)
        if queue is not None:
            if len(queue) >= MAX_WAITING_PER_SENDER:
                return Ran.REFUSED
            queue.append(work)
            return Ran.WAITING
        pending = work()
        if pending is None:
            return Ran.DONE
        if len(self._waiting) >= MAX_WAITING_SENDERS:
            log.warning("muc: %d senders wait on storage; not ordering more", len(self._waiting))
            self._outside += 1
            self._none_outside.clear()
            state = _LaneTask(None, None, pending)
            self._start(self._outside_lanes(state), state)
            return Ran.WAITING
        queue = self._waiting[key] = deque()
        state = _LaneTask(key, queue, pending)
        self._start(self._drain(state), state)
        return Ran.WAITING

    def abandon(self) -> int:
        """Take nothing more and cancel what the lanes hold (a stop out of time);
        how many tasks were cancelled."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return len(tasks)

    def _start(self, lane: Coroutine[Any, Any, None], state: _LaneTask) -> None:
        task = asyncio.ensure_future(lane)
        self._tasks[task] = state
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Future[None]) -> None:
        state = self._tasks.pop(task, None)
        if state is not None and not state.started:  # cancelled before its first step
            close = getattr(state.first, "close", None)
            if close is not None:
                close()  # never to be awaited
            if state.queue is None:
                self._left_outside()
            else:
                self._lane_ended(state)
        elif not task.cancelled() and task.exception() is not None:
            log.error("muc: a sender's lane failed", exc_info=task.exception())

    def _lane_ended(self, state: _LaneTask) -> None:
        """Its lane is gone: marks still in it are set (nobody waits on a lane that
        will not run)."""
        assert state.key is not None and state.queue is not None
        if self._waiting.get(state.key) is state.queue:
            del self._waiting[state.key]
        for work in state.queue:
            if isinstance(work, _Mark):
                work()
        state.queue.clear()

    async def _outside_lanes(self, state: _LaneTask) -> None:
        state.started = True
        try:
            await _logged(state.first)
        finally:
            self._left_outside()

    def _left_outside(self) -> None:
        self._outside -= 1
        if not self._outside:
            self._none_outside.set()

    def after(self, key: str) -> asyncio.Future[None] | None:
        """Done once what `key`'s lane holds now has run; None when it holds nothing.
        Not bounded by `MAX_WAITING_PER_SENDER`: asked once per owner switch of a
        sender's room (`RoomRelay._flush_asked` for another node's sender,
        `_after_flush` for this node's own), which a client cannot cause at will.
        A mark takes a place in the lane until it is reached (or the lane ends),
        even when its asker stopped waiting."""
        queue = self._waiting.get(key)
        if queue is None or self.closed:
            return None
        mark = _Mark()
        queue.append(mark)
        return mark.done

    async def drained(self) -> None:
        """Done once what every lane holds now, and every work awaiting outside the
        lanes, has run (a stopping node passes on what it took before it leaves)."""
        marks = [mark for key in list(self._waiting) if (mark := self.after(key)) is not None]
        if marks:
            await asyncio.gather(*marks)
        await self._none_outside.wait()

    async def _drain(self, state: _LaneTask) -> None:
        state.started = True
        assert state.queue is not None
        queue = state.queue
        pending: Pending = state.first
        try:
            while pending is not None:
                await _logged(pending)
                pending = None
                while queue and pending is None:
                    work = queue.popleft()
                    try:
                        pending = work()
                    except Exception:
                        log.exception("muc: a forwarded stanza's handling failed")
        finally:
            self._lane_ended(state)


async def _logged(pending: Awaitable[None]) -> None:
    try:
        await pending
    except Exception:
        log.exception("muc: a forwarded stanza's handling failed")


class Routes:
    """The node each (sender, room) pair's last stanza went to: a stanza whose room's
    owner is not that node waits until that node has passed on what it got (see
    the module docstring).  Bounded per sender (`per_sender` rooms, the oldest
    entered go first) and in all (`max_bytes`: the senders whose last stanza is
    oldest go first), and a session's pairs go with it (`forget`).  A pair
    forgotten for a bound is taken as new: its next switch is not held."""

    def __init__(self, per_sender: int, max_bytes: int = ROUTES_BYTES) -> None:
        self.per_sender = per_sender
        self.max_bytes = max_bytes
        self.bytes = 0
        self._last: dict[str, dict[str, str]] = {}

    def switch(self, sender: str, room: str, owner: str) -> str | None:
        """Record `owner` for the pair; the node before it when it differs, else None."""
        senders = self._last
        rooms = senders.pop(sender, None)
        if rooms is None:
            rooms = {}
            self.bytes += len(sender) + _SENDER_OVERHEAD
        senders[sender] = rooms  # the latest sender last: the bound takes the others first
        last = rooms.get(room)
        if last == owner:
            return None
        rooms[room] = owner
        if last is None:
            self.bytes += len(room) + _ROUTE_OVERHEAD
            if len(rooms) > self.per_sender:
                oldest = next(iter(rooms))
                del rooms[oldest]
                self.bytes -= len(oldest) + _ROUTE_OVERHEAD
            while self.bytes > self.max_bytes:
                self.forget(next(iter(self._last)))
        return last

    def forget(self, sender: str) -> None:
        rooms = self._last.pop(sender, None)
        if rooms is not None:
            self.bytes -= len(sender) + _SENDER_OVERHEAD
            self.bytes -= sum(len(room) + _ROUTE_OVERHEAD for room in rooms)

    def __len__(self) -> int:
        """Pairs remembered."""
        return sum(len(rooms) for rooms in self._last.values())


class Memberships:
    """The rooms this node's sessions sent presence to, with the nick (bounded per
    session): whom to tell when a room's owner dies, and whether a session's end
    must be told to the other nodes.  A room beyond the bound pushes the oldest
    out, and the session is then `incomplete`: its end is told to every node."""

    def __init__(self, per_session: int) -> None:
        self.per_session = per_session
        self._rooms: dict[str, dict[str, str]] = {}
        #: sessions whose rooms may be more than listed (one pushed out, or resumed
        #: here from another node with more than it carried): at most one entry
        #: per session of this node, gone with the session
        self.incomplete: set[str] = set()

    def joined(self, full: str, room: str, nick: str) -> None:
        rooms = self._rooms.setdefault(full, {})
        rooms.pop(room, None)
        rooms[room] = nick
        while len(rooms) > self.per_session:
            del rooms[next(iter(rooms))]
            self.incomplete.add(full)

    def confirmed(self, full: str, room: str, nick: str) -> None:
        """The room took the session under `nick` (a change it refused leaves the
        nick it had): kept for the 332 if its owner dies.  A room not listed
        (pushed out, or left since) is not listed again."""
        rooms = self._rooms.get(full)
        if rooms is not None and room in rooms:
            rooms[room] = nick

    def left(self, full: str, room: str) -> None:
        rooms = self._rooms.get(full)
        if rooms is not None:
            rooms.pop(room, None)
            if not rooms:
                del self._rooms[full]

    def ended(self, full: str) -> dict[str, str] | None:
        """The session's rooms, forgotten here; None when they may be more (tell
        every node)."""
        rooms = self._rooms.pop(full, {})
        if full in self.incomplete:
            self.incomplete.discard(full)
            return None
        return rooms

    def carried(self, full: str, limit: int) -> str:
        """The session's rooms and nicks for its move to another node (XEP-0198
        resumption there), the most recent first, as many as fit in `limit` bytes
        of JSON."""
        kept: dict[str, str] = {}
        size = 2
        for room, nick in reversed(list(self._rooms.get(full, {}).items())):
            size += len(json.dumps(room)) + len(json.dumps(nick)) + 3
            if size > limit:
                break
            kept[room] = nick
        return json.dumps(dict(reversed(kept.items())))

    def arrived(self, full: str, carried: str) -> None:
        """What `carried` gave, on the session's new node."""
        try:
            rooms = json.loads(carried)
        except ValueError:
            return
        # from another node's list: what did not fit in the carry is not in it
        self.incomplete.add(full)
        if isinstance(rooms, dict):
            for room, nick in rooms.items():
                if isinstance(room, str) and isinstance(nick, str):
                    self.joined(full, room, nick)

    def items(self) -> list[tuple[str, dict[str, str]]]:
        return list(self._rooms.items())


class Ended:
    """Full JIDs of sessions of other nodes that ended in the last `ENDED_SECONDS`,
    at most `ENDED_COUNT` (the oldest go first)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._when: dict[str, float] = {}

    def add(self, full: str) -> None:
        self._when.pop(full, None)
        self._when[full] = self._clock()
        while len(self._when) > ENDED_COUNT:
            del self._when[next(iter(self._when))]

    def discard(self, full: str) -> None:
        """`full` is alive again (a client that came back under the same resource)."""
        if self._when:
            self._when.pop(full, None)

    def __contains__(self, full: object) -> bool:
        when = self._when.get(full) if isinstance(full, str) else None
        return when is not None and self._clock() - when <= ENDED_SECONDS

    def heard_since(self, full: str, moment: float) -> bool:
        """Whether `full`'s end was heard at `moment` (this clock) or later, within
        `ENDED_SECONDS`: an end heard before a session came back (a client that
        reconnected under the same resource) is not its end."""
        when = self._when.get(full)
        return when is not None and when >= moment and self._clock() - when <= ENDED_SECONDS


class RoomRelay:
    """The service-domain handler of a node of a cluster (see the module docstring)."""

    def __init__(self, svc: MucService, peers: Peers, *, max_stanza_bytes: int) -> None:
        self.svc = svc
        self.peers = peers
        self.max_stanza_bytes = max_stanza_bytes
        self.memberships = Memberships(svc.options.max_rooms_per_session)
        #: sessions of other nodes that ended lately (a room handed over to this node
        #: may still list them: `ownership.py` takes them out on arrival)
        self.ended = Ended()
        self.lanes = Lanes()
        self.routes = Routes(svc.options.max_rooms_per_session)
        #: set while this node's room table is complete; cleared while persistent
        #: rooms that moved here are being loaded (stanzas for rooms it lacks wait)
        self.settled = asyncio.Event()
        #: rooms with stanzas waiting for `settled` (their later stanzas wait too)
        self._held: dict[str, int] = {}
        if peers.clustered:
            peers.on_message(TOPIC, self._arrived)
            peers.on_request(ROOMS_TOPIC, self._rooms_asked)
            peers.on_request(HOP_TOPIC, self._hopped)
            peers.on_request(FLUSH_TOPIC, self._flush_asked)
        else:
            self.settled.set()

    # ------------------------------------------------------------ from local clients

    def handle(self, session: C2SSession, stanza: Element, to: JID) -> Pending:
        """A stanza from a client of this node to the service or one of its rooms."""
        peers = self.peers
        if not peers.clustered:
            return dispatch.handle(self.svc, session, stanza, to)
        if not to.local:
            if _is_items_query(stanza):
                return self._room_list(session, stanza, to)
            return dispatch.handle(self.svc, session, stanza, to)
        room = f"{to.local}@{to.domain}"
        if stanza.name == "presence":
            self._track(session.full, stanza, room, to.resource or "")
            self.ended.discard(session.full)
        return self._to_owner(session, stanza, to, room)

    def _to_owner(self, session: C2SSession, stanza: Element, to: JID, room: str) -> Pending:
        """To the room's owner: here, or sent; after the previous owner's answer when
        the owner is not the node this sender's last stanza for the room went to."""
        peers = self.peers
        owner = peers.owner(room)
        last = self.routes.switch(session.full, room, owner)
        if last is not None and last != peers.name:
            # Asked even when this node counts it out of the owners: a node that
            # is stopping still passes on what it got.  One that is gone fails
            # the request at once.
            return self._after_flush(last, session, stanza, to, room)
        if owner == peers.name:
            pending = self.local(session, stanza, to)
            if pending is None and stanza.name == "presence":
                self._confirmed(session, room, self._standing(session.full, room))
            return pending
        if stanza.name == "presence":
            # Joins and leaves are few and must not vanish: a request, which says
            # whether the owner heard (it may have died a moment ago).
            return self._send_on(session, stanza, to, 0)
        if not peers.send(owner, TOPIC, _encode(0, session.full, stanza)):
            self.svc.error(session, stanza, unreachable())
        return None

    def _track(self, full: str, stanza: Element, room: str, nick: str) -> None:
        ptype = stanza.get("type")
        if ptype is None and nick:
            self.memberships.joined(full, room, nick)
        elif ptype in ("unavailable", "error"):
            self.memberships.left(full, room)

    def local(self, session: C2SSession, stanza: Element, to: JID) -> Pending:
        """Handle a stanza for a room this node owns.  While this node's room table is
        incomplete (persistent rooms loading, rooms being handed over to it), a stanza
        for a room it lacks waits, and so do the later ones for that room (in order)."""
        room = f"{to.local}@{to.domain}"
        if (
            not self.settled.is_set()
            and to.local
            and (room in self._held or self.svc.registry.get(room) is None)
        ):
            return self._after_settling(session, stanza, to, room)
        return dispatch.handle(self.svc, session, stanza, to)

    async def _after_settling(
        self, session: C2SSession, stanza: Element, to: JID, room: str
    ) -> None:
        self._held[room] = self._held.get(room, 0) + 1
        try:
            await self.settled.wait()
        finally:
            left = self._held[room] - 1
            if left:
                self._held[room] = left
            else:
                del self._held[room]
        pending = self._here_or_on(session, stanza, to, 0)
        if pending is not None:
            await pending

    def _here_or_on(self, session: C2SSession, stanza: Element, to: JID, hops: int) -> Pending:
        """Handle it here if this node owns the room now, else send it on to the owner
        (work that waited may find the room moved meanwhile)."""
        if to.local and self.peers.owner(f"{to.local}@{to.domain}") != self.peers.name:
            # the nodes saw a membership change at different moments: send it on
            if hops >= MAX_HOPS:
                self.svc.error(session, stanza, unreachable())
                return None
            return self._send_on(session, stanza, to, hops + 1)
        return self.local(session, stanza, to)

    async def _send_on(self, session: C2SSession, stanza: Element, to: JID, hops: int) -> None:
        """Send a stanza on to the room's owner as this node sees it, as a request: a
        node this one still thinks alive may be dead (another noticed first), and a
        message to it would be lost without a word.  Tried again, with the owner
        looked up again, until this node's view has caught up (`HOP_DELAYS`)."""
        room = f"{to.local}@{to.domain}"
        payload = _encode(hops, session.full, stanza)
        for delay in HOP_DELAYS:
            if delay:
                await asyncio.sleep(delay)
            owner = self.peers.owner(room)
            if owner == self.peers.name:
                pending = self.local(session, stanza, to)
                if pending is not None:
                    await pending
                elif stanza.name == "presence":
                    self._confirmed(session, room, self._standing(session.full, room))
                return
            try:
                answer = await self.peers.request(owner, HOP_TOPIC, payload, HOP_TIMEOUT)
                if stanza.name == "presence":
                    self._confirmed(session, room, answer)
                return
            except PeerUnreachable:
                continue
            except PeerRefused as exc:
                log.warning("muc: node %s refused a stanza for %s (%s)", owner, room, exc)
                break
        self.svc.error(session, stanza, unreachable())

    async def _after_flush(
        self, last: str, session: C2SSession, stanza: Element, to: JID, room: str
    ) -> None:
        """Send once `last` (the node this sender's previous stanzas for the room went
        to) has handled or sent on all of them.  The sender's connection awaits
        this, so its next stanzas wait too; each wait is at most `FLUSH_TIMEOUT`
        (a dead node's stanzas are lost anyway; a node still trying to pass them
        on after that is overtaken, rather than the sender held up longer)."""
        try:
            await self.peers.request(last, FLUSH_TOPIC, session.full.encode(), FLUSH_TIMEOUT)
        except (PeerUnreachable, PeerRefused) as exc:
            log.info("muc: node %s did not confirm what %s sent it (%s)", last, session.full, exc)
        # What `last` sent on to this node is in the sender's lane here, maybe not
        # handled yet (a room still arriving): this stanza goes after it.
        here = self.lanes.after(session.full)
        if here is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(here, FLUSH_TIMEOUT)
        pending = self._to_owner(session, stanza, to, room)
        if pending is not None:
            await pending

    def _standing(self, full: str, room_jid: str) -> bytes:
        """`full`'s place in a room of this node, as a presence hop's answer."""
        room = self.svc.registry.get(room_jid)
        occupant = None if room is None else room.occupant_of(full)
        return _NOT_IN_ROOM if occupant is None else _IN_ROOM + occupant.nick.encode()

    def _confirmed(self, session: C2SSession, room: str, standing: bytes) -> None:
        """What the room's owner said of a presence of a session of this node: its
        nick there, or that it is not in (a join refused)."""
        if isinstance(session, ForwardedSender):
            return  # another node's session, sent on from here
        if standing[:1] == _IN_ROOM:
            self.memberships.confirmed(session.full, room, standing[1:].decode(errors="replace"))
        elif standing == _NOT_IN_ROOM:
            self.memberships.left(session.full, room)

    def remote_session_ended(self, full: str) -> None:
        """A session of another node ended (its node said so, or died): it leaves this
        node's rooms, and is remembered a while (`Ended`) for rooms still arriving."""
        self.ended.add(full)
        self.lanes.run(full, lambda: session_closed(self.svc, full))

    def session_ended(self, full: str) -> None:
        """A session of this node ended (or went unavailable): it leaves the rooms of
        this node here, and those elsewhere by a notice to every other node (each
        owner knows which of its rooms the session is in)."""
        session_closed(self.svc, full)
        self.routes.forget(full)
        rooms = self.memberships.ended(full)
        if self.peers.clustered and (
            rooms is None or any(self.peers.owner(r) != self.peers.name for r in rooms)
        ):
            sent = self.peers.broadcast(TOPIC, _ENDED + full.encode())
            if sent < len(self.peers.alive()) - 1:
                log.warning("muc: could not tell every node that %s left its rooms", full)

    def moving_out(self, full: str, carry: dict[str, str]) -> None:
        """The session resumes on another node: its rooms go with it (the rooms
        keep it as an occupant under the same full JID), so that its new node
        tells their owners when it ends."""
        carried = self.memberships.carried(full, CARRY_BYTES)
        if carried != "{}" or full in self.memberships.incomplete:
            carry[CARRY_KEY] = carried

    def moved_out(self, full: str) -> None:
        """Gone to another node, which tells its end: nothing to tell from here."""
        self.memberships.ended(full)
        self.routes.forget(full)

    def moved_in_here(self, full: str, carry: Mapping[str, str]) -> None:
        carried = carry.get(CARRY_KEY)
        if carried is not None:
            self.memberships.arrived(full, carried)

    # ------------------------------------------------------------ from other nodes

    async def _hopped(self, sender: str, payload: bytes) -> bytes:
        """A presence from another node's session, or a stanza sent on by a node that
        no longer owns its room (`_send_on`): taken like any forwarded one.  The
        answer says it arrived; for a presence handled at once, also the sender's
        nick in the room after it (`_standing`), which its node keeps for a 332."""
        if payload[:1] != _STANZA:
            return b""
        presence = self._take(sender, payload)
        return b"" if presence is None else self._standing(*presence)

    async def _flush_asked(self, sender: str, payload: bytes) -> bytes:
        """Another node's sender now sends to a room's new owner: answered once every
        stanza of that sender taken here before this request has been handled or
        sent on (the request came on the same channel after them, and the ones
        awaited wait in the sender's lane)."""
        done = self.lanes.after(payload.decode(errors="replace"))
        if done is not None:
            with contextlib.suppress(TimeoutError):  # the asker stops waiting then too
                await asyncio.wait_for(done, FLUSH_TIMEOUT)
        return b""

    def _arrived(self, sender: str, payload: bytes) -> None:
        """A message on ``"muc"``."""
        self._take(sender, payload)

    def _take(self, sender: str, payload: bytes) -> tuple[str, str] | None:
        """A message on ``"muc"`` or a ``"muc-hop"`` request's stanza; for a presence
        handled at once, its sender and room."""
        kind = payload[:1]
        if kind == _ENDED:
            full = payload[1:].decode(errors="replace")
            self.remote_session_ended(full)
            return None
        if kind != _STANZA or len(payload) < 3:
            log.warning("muc: an unknown message from node %s was dropped", sender)
            return None
        hops = payload[1]
        head, _, data = payload[2:].partition(b"\n")
        try:
            full = head.decode()
            origin = ForwardedSender(full, self.svc.router, self.max_stanza_bytes)
            stanza = parse_fragment(data, max_stanza_bytes=self.max_stanza_bytes)
            to = JID.parse(stanza.get("to") or "")
        except Exception as exc:  # a node wrote it: a bug or a version mismatch
            log.warning("muc: a malformed stanza from node %s was dropped (%s)", sender, exc)
            return None
        session = cast(C2SSession, origin)
        self.ended.discard(full)
        ran = self.lanes.run(full, lambda: self._here_or_on(session, stanza, to, hops))
        if not ran:
            refusal = (
                unreachable()
                if self.lanes.closed
                else StanzaError(E.RESOURCE_CONSTRAINT, "too many stanzas", "wait")
            )
            self.svc.error(session, stanza, refusal)
            return None
        if ran is not Ran.DONE or stanza.name != "presence" or not to.local:
            return None
        return full, f"{to.local}@{to.domain}"

    # ------------------------------------------------------------ the room list

    def public_rooms(self, service: str) -> list[tuple[str, str]]:
        """This node's public, unlocked rooms of `service`: (JID, name)."""
        return list(public_rooms(self.svc, service))

    async def _rooms_asked(self, sender: str, payload: bytes) -> bytes:
        """Another node's room-list request: this node's window of the page it
        asks (JSON), or, from a node of the earlier format (the service's name
        alone), the first rooms as a plain list."""
        cap = self.svc.options.room_list_max
        if not payload.startswith(b"{"):
            first = roomlist.window(self.public_rooms(payload.decode()), roomlist.PageRequest(cap))
            return json.dumps(first.rooms).encode()
        asked = json.loads(payload)
        request = roomlist.PageRequest(
            max=max(0, min(int(asked["max"]), cap)),
            after=_optional_str(asked.get("after")),
            before=_optional_str(asked.get("before")),
        )
        mine = roomlist.window(self.public_rooms(str(asked["service"])), request)
        return json.dumps(
            {"rooms": mine.rooms, "count": mine.count, "skipped": mine.skipped}
        ).encode()

    def _room_list(self, session: C2SSession, iq: Element, to: JID) -> Pending:
        payload = iq.find("query", ns.DISCO_ITEMS)
        assert payload is not None  # `_is_items_query`
        try:
            request = roomlist.read_request(payload, self.svc.options.room_list_max)
        except StanzaError as exc:
            self.svc.error(session, iq, exc)
            return None
        return self._gather(session, iq, to.domain, request)

    async def _gather(
        self, session: C2SSession, iq: Element, service: str, request: roomlist.PageRequest
    ) -> None:
        """disco#items of the service (XEP-0045 §6.3): the page from every node's
        window of its public rooms (`roomlist.py`)."""
        others = sorted(self.peers.alive() - {self.peers.name})
        asked = json.dumps(
            {
                "service": service,
                "max": request.max,
                "after": request.after,
                "before": request.before,
            }
        ).encode()
        answers = await asyncio.gather(
            *(self.peers.request(n, ROOMS_TOPIC, asked, LIST_TIMEOUT) for n in others),
            return_exceptions=True,
        )
        windows = [roomlist.window(self.public_rooms(service), request)]
        for node, answer in zip(others, answers, strict=True):
            if isinstance(answer, BaseException):
                log.info("muc: node %s's rooms are not listed (%s)", node, answer)
                continue
            try:
                windows.append(_window_of(json.loads(answer), request))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("muc: node %s answered an unreadable room list (%s)", node, exc)
        query = roomlist.answer(roomlist.merge(windows, request), request)
        reply = iq_result(iq, query)
        reply.attrs["to"] = session.full
        session.send(reply)


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _window_of(answer: object, request: roomlist.PageRequest) -> roomlist.Window:
    """Another node's answer as a window (bounded: at most the page's rooms)."""
    if isinstance(answer, list):  # a node of the earlier format: its first rooms
        rooms = [(str(jid), str(name)) for jid, name in answer[: 10 * request.max + 1]]
        return roomlist.window(rooms, request)
    if not isinstance(answer, dict):
        raise TypeError("not a room list")
    rooms = [(str(jid), str(name)) for jid, name in answer["rooms"][: request.max]]
    return roomlist.Window(rooms, int(answer["count"]), int(answer["skipped"]))


def _is_items_query(stanza: Element) -> bool:
    if stanza.name != "iq" or stanza.get("type") != "get":
        return False
    query = stanza.find("query", ns.DISCO_ITEMS)
    return query is not None and not query.get("node") and len(stanza.children) == 1


def _encode(hops: int, full: str, stanza: Element) -> bytes:
    return b"".join((_STANZA, bytes((hops,)), full.encode(), b"\n", serialize(stanza).encode()))
