"""XEP-0198 resumption across cluster nodes: the connection work on both sides.

`cluster/sm_handover.py` carries the conversation between the node a client
resumes on (B) and the node that held its session (A); this module does what
each side does to its connections and sessions.  It sees the conversation only
through `sm_handover_types.py` (A's answers, the `Handover` protocol) and takes
the driver's steps from `sm_steps.py`: the handover calls this module and the
driver starts it, so importing either back would be an import cycle.

- on A, `detach` takes the session from its connection (acknowledging the
  client's 'h', closing a still-open old stream with `<conflict/>`, stopping the
  hibernation timer) and leaves it bound, every stanza written to it queued;
  then `release_moved` lets it go without ending it (no unavailable presence, no
  rerouting: what it queued travels to B), or `end_detached` ends it as a
  timeout would when the handover fails;
- modules keeping per-session state hear `sm_events.py`'s events on both sides;
- on B, `resume_elsewhere` asks A, moves the full JID here in the session
  directory, rebuilds the session (same full JID, counts, presence, priority,
  roster interest, directed presences), answers `<resumed/>` and sends again
  what the client has not acknowledged, then what arrived here meanwhile.

Stanzas for the full JID during the handover: until B holds the full JID they
reach A's session and queue there; from then on they reach B's new session,
which buffers them (`_Early`, bounded) until A's queue has arrived, so the
client gets A's queue first.  A message sent to A after A let go is sent on to
B by A's directory.  Order within the window: a message that went through A
can arrive after one sent straight to B a moment later.

Every failure is answered `<failed><item-not-found/></failed>` (the client
binds anew), as a resumption of an unknown token is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from chatgate.jid import JID, InvalidJID
from chatgate.peers import PeerRefused, PeerUnreachable
from chatgate.vocabulary.errors import StanzaErrorCondition
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize
from chatgate.xmpp import sm_queue, sm_stream
from chatgate.xmpp.events import SessionResumed
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.sm_events import SessionArrived, SessionArriving, SessionMovedIn
from chatgate.xmpp.sm_handover_types import Refusal
from chatgate.xmpp.sm_queue import HandledCountTooHigh, QueueLimits
from chatgate.xmpp.sm_steps import count_too_high, overflowed, rewire, send_nonza
from chatgate.xmpp.sm_stream import ManagedStream

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.xml.element import Element
    from chatgate.xmpp.sm_connection import SmConnection as C2SConnection
    from chatgate.xmpp.sm_handover_types import Handover, Taken
    from chatgate.xmpp.sm_resumption import Resumable, SmPolicy

log = logging.getLogger(__name__)

#: how many nodes a token's session may have moved through before we give up
MAX_HOPS = 4


# ---------------------------------------------------------------- A: the old side


def detach(
    found: Resumable, h: int | None, sid_of: Callable[[C2SSession], str | None]
) -> tuple[C2SSession, ManagedStream, str] | None:
    """Take the session from its connection for a handover; None when it is ending
    or not bound here.  Raises `HandledCountTooHigh` (the session stays as it was)."""
    conn = cast("C2SConnection", found)
    sm, session = conn.sm, conn.session
    if sm is None or session is None:
        return None
    sid = sid_of(session)
    if sid is None:
        return None
    if h is not None:
        sm.queue.ack(h)
    held = conn.csi.take() if conn.csi is not None else []
    conn.hand_over()  # closes a still-open stream with <conflict/>, stops the timer
    sm.forward = None
    session.write = sm.write  # queued only, until B takes it
    for data in held:
        session.write(data)
    return session, sm, sid


def release_moved(ctx: ServerContext, session: C2SSession, sm: ManagedStream) -> list[bytes]:
    """The session now lives on another node: out of this node's directory without
    ending it; returns what the client has not acknowledged, oldest first."""
    sm.stop()
    released = ctx.router.directory.release(session)
    if released is not None:
        ctx.spawn(released)
    session.write = _gone
    return sm.queue.drain()


def _gone(data: bytes) -> None:
    """The write path of a session object that moved to another node (nothing
    should hold it any more: delivery goes through the directory)."""
    log.debug("a stanza for a session that moved to another node was dropped")


def end_detached(ctx: ServerContext, session: C2SSession, sm: ManagedStream) -> None:
    """The handover failed: the session ends for good here, as when its hibernation
    runs out (`C2SConnection._end_session`)."""
    sm.stop()
    released = ctx.router.directory.release(session)
    if released is not None:
        ctx.spawn(released)
    ctx.session_closed(session)
    sm_stream.reroute_unacked(ctx, session, sm.queue.drain())


def serialized(presence: Element | None) -> str | None:
    return serialize(presence) if presence is not None else None


# ---------------------------------------------------------------- B: the new side


class _Early:
    """What B's new session is sent between holding the full JID and having A's
    queue: kept in order, bounded as the session's queue is.  Past the bound the
    session ends instead of being resumed (`over`: its queue rerouted, as for an
    overflowing queue), and only messages are still kept, up to twice the bound
    (presence would be dropped by the rerouting anyway; past twice the bound a
    stanza is dropped, logged)."""

    __slots__ = ("_bytes", "items", "limits", "over")

    def __init__(self, limits: QueueLimits) -> None:
        self.limits = limits
        self.items: list[bytes] = []
        self._bytes = 0
        self.over = False

    def write(self, data: bytes) -> None:
        limits = self.limits
        if len(self.items) >= limits.stanzas or self._bytes + len(data) > limits.bytes:
            self.over = True
            if (
                not data.startswith(b"<message")
                or len(self.items) >= 2 * limits.stanzas
                or self._bytes + len(data) > 2 * limits.bytes
            ):
                log.warning("a stanza for a session being resumed was dropped: buffer full")
                return
        self.items.append(data)
        self._bytes += len(data)


def _fail(conn: C2SConnection, h: int | None = None) -> None:
    if not conn.closed:
        failed = sm_queue.failed(StanzaErrorCondition.ITEM_NOT_FOUND, h)
        conn._apply(conn.negotiation.resume_failed(failed))


async def resume_elsewhere(
    conn: C2SConnection,
    policy: SmPolicy,
    handover: Handover,
    previd: str,
    owner: str,
    h: int | None,
    node: str,
) -> None:
    """`<resume/>` of a session another node holds (module docstring)."""
    taken: Taken | None = None
    for _hop in range(MAX_HOPS):
        try:
            answer = await handover.take(node, previd, owner, h)
        except (PeerUnreachable, PeerRefused, ValueError, KeyError, TypeError) as exc:
            log.info("%s: resumption from node %s failed: %s", owner, node, exc)
            _fail(conn)
            return
        if not isinstance(answer, Refusal):
            taken = answer
            break
        if answer.too_high is not None:
            if not conn.closed:
                count_too_high(conn, HandledCountTooHigh(*answer.too_high))
            return
        moved = answer.moved
        if moved is None or moved == handover.peers.name:
            _fail(conn, answer.h)
            return
        node = moved
    if taken is None:
        _fail(conn)
        return
    if conn.closed:
        handover.abort(node, previd)
        return
    await _take_over(conn, policy, handover, previd, node, taken)


async def _take_over(
    conn: C2SConnection,
    policy: SmPolicy,
    handover: Handover,
    previd: str,
    node: str,
    taken: Taken,
) -> None:
    ctx = conn.ctx
    try:
        jid = JID.parse(taken.full)
    except InvalidJID:
        handover.abort(node, previd)
        _fail(conn)
        return
    early = _Early(policy.limits)
    session = C2SSession(
        username=jid.local,
        domain=jid.domain,
        resource=jid.resource,
        stream_id=conn.negotiation.stream_id,
        write=early.write,
        close=conn.close_stream,
        transport=conn.transport.name,
        tls_active=conn.facts.tls_active,
    )
    presence = None
    if taken.presence is not None:
        try:
            presence = parse_fragment(taken.presence.encode())
        except Exception:
            presence = None
    # Before the session is reachable here, and once it is (`sm_events.py`).
    await ctx.hooks.notify(SessionArriving(jid.local, jid.domain, node))
    directory = ctx.router.directory
    take_over = getattr(directory, "take_over", None)
    moved = False
    try:
        moved = take_over is not None and await take_over(
            session,
            node,
            taken.sid,
            available=taken.available,
            priority=taken.priority,
            presence=presence,
            interested=taken.interested,
        )
    finally:
        await ctx.hooks.notify(SessionArrived(jid.local, jid.domain, session if moved else None))
    if not moved:
        handover.abort(node, previd)
        _fail(conn)
        return
    session.directed = set(taken.directed)
    try:
        handed = await handover.done(node, previd)
    except Exception as exc:  # A went away between the two steps, or its answer did
        log.info("%s: node %s did not hand the session over: %s", session.full, node, exc)
        # A may have answered and let the session go: it sends the queue it
        # answered on (or ends the session, if step 3 never reached it).
        handover.abort(node, previd)
        _end_here(ctx, session, [], early)
        _fail(conn)
        return
    unacked = handed.unacked
    # Modules restore what they keep per session (`sm_events.py`) before anything
    # else reaches the client.
    await ctx.hooks.notify(SessionMovedIn(session, node, handed.carry))
    if conn.closed or early.over:
        # The client left meanwhile, or a flood filled the buffer: the session is
        # this node's now, and ends here (its unacknowledged messages rerouted).
        _end_here(ctx, session, unacked, early)
        _fail(conn)
        return
    sm = ManagedStream(policy, previd, taken.resume_seconds, lambda: overflowed(conn))
    queue = sm.queue
    queue.inbound = taken.inbound
    queue.acked = queue.sent = taken.acked
    within = all([queue.push(data) for data in unacked])
    conn.session = session
    conn.sm = sm
    conn.count_stanzas()
    conn._established()
    conn._apply(conn.negotiation.resumed())
    send_nonza(conn, sm_queue.resumed(previd, queue.inbound))
    policy.table.add(previd, session.bare, conn)
    handover.resumed_here(previd)
    output = conn.output.element
    for data in queue.unacked():
        output(data)
    rewire(conn, session)
    for data in early.items:
        session.write(data)
    sm.request_ack()
    if not within:
        conn._loop.call_soon(sm.on_overflow)
    ctx.session_bound(session)
    pending = ctx.hooks.fire(SessionResumed(session))
    if pending is not None:
        ctx.spawn(pending)
    log.info("%s resumed from node %s (%d stanzas resent)", session.full, node, len(sm.queue))


def _end_here(ctx: ServerContext, session: C2SSession, unacked: list[bytes], early: _Early) -> None:
    """A session this node took over ends before it was resumed."""
    released = ctx.router.directory.release(session)
    if released is not None:
        ctx.spawn(released)
    ctx.session_closed(session)
    sm_stream.reroute_unacked(ctx, session, unacked + early.items)
