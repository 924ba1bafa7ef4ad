"""XEP-0198 resumption across the nodes of a cluster: the conversation between the
node a client resumes on (B) and the node that holds its session (A).

Theory of operation
-------------------
The token names A (`xmpp/sm_tokens.py`, authenticated).  B, having found that
the `<resume/>` is not for one of its own sessions, asks A over `ctx.peers`:

1. ``sm.take`` {token, owner, h} -> A finds the token for that account (anyone
   else's, or an ended one: ``gone``, as on one node), acknowledges `h` (too high:
   ``too_high``, A keeps the session), takes the session from its connection (a
   still-open old stream is closed with `<conflict/>`, XEP-0198 §5 / RFC 6120
   §4.9.3.3; a hibernated one's timer is stopped) and answers its state: full
   JID, directory sid, counts, presence, priority, roster interest, directed
   presences.  The session stays bound on A meanwhile, every stanza written to it
   queued: nothing sent to the full JID during the handover is lost.  A answers
   ``moved`` {node} for a token whose session it handed over before.
2. B moves the full JID to itself in the directory (`ClusterSessionDirectory.
   take_over`: only if A still holds it under that sid; no conflict policy, no
   CLOSE to A, and the other nodes see it available throughout).
3. ``sm.done`` {token} -> A releases the session from its directory (no
   unavailable presence, no offline storage: the session goes on) and answers
   what the client has not acknowledged, oldest first.  From then on a stanza
   for the full JID that reaches A is sent on to B (the directory's mirror).
4. ``sm.abort`` (a one-way message) when B gives up between 1 and 3 (the client
   left, the claim failed): A ends the session as its timeout would have
   (unavailable presence, unacknowledged messages to offline storage).  A ends it
   the same way if step 3 does not come within `HANDOVER_TIMEOUT` (B died).  B
   also aborts when step 3's answer does not reach it: A keeps what it answered
   for `HANDED_KEPT` seconds and sends those messages on (offline storage, or
   another resource), since B ends the session without them.

Exactly one of two concurrent resumptions wins: step 1 runs on A without an
await, and takes the token out of A's table.  Bounds: the state is small; the
queue is bounded by `max_unacked_bytes` (past it A ends the session, and step 3
answers ``gone``); requests are bounded by the peers layer.

This module owns the wire format and A's bookkeeping; the connection work on
both sides is `xmpp/sm_takeover.py`'s, and the answers (`Taken`, `Refusal`,
`Handed`) are in `xmpp/sm_handover_types.py`, with the `Handover` protocol the
connections use of `SessionHandover` (so they never import this module).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chatgate.xmpp import sm_stream, sm_takeover
from chatgate.xmpp.sm_events import (
    MAX_CARRY,
    SessionMovedOut,
    SessionMovingOut,
    carried_size,
)
from chatgate.xmpp.sm_handover_types import Handed, HandoverFailed, Refusal, Taken
from chatgate.xmpp.sm_queue import HandledCountTooHigh
from chatgate.xmpp.sm_resumption import Ended

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.peers import Peers
    from chatgate.vocabulary.errors import StreamErrorCondition
    from chatgate.xmpp.session import C2SSession
    from chatgate.xmpp.sm_resumption import ResumptionTable
    from chatgate.xmpp.sm_stream import ManagedStream
    from chatgate.xmpp.sm_tokens import TokenSigner

log = logging.getLogger(__name__)

TAKE = "sm.take"
DONE = "sm.done"
ABORT = "sm.abort"
#: seconds A waits for step 3 before it ends the session itself
HANDOVER_TIMEOUT = 15.0
#: seconds B waits for each answer of A
REQUEST_TIMEOUT = 5.0
#: tokens whose session this node handed over, remembered for later resumptions
MOVED_REMEMBERED = 16_384
#: seconds A keeps what step 3 answered, in case B never got the answer (it aborts),
#: and the bytes it keeps so at most (past them the oldest go first)
HANDED_KEPT = 3 * REQUEST_TIMEOUT
HANDED_BYTES = 64 * 1024 * 1024
#: a request bigger than this is no request of ours
_MAX_REQUEST = 4096


class MovingDirectory(Protocol):
    """What the handover needs of the session directory (the cluster's has it)."""

    def sid_of(self, session: C2SSession) -> str | None: ...


@dataclass(slots=True)
class _Outgoing:
    """A session of this node between steps 1 and 3."""

    node: str
    owner: str
    session: C2SSession
    sm: ManagedStream
    timer: asyncio.TimerHandle


@dataclass(slots=True)
class _Handed:
    """What A answered in step 3 for a session B took, kept a while (B may abort)."""

    node: str
    session: C2SSession
    unacked: list[bytes]
    size: int
    timer: asyncio.TimerHandle


class SessionHandover:
    """Both ends of the conversation for this node (see the module docstring); the
    connections see it as a `Handover`."""

    def __init__(self, ctx: ServerContext, peers: Peers, table: ResumptionTable) -> None:
        self.ctx = ctx
        self.peers = peers
        self.table = table
        #: issues and reads this installation's tokens (set at start: a database read)
        self.signer: TokenSigner | None = None
        self._outgoing: dict[str, _Outgoing] = {}
        self._moved: OrderedDict[str, tuple[str, str]] = OrderedDict()
        #: token -> what step 3 answered (`_Handed`): rerouted if B aborts after
        #: all; each for `HANDED_KEPT` s, at most `HANDED_BYTES` in all
        self._handed: OrderedDict[str, _Handed] = OrderedDict()
        self._handed_bytes = 0
        peers.on_request(TAKE, self._take)
        peers.on_request(DONE, self._done)
        peers.on_message(ABORT, self._abort)

    # ------------------------------------------------------------ B: asking

    def locate(self, token: str, owner: str) -> str | None:
        """The node to ask for `owner`'s `token`, when it is not this one's."""
        moved = self._moved.get(token)
        if moved is not None and moved[0] == owner:
            return moved[1]
        if self.signer is None:
            return None
        node = self.signer.node_of(token, owner)
        return node if node is not None and node != self.peers.name else None

    async def take(self, node: str, token: str, owner: str, h: int | None) -> Taken | Refusal:
        """Step 1.  Raises `PeerUnreachable`/`PeerRefused` (A dead, Redis away)."""
        payload = json.dumps({"token": token, "owner": owner, "h": h}).encode()
        answer = json.loads(await self.peers.request(node, TAKE, payload, REQUEST_TIMEOUT))
        if "full" in answer:
            return Taken(
                full=str(answer["full"]),
                sid=str(answer["sid"]),
                inbound=int(answer["inbound"]),
                acked=int(answer["acked"]),
                resume_seconds=int(answer["resume_seconds"]),
                available=bool(answer["available"]),
                priority=int(answer["priority"]),
                presence=answer["presence"],
                interested=bool(answer["interested"]),
                directed=tuple(str(j) for j in answer["directed"]),
            )
        too_high = answer.get("too_high")
        return Refusal(
            h=answer.get("h"),
            moved=answer.get("moved"),
            too_high=(int(too_high[0]), int(too_high[1])) if too_high else None,
        )

    async def done(self, node: str, token: str) -> Handed:
        """Step 3: what the client has not acknowledged, and what A's modules
        carried (`xmpp/sm_events.py`).  Raises `HandoverFailed`, `PeerUnreachable`
        or `PeerRefused`."""
        answer = json.loads(await self.peers.request(node, DONE, token.encode(), REQUEST_TIMEOUT))
        if "unacked" not in answer:
            raise HandoverFailed(f"node {node} no longer holds the session")
        carry = answer.get("carry") or {}
        return Handed(
            [str(item).encode() for item in answer["unacked"]],
            {str(k): str(v) for k, v in carry.items()},
        )

    def abort(self, node: str, token: str) -> None:
        """Step 4: give the session back to A's ending."""
        self.peers.send(node, ABORT, token.encode())

    def resumed_here(self, token: str) -> None:
        """The session of `token` is this node's now: forget where it went before."""
        self._moved.pop(token, None)

    # ------------------------------------------------------------ A: answering

    async def _take(self, sender: str, payload: bytes) -> bytes:
        request = _request(payload)
        token, owner, h = request["token"], request["owner"], request["h"]
        found = self.table.find(token, owner)
        if isinstance(found, Ended):
            moved = self._moved.get(token)
            if moved is not None and moved[0] == owner and moved[1] != sender:
                return _dump({"moved": moved[1]})
            return _dump({"h": found.h})
        directory: Any = self.ctx.router.directory
        try:
            detached = sm_takeover.detach(found, h, directory.sid_of)
        except HandledCountTooHigh as exc:
            return _dump({"too_high": [exc.h, exc.sent]})
        if detached is None:
            return _dump({"h": None})
        session, sm, sid = detached
        self.table.remove(token, owner, sm.queue.inbound)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(HANDOVER_TIMEOUT, self._abandon, token, "no answer in time")
        self._outgoing[token] = _Outgoing(sender, owner, session, sm, timer)
        # Until step 3, whatever would end the session ends the handover (a new
        # binding of its resource, its account deleted, its queue overflowing).

        def close(condition: StreamErrorCondition | None = None, text: str = "") -> None:
            self._abandon(token, f"closed ({condition.value if condition else 'no error'})")

        session.close = close
        sm.on_overflow = lambda: self._abandon(token, "too many unacknowledged stanzas")
        log.info("%s: handing the session over to node %s", session.full, sender)
        return _dump(
            {
                "full": session.full,
                "sid": sid,
                "inbound": sm.queue.inbound,
                "acked": sm.queue.acked,
                "resume_seconds": sm.resume_seconds,
                "available": session.available,
                "priority": session.priority,
                "presence": sm_takeover.serialized(session.presence),
                "interested": session.interested,
                "directed": sorted(session.directed),
            }
        )

    async def _done(self, sender: str, payload: bytes) -> bytes:
        token = payload.decode(errors="replace")
        out = self._outgoing.get(token)
        if out is None or out.node != sender:
            return _dump({"gone": True})
        carry: dict[str, str] = {}
        await self.ctx.hooks.notify(SessionMovingOut(out.session, sender, carry))
        # Still ours to hand over: a close meanwhile (the account locked or
        # deleted, a conflict, an overflow, the timer) ended it here, and it
        # must not live on on the other node.
        if self._outgoing.get(token) is not out:
            return _dump({"gone": True})
        del self._outgoing[token]
        out.timer.cancel()
        if carried_size(carry) > MAX_CARRY:
            log.warning("%s: modules' state too big to carry: none carried", out.session.full)
            carry = {}
        unacked = sm_takeover.release_moved(self.ctx, out.session, out.sm)
        pending = self.ctx.hooks.fire(SessionMovedOut(out.session, sender))
        if pending is not None:
            self.ctx.spawn(pending)
        self._moved[token] = (out.owner, sender)
        self._moved.move_to_end(token)
        while len(self._moved) > MOVED_REMEMBERED:
            self._moved.popitem(last=False)
        self._keep_handed(token, sender, out.session, unacked)
        log.info("%s: session now served by node %s", out.session.full, sender)
        return _dump({"unacked": [data.decode() for data in unacked], "carry": carry})

    def _abort(self, sender: str, payload: bytes) -> None:
        token = payload.decode(errors="replace")
        out = self._outgoing.get(token)
        if out is not None and out.node == sender:
            self._abandon(token, f"node {sender} gave up")
            return
        handed = self._handed.get(token)
        if handed is None or handed.node != sender:
            return
        self._forget_handed(token)
        # B never got step 3's answer and ended the session without these.
        self._moved.pop(token, None)
        log.info(
            "%s: node %s did not get the session's queue: sent on", handed.session.full, sender
        )
        sm_stream.reroute_unacked(self.ctx, handed.session, handed.unacked)

    def _keep_handed(
        self, token: str, node: str, session: C2SSession, unacked: list[bytes]
    ) -> None:
        self._forget_handed(token)  # a token moves with its session: it may be back
        size = sum(len(data) for data in unacked)
        if size > HANDED_BYTES:
            return
        while self._handed and (
            self._handed_bytes + size > HANDED_BYTES or len(self._handed) >= MOVED_REMEMBERED
        ):
            self._forget_handed(next(iter(self._handed)))
        timer = asyncio.get_running_loop().call_later(HANDED_KEPT, self._forget_handed, token)
        self._handed[token] = _Handed(node, session, list(unacked), size, timer)
        self._handed_bytes += size

    def _forget_handed(self, token: str) -> None:
        handed = self._handed.pop(token, None)
        if handed is not None:
            self._handed_bytes -= handed.size
            handed.timer.cancel()

    def _abandon(self, token: str, why: str) -> None:
        """The handover did not complete: the session ends here for good."""
        out = self._outgoing.pop(token, None)
        if out is None:
            return
        out.timer.cancel()
        log.info("%s: handover to node %s abandoned (%s): ended", out.session.full, out.node, why)
        sm_takeover.end_detached(self.ctx, out.session, out.sm)


def _request(payload: bytes) -> dict[str, Any]:
    """Step 1's request, checked (a node of this cluster sent it, but a bug there
    must not become an exception here with a confusing text)."""
    if len(payload) > _MAX_REQUEST:
        raise ValueError("request too big")
    request = json.loads(payload)
    h = request.get("h")
    if (
        not isinstance(request, dict)
        or not isinstance(request.get("token"), str)
        or not isinstance(request.get("owner"), str)
        or not (h is None or (isinstance(h, int) and 0 <= h < 1 << 32))
    ):
        raise ValueError("malformed request")
    return request


def _dump(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer).encode()
