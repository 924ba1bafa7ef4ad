"""Who hears about a PEP node, and telling them (XEP-0163 §4.3, XEP-0060 §7.1.2).

Owns: the available sessions PEP knows of (`Audience`: one dict per account,
filled on `BecameAvailable`, emptied on `SessionClosed`; a session that went
unavailable is skipped, since the directory keeps its `available` flag), their
caps (`caps.Interest`), asking a session for the features behind its caps
(`Router.ask`), and writing event messages through `Router.deliver_to_full`.

In a cluster an Audience holds its own node's sessions only, and only ever asks
those (a reply to `Router.ask` arrives at the node its client is on): an event
is handed to every other node (`fanout`, `cluster/pep.py`), where that node's
Audience picks its own interested sessions.

Recipients of an event on a node of `owner` (XEP-0163 §4.3.1 "implicit
subscriptions"): the owner's own available resources, and each available
resource of every contact with a `from`/`both` subscription the node's access
model lets in, in both cases only if the resource's caps include
``<node>+notify``.  An unknown caps `ver` is asked once (several sessions with the
same `ver` wait for that one answer); once known, the session gets the last
published item of each node it wants of the accounts whose presence it sees
(XEP-0163 §4.3.5 / XEP-0060 §12.20: on presence and on caps discovery).

Bounds: questions waiting at once (`max_pending`), sessions waiting on one ver
(`_MAX_WAITERS`), the caps cache (bytes and entries), one record per session.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from chatgate.jid import JID
from chatgate.modules.pep.caps import Caps, Interest, caps_of
from chatgate.vocabulary import ns
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession

if TYPE_CHECKING:
    from chatgate.xmpp.router import Router

log = logging.getLogger(__name__)

PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
_MAX_WAITERS = 1000

#: the session that learned features -> the work to do for it then
Learned = Callable[[C2SSession], Awaitable[None]]
#: an event for the other nodes' sessions: (owner's bare JID, accounts, node, event)
Fanout = Callable[[str, list[str], str, Element], None]


class Audience:
    """The available sessions of this process, per bare JID, and what their caps say."""

    def __init__(
        self,
        router: Router,
        interest: Interest,
        spawn: Callable[[Awaitable[None]], None],
        *,
        ask_timeout: float = 10.0,
        max_pending: int = 1000,
    ) -> None:
        self.router = router
        self.interest = interest
        self._spawn = spawn
        self._timeout = ask_timeout
        self._max_pending = max_pending
        self._sessions: dict[str, dict[str, C2SSession]] = {}
        #: ver being asked -> the sessions waiting for its answer
        self._asking: dict[str, list[C2SSession]] = {}
        #: ver being asked -> (the full JID asked, the task asking it): a session
        #: that goes away takes its question with it (no wait for the timeout, at
        #: shutdown either)
        self._questions: dict[str, tuple[str, asyncio.Task[None]]] = {}
        #: what to do for a session once its features are known (set by the module)
        self.on_learned: Learned | None = None
        #: in a cluster, hands an event to the other nodes (`cluster/pep.py`), each
        #: of which tells its own interested sessions
        self.fanout: Fanout | None = None

    # ------------------------------------------------------------ sessions

    def available(self, session: C2SSession) -> bool:
        """Note an available session; True when its features are known now (False:
        unknown, and being asked when it has caps)."""
        self._sessions.setdefault(session.bare, {})[session.full] = session
        return self.refresh(session)

    def closed(self, session: C2SSession) -> None:
        resources = self._sessions.get(session.bare)
        if resources is not None and resources.get(session.full) is session:
            del resources[session.full]
            if not resources:
                del self._sessions[session.bare]
        self.interest.forget(session.full)
        for full, task in list(self._questions.values()):
            if full == session.full:
                task.cancel()

    def refresh(self, session: C2SSession) -> bool:
        """Read the session's caps from its last presence (it may have changed them
        since); True when its features are known, else asks for them."""
        caps = caps_of(session.presence)
        if not self.interest.note(session.full, caps):
            return caps is not None
        assert caps is not None
        self._discover(session, caps)
        return False

    async def online(self, bare: str) -> bool:
        """Whether `bare` has a session anywhere (this node, or in a cluster any
        node): only then can an event reach it."""
        if self.sessions_of(bare):
            return True
        if self.fanout is None:
            return False
        anywhere = self.router.directory.bound_anywhere(bare)
        if not isinstance(anywhere, bool):
            anywhere = await anywhere
        return anywhere

    def notify(self, owner_bare: str, bares: list[str], node: str, event: Element) -> None:
        """An event on `node` of `owner_bare`'s PEP for the sessions of `bares` whose
        caps ask for it: this node's at once, the other nodes' through `fanout`."""
        self.send_event(owner_bare, self.wanting(bares, node), event)
        if self.fanout is not None:
            self.fanout(owner_bare, bares, node, event)

    def sessions_of(self, bare: str) -> list[C2SSession]:
        """The available sessions of `bare` here."""
        return [s for s in self._sessions.get(bare, {}).values() if s.available]

    def wanting(self, bares: Iterable[str], node: str) -> list[C2SSession]:
        """The available sessions of `bares` whose caps ask for `node`+notify.  A
        session whose features are unknown is asked (and hears later, through
        `on_learned`)."""
        found = []
        for bare in bares:
            for session in self.sessions_of(bare):
                # Caps may have changed with a later presence: read them each time.
                if self.refresh(session) and self.interest.wants(session.full, node):
                    found.append(session)
        return found

    # ------------------------------------------------------------ asking

    def _discover(self, session: C2SSession, caps: Caps) -> None:
        waiting = self._asking.get(caps.ver)
        if waiting is not None:
            if len(waiting) < _MAX_WAITERS and session not in waiting:
                waiting.append(session)
            return
        if len(self._asking) >= self._max_pending:
            log.debug("caps questions full; %s not asked now", session.full)
            return
        self._asking[caps.ver] = [session]
        task = asyncio.ensure_future(self._ask(session, caps))
        self._questions[caps.ver] = (session.full, task)
        self._spawn(task)

    async def _ask(self, session: C2SSession, caps: Caps) -> None:
        """XEP-0115 §6.2: disco#info on node#ver to the session that announced it."""
        try:
            query = Element("query", ns.DISCO_INFO, {"node": f"{caps.node}#{caps.ver}"})
            iq = Element("iq", ns.CLIENT, {"type": "get"}, [query])
            try:
                reply = await self.router.ask(session.full, iq, self._timeout)
            except (LookupError, TimeoutError, OverflowError) as exc:
                log.debug("no caps answer from %s: %r", session.full, exc)
                return
            answer = reply.find("query", ns.DISCO_INFO)
            if reply.get("type") != "result" or answer is None:
                return
            self.interest.learned(session.full, caps, answer)
        finally:
            waiters = self._asking.pop(caps.ver, [])
            self._questions.pop(caps.ver, None)
        for waiter in waiters:
            if self.on_learned is not None and self.interest.features(waiter.full) is not None:
                await self.on_learned(waiter)

    # ------------------------------------------------------------ writing

    def send_event(self, owner_bare: str, sessions: Iterable[C2SSession], event: Element) -> None:
        """One headline message per session carrying `event` (XEP-0163 §4.3.3: from
        the owner's bare JID)."""
        for session in sessions:
            message = Element(
                "message",
                ns.CLIENT,
                {
                    "from": owner_bare,
                    "to": session.full,
                    "type": "headline",
                    "id": os.urandom(8).hex(),
                },
                [event.copy()],
            )
            self.router.deliver_to_full(JID.parse(session.full), message)
