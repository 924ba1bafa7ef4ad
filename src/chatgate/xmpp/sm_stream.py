"""XEP-0198 on a live session: the counting write path, ack requests, and what
happens to stanzas the client never acknowledged.

`ManagedStream` is the state a stream-managed session carries from connection
to connection (`xmpp/c2s.py` moves it on resumption): its `AckQueue`, its
resumption token, and the write callable installed as `C2SSession.write` (below
a CSI filter, if one is installed).  Every stanza written to the session is
queued, then forwarded to the connection's output; while the session is
hibernated (`forward` is None) it is only queued.  Only sessions that enabled
stream management have one: the others' `write` is still the output itself.

Ack requests (`<r/>`, §4): after `ack_after_stanzas` stanzas since the last
request, or `ack_after_seconds` after a stanza went out unasked.  One loop timer
per session at most, armed only while something is unacknowledged.

When the session ends for good (hibernation expired, the stream closed, the
queue overflowed) `reroute_unacked` treats what was never acknowledged as RFC
6121 §8.5.3.2.1 says of a message to a full JID whose resource is gone: chat,
normal and headline messages go to the account's bare JID (another available
resource, or offline storage through `MessageUndeliverable`) -- or, when a new
session bound the same resource (its client came back without resuming), to
that session, as §8.5.3.1 delivers anything addressed to a connected resource;
IQ get/set get a
`service-unavailable` error back to a local sender; presence, errors and group
chat messages are dropped (XEP-0198 §4: "treat unacknowledged stanzas in the
same way that it would treat a stanza sent to an unavailable resource").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from chatgate.jid import JID, InvalidJID
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaErrorCondition
from chatgate.xml.framed import parse_fragment
from chatgate.xmpp.sm_queue import AckQueue, request
from chatgate.xmpp.stanza import error_reply

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.xml.element import Element
    from chatgate.xmpp.router import Router
    from chatgate.xmpp.session import C2SSession
    from chatgate.xmpp.sm_resumption import SmPolicy

log = logging.getLogger(__name__)

#: stored stanzas are parsed back without the stream's stanza limit (they were ours)
_PARSE_DEPTH = 1000
_REROUTED = ("chat", "normal", "headline")
_REQUEST = request()


class ManagedStream:
    """One session's stream management (see the module docstring)."""

    __slots__ = (
        "_loop",
        "_over",
        "_since_request",
        "_timer",
        "forward",
        "on_overflow",
        "policy",
        "queue",
        "resume_seconds",
        "token",
    )

    def __init__(
        self,
        policy: SmPolicy,
        token: str | None,
        resume_seconds: int,
        on_overflow: Callable[[], None],
    ) -> None:
        self.policy = policy
        self.queue = AckQueue(policy.limits)
        #: the SM-ID when the session may be resumed
        self.token = token
        self.resume_seconds = resume_seconds
        #: the connection's output, None while hibernated
        self.forward: Callable[[bytes], None] | None = None
        #: called (once, from the loop) when the queue went over its bounds
        self.on_overflow = on_overflow
        self._loop = asyncio.get_running_loop()
        self._since_request = 0
        self._timer: asyncio.TimerHandle | None = None
        self._over = False

    def write(self, data: bytes) -> None:
        """The session's write path: queue, then send (when connected)."""
        if not self.queue.push(data) and not self._over:
            # Not now: this runs inside someone else's delivery, which may be
            # iterating the session table that closing would change.
            self._over = True
            self._loop.call_soon(self.on_overflow)
        forward = self.forward
        if forward is not None:
            forward(data)
            since = self._since_request = self._since_request + 1
            if since >= self.policy.ack_after_stanzas:
                self.request_ack()
            elif self._timer is None:
                # One timer at a time, never cancelled while traffic flows: when it
                # fires it asks only if something went out unasked since.
                self._timer = self._loop.call_later(
                    self.policy.ack_after_seconds, self._request_later
                )

    def request_ack(self) -> None:
        """Send `<r/>` now (when connected and something is unacknowledged)."""
        self._since_request = 0
        forward = self.forward
        if forward is not None and len(self.queue):
            forward(_REQUEST)

    def _request_later(self) -> None:
        self._timer = None
        if self._since_request:
            self.request_ack()

    def stop(self) -> None:
        """No more requests: the connection went (hibernated, or ended)."""
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        self._since_request = 0


def reroute_unacked(ctx: ServerContext, session: C2SSession, items: list[bytes]) -> int:
    """Handle what `session` (no longer bound) never acknowledged, as undelivered
    (see the module docstring); returns how many messages went back to routing."""
    rerouted: list[Element] = []
    router = ctx.router
    for data in items:
        try:
            stanza = parse_fragment(
                data, max_stanza_bytes=max(len(data), 1), max_depth=_PARSE_DEPTH
            )
        except Exception:  # our own bytes: should not happen, and must not stop the rest
            log.warning("an unacknowledged stanza of %s could not be read back", session.full)
            continue
        if stanza.ns != ns.CLIENT:
            continue
        kind = stanza.attrs.get("type", "normal" if stanza.name == "message" else "")
        if stanza.name == "message" and kind in _REROUTED:
            rerouted.append(stanza)
        elif stanza.name == "iq" and kind in ("get", "set"):
            sender = stanza.attrs.get("from", "")
            try:
                origin = JID.parse(sender)
            except InvalidJID:
                continue
            if origin.resource and origin.domain in router.domains:
                reply = error_reply(stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
                reply.attrs["from"] = session.full
                reply.attrs["to"] = sender
                router.deliver_to_full(origin, reply)
    if items:
        log.info(
            "%s ended with %d unacknowledged stanzas (%d messages rerouted)",
            session.full,
            len(items),
            len(rerouted),
        )
    if rerouted:
        full = JID(session.username, session.domain, session.resource)
        ctx.spawn(_deliver_in_order(router, full, rerouted))
    return len(rerouted)


async def _deliver_in_order(router: Router, full: JID, messages: list[Element]) -> None:
    """Each message to the session's full JID if a new session holds that resource
    now (RFC 6121 §8.5.3.1: a connected resource gets what is addressed to it; the
    client came back and bound it again), else to the bare JID (§8.5.3.2.1); the
    next only once the last one is delivered or stored, so offline storage keeps
    them in the order the client was sent them."""
    bare = JID(full.local, full.domain, "")
    for stanza in messages:
        try:
            if router.deliver_to_full(full, stanza):
                continue
            pending = router.deliver_message_to_bare(stanza, bare)
            if pending is not None:
                await pending
        except Exception:  # one failure (the database away) must not drop the rest
            log.exception("an unacknowledged message to %s could not be rerouted", full)
