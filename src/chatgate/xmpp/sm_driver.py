"""The connection driver's XEP-0198 and XEP-0352 work: nonzas, hibernation, resumption.

`xmpp/c2s.py` hands this module the nonzas of an established stream
(`<enable/>`, `<r/>`, `<a/>`, `<active/>`, `<inactive/>`), the negotiation
core's `ResumeRequested`, and a stream-managed connection that dropped.  It
works on the connection's `sm` (the session's `ManagedStream`), `csi` (the
client-state filter while inactive) and `resume_timer` members, and keeps the
session's write path (`C2SSession.write`) wired as

    CSI filter (while inactive) -> ManagedStream.write (with SM) -> the output

A session with neither writes straight to its output, as it always did.

The steps a resumption from another node (`sm_takeover.py`) repeats -- the
write path (`rewire`), nonzas out, ending an overflowing or unresumed session
-- are in `sm_steps.py`, which both modules import.

Hibernation (XEP-0198 §5, §7): a stream-managed, resumable session whose
connection drops without `</stream>` stays bound -- available, with its roster
interest and directed presences -- and goes on queueing what it is sent, until
its client resumes or `resume_seconds` pass; then it ends for good and what
it never acknowledged is rerouted (`sm_stream.reroute_unacked`).  Whatever
ends it otherwise (a new binding of its resource, an account deletion, the
server stopping, its queue overflowing) ends it the same way.

Resumption: the new connection (authenticated, not bound) asks the resumption
table for the token; only a session of the same account is found.  The old
connection gives the session up (`hand_over`, closing its stream with
`<conflict/>` if it is still open), the new one takes the same `C2SSession`
object (so presence, roster interest and directed presences are those of the
old stream), acknowledges the client's 'h', answers `<resumed/>` and writes
again everything still unacknowledged, in order.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chatgate.vocabulary.errors import StanzaErrorCondition, StreamErrorCondition
from chatgate.vocabulary.ns import CSI
from chatgate.xml.element import Element
from chatgate.xmpp import sm_queue
from chatgate.xmpp.events import SessionHibernated, SessionResumed
from chatgate.xmpp.sm_client_state import ClientStateFilter
from chatgate.xmpp.sm_queue import HandledCountTooHigh, parse_h
from chatgate.xmpp.sm_resumption import (
    ClientStateFeature,
    Ended,
    SmPolicy,
    StreamManagementFeature,
    feature_of,
    new_token,
)
from chatgate.xmpp.sm_steps import (
    count_too_high,
    end_hibernated,
    overflowed,
    rewire,
    send_nonza,
)
from chatgate.xmpp.sm_stream import ManagedStream

if TYPE_CHECKING:
    from chatgate.xmpp.negotiation import ResumeRequested
    from chatgate.xmpp.session import C2SSession
    from chatgate.xmpp.sm_connection import SmConnection as C2SConnection

log = logging.getLogger(__name__)

#: transports whose connections cannot drop and come back (BOSH has its own
#: sessions across requests): stream management works there without resumption
_NOT_RESUMABLE = frozenset(("bosh",))


def _policy(conn: C2SConnection) -> SmPolicy | None:
    feature = feature_of(conn.ctx.stream_features, StreamManagementFeature, conn.domain)
    return feature.policy if feature is not None else None


# ---------------------------------------------------------------- nonzas


def nonza(conn: C2SConnection, session: C2SSession, el: Element) -> None:
    """A stream-management or client-state element of the established stream."""
    if el.ns == CSI:
        client_state(conn, session, el.name)
        return
    name = el.name
    sm = conn.sm
    if name == "r":
        if sm is None:
            send_nonza(conn, sm_queue.failed(StanzaErrorCondition.UNEXPECTED_REQUEST))
        else:
            conn.output.element(sm_queue.answer(sm.queue.inbound))
    elif name == "a":
        if sm is None:
            send_nonza(conn, sm_queue.failed(StanzaErrorCondition.UNEXPECTED_REQUEST))
            return
        h = parse_h(el.get("h"))
        if h is None:
            conn.close_stream(StreamErrorCondition.INVALID_XML, "'h' must be an unsigned int")
            return
        try:
            sm.queue.ack(h)
        except HandledCountTooHigh as exc:
            count_too_high(conn, exc)
    elif name == "enable":
        enable(conn, session, el)
    elif name == "resume":
        # XEP-0198 §5: resumption replaces binding; this stream is bound already.
        send_nonza(conn, sm_queue.failed(StanzaErrorCondition.UNEXPECTED_REQUEST))
    else:
        conn.close_stream(
            StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, f"<{name}/> is no stream management"
        )


def enable(conn: C2SConnection, session: C2SSession, el: Element) -> None:
    """`<enable/>` (XEP-0198 §3): counting starts now in both directions."""
    policy = _policy(conn)
    if policy is None:
        send_nonza(conn, sm_queue.failed(StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED))
        return
    if conn.sm is not None:
        send_nonza(
            conn, sm_queue.failed(StanzaErrorCondition.UNEXPECTED_REQUEST, text="enabled already")
        )
        return
    wants = el.get("resume") in ("true", "1")
    resumable = wants and policy.resume_timeout > 0 and conn.transport.name not in _NOT_RESUMABLE
    token = None
    if resumable:
        handover = policy.handover
        signer = handover.signer if handover is not None else None
        # In a cluster the token names this node (`sm_tokens.py`), so a resumption
        # that reaches another node knows whom to ask.
        token = signer.issue(session.bare) if signer is not None else new_token()
    seconds = policy.resume_seconds(el.get("max"))
    # <enabled/> leaves before anything counted: the first counted stanza is the next.
    send_nonza(conn, sm_queue.enabled(token, seconds))
    conn.sm = ManagedStream(policy, token, seconds, lambda: overflowed(conn))
    conn.count_stanzas()
    if token is not None:
        policy.table.add(token, session.bare, conn)
    rewire(conn, session)


def client_state(conn: C2SConnection, session: C2SSession, name: str) -> None:
    """XEP-0352 `<inactive/>` / `<active/>`."""
    feature = feature_of(conn.ctx.stream_features, ClientStateFeature, conn.domain)
    if feature is None or feature.limits is None or name not in ("active", "inactive"):
        conn.close_stream(
            StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, "client state indication is off"
        )
        return
    if name == "inactive":
        if conn.csi is None:
            conn.csi = ClientStateFilter(
                session.write, session.username, session.bare, feature.limits
            )
            rewire(conn, session)
        return
    csi, conn.csi = conn.csi, None
    if csi is not None:
        rewire(conn, session)
        held = csi.take()
        for data in held:
            session.write(data)


# ---------------------------------------------------------------- hibernation


def hibernate(conn: C2SConnection, sm: ManagedStream) -> None:
    """The connection dropped: keep the session for `resume_seconds` (module docstring)."""
    session = conn.session
    assert session is not None
    sm.stop()
    csi, conn.csi = conn.csi, None
    rewire(conn, session)  # closed: writes only queue from now on
    if csi is not None:
        for data in csi.take():  # what was held is owed too, after a resumption
            session.write(data)
    conn.resume_timer = conn._loop.call_later(sm.resume_seconds, lambda: end_hibernated(conn))
    conn.ctx.router.directory.mark_hibernated(session, True)
    _fire(conn, SessionHibernated(session))
    log.info(
        "%s hibernated for %d s (%d unacknowledged)", session.full, sm.resume_seconds, len(sm.queue)
    )


def _fire(conn: C2SConnection, event: SessionHibernated | SessionResumed) -> None:
    """Tell the modules (push wakes the device of a hibernated session)."""
    pending = conn.ctx.hooks.fire(event)
    if pending is not None:
        conn.ctx.spawn(pending)


def hand_over(conn: C2SConnection) -> None:
    """The old side of a resumption (`Resumable.hand_over`)."""
    timer, conn.resume_timer = conn.resume_timer, None
    if timer is not None:
        timer.cancel()
        conn.ctx.connections.discard(conn)
    sm, conn.sm = conn.sm, None
    if sm is not None:
        sm.stop()
    conn.csi = None  # what it held, the resuming side took first
    conn.session = None
    conn._moved = True
    if not conn.closed:
        # XEP-0198 §5: "the old stream SHOULD be terminated"; RFC 6120 §4.9.3.3:
        # conflict, a new stream replaced it.
        conn.close_stream(StreamErrorCondition.CONFLICT, "the session was resumed elsewhere")


# ---------------------------------------------------------------- resumption


def resume(conn: C2SConnection, action: ResumeRequested) -> None:
    """`<resume previd h/>` on a new, authenticated stream (XEP-0198 §5)."""
    negotiation = conn.negotiation
    policy = _policy(conn)
    if policy is None:
        failed = sm_queue.failed(StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED)
        conn._apply(negotiation.resume_failed(failed))
        return
    h = parse_h(action.h) if action.h is not None else None
    if action.h is not None and h is None:
        failed = sm_queue.failed(StanzaErrorCondition.BAD_REQUEST, text="bad 'h'")
        conn._apply(negotiation.resume_failed(failed))
        return
    owner = f"{negotiation.authenticated_user}@{conn.domain}"
    found = policy.table.find(action.previd, owner)
    handover = policy.handover
    if isinstance(found, Ended) and handover is not None:
        node = handover.locate(action.previd, owner)
        if node is not None:  # another node's session (`sm_takeover.py`)
            from chatgate.xmpp.sm_takeover import resume_elsewhere

            conn._spawn(resume_elsewhere(conn, policy, handover, action.previd, owner, h, node))
            return
    if isinstance(found, Ended):
        failed = sm_queue.failed(StanzaErrorCondition.ITEM_NOT_FOUND, found.h)
        conn._apply(negotiation.resume_failed(failed))
        return
    old: C2SConnection = found  # type: ignore[assignment]
    sm, session = old.sm, old.session
    if sm is None or session is None:  # ending as we speak
        failed = sm_queue.failed(StanzaErrorCondition.ITEM_NOT_FOUND)
        conn._apply(negotiation.resume_failed(failed))
        return
    if h is not None:
        try:
            sm.queue.ack(h)
        except HandledCountTooHigh as exc:
            count_too_high(conn, exc)
            return
    held = old.csi.take() if old.csi is not None else []
    old.hand_over()
    conn.session = session
    conn.sm = sm
    sm.on_overflow = lambda: overflowed(conn)
    session.close = conn.close_stream
    session.transport = conn.transport.name
    session.tls_active = conn.facts.tls_active
    conn.count_stanzas()
    conn._established()
    conn._apply(negotiation.resumed())
    assert sm.token is not None
    send_nonza(conn, sm_queue.resumed(sm.token, sm.queue.inbound))
    policy.table.add(sm.token, session.bare, conn)
    # Everything unacknowledged again, in order: already counted, so straight to
    # the output; then what a CSI filter held on the old stream, counted now.
    output = conn.output.element
    for data in sm.queue.unacked():
        output(data)
    rewire(conn, session)
    for data in held:
        session.write(data)
    sm.request_ack()
    conn.ctx.router.directory.mark_hibernated(session, False)
    _fire(conn, SessionResumed(session))
    log.info("%s resumed (%d stanzas resent)", session.full, len(sm.queue))
