"""Stanza routing and delivery (RFC 6120 §10, RFC 6121 §4, §8.5): who gets a stanza, or which error.

The router is the only way to deliver: a message or IQ a client sent (`route`),
and what modules send (to a full JID, to a bare JID by RFC 6121 §8.5, presence
broadcast to an account's available resources, probe answers, roster pushes).
Which sessions exist, and whether a new one may bind, is the session directory's
(`xmpp/directory.py`); the router reads its table of this process's sessions and
never changes it.  Presence stanzas go to the presence handler and IQs to the IQ
dispatcher, both supplied at assembly.  A service's domain that takes presence (an
external component, `register_service`) is treated like a remote contact's server:
presence for a JID on it goes to that service's presence sink, checked only where
no session matched (the broadcast to accounts has no check at all).

Routing is synchronous on the hot path (a message to an online resource is
stamped, looked up in two dicts, serialized once and written); only what needs
storage (offline storage, existence checks) returns an awaitable, which the
connection awaits in order.

It never parses bytes and never touches the database itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from chatgate.hooks import Hooks
from chatgate.jid import JID, InvalidJID
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaErrorCondition, StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.serialize import escape_attr, serialize
from chatgate.xmpp.directory import SessionDirectory
from chatgate.xmpp.session import STANZAS, C2SSession
from chatgate.xmpp.stages import StanzaStage
from chatgate.xmpp.stanza import error_reply

log = logging.getLogger(__name__)

Pending = Awaitable[None] | None
PresenceHandler = Callable[[C2SSession, Element, JID | None], Pending]
IqDispatch = Callable[[C2SSession, Element, JID | None], Pending]
AccountExists = Callable[[str, str], Awaitable[bool]]
ServiceHandler = Callable[[C2SSession, Element, JID], Pending]
#: Takes a serialized presence addressed to a JID on a service's domain (see
#: `Router.register_service`); never answers.
PresenceSink = Callable[[bytes], None]
#: Presence a service's JID (`sender`) sent to an account (`to`): subscription
#: stanzas and probes, which the presence module decides.
ServicePresence = Callable[[Element, JID, JID], Pending]


@dataclass(frozen=True, slots=True)
class MessageUndeliverable:
    """Hook (decide): a chat/normal message for a local account with no available
    resource. A handler returns True when it stored the message (XEP-0160)."""

    recipient: str  # bare JID
    stanza: Element


class Router:
    """Delivery to the sessions of the served domains (virtual hosts), by RFC 6121 §8.5."""

    def __init__(
        self,
        domains: str | frozenset[str],
        hooks: Hooks,
        account_exists: AccountExists,
        directory: SessionDirectory,
    ) -> None:
        #: every domain served here; stanzas to others need federation (not yet built)
        self.domains = frozenset((domains,)) if isinstance(domains, str) else domains
        self.hooks = hooks
        self.account_exists = account_exists
        #: who is bound (claims, releases, availability): `xmpp/directory.py`
        self.directory = directory
        # The directory's table (this process's sessions, and in a cluster stand-ins
        # for the others'), read on every delivery.
        self._local = directory.table
        self.presence_handler: PresenceHandler | None = None
        #: called on every presence a local client sends, before it is routed
        #: (broadcast, directed, to a service's domain such as MUC): XEP-0398 §4's
        #: avatar hash (`modules/pep/presence_hash.py`); synchronous, no I/O; it may
        #: return what to await first (the hash still being read), and is then
        #: called again
        self.presence_stamp: Callable[[C2SSession, Element], Awaitable[None] | None] | None = None
        self.iq_dispatch: IqDispatch | None = None
        #: services on domains of their own (`modules.base.ServiceDomain`): every
        #: stanza to such a domain goes to its handler
        self.services: dict[str, ServiceHandler] = {}
        #: the services that also take the presence the server sends on an account's
        #: behalf (external components: a gateway needs its users' presence), by domain
        self.presence_sinks: dict[str, PresenceSink] = {}
        #: the presence module's entry for subscription stanzas and probes from such
        #: a service's JIDs (set by the presence module)
        self.service_presence: ServicePresence | None = None
        #: what sees messages and IQs between accounts (`xmpp/stages.py`), in order;
        #: empty, routing takes its plain path
        self.stages: tuple[StanzaStage, ...] = ()
        #: IQs the server sent to a client and awaits the reply of, by (full JID, id)
        self._asked: dict[tuple[str, str], asyncio.Future[Element]] = {}

    def register_service(
        self, domain: str, handler: ServiceHandler, presence: PresenceSink | None = None
    ) -> None:
        """From now on every stanza to `domain`, or to any JID on it, goes to `handler`
        (a service that comes and goes at runtime, e.g. an XEP-0114 component).  A
        served domain or one another service holds is refused with ValueError.

        With `presence`, the domain is treated like a remote server whose users may
        be an account's contacts (a gateway): presence a client sends to it goes
        through the presence handler (subscriptions are recorded in the roster,
        directed presence is remembered), and the presence the server sends on an
        account's behalf (broadcasts to subscribers, probes, unavailable to the
        recipients of directed presence, subscription stanzas) is handed to
        `presence`, serialized and addressed (RFC 6121 §4; what Prosody and
        ejabberd deliver to components)."""
        if domain in self.domains or domain in self.services:
            raise ValueError(f"{domain} is already served here")
        self.services[domain] = handler
        if presence is not None:
            self.presence_sinks[domain] = presence

    def unregister_service(self, domain: str, handler: ServiceHandler) -> None:
        """Stop delivering `domain`'s stanzas to `handler`; a domain registered to
        another handler meanwhile is left alone."""
        if self.services.get(domain) == handler:
            del self.services[domain]
            self.presence_sinks.pop(domain, None)

    def use_directory(self, directory: SessionDirectory) -> None:
        """Deliver over another directory (the cluster's, joined at start before any
        session exists)."""
        self.directory = directory
        self._local = directory.table

    # ------------------------------------------------------------ routing

    def route(self, origin: C2SSession, stanza: Element) -> Pending:
        """Route a stanza sent by a local client (RFC 6120 §10.4, §10.5)."""
        STANZAS.received += 1
        # §8.1.2.1: the server stamps the full JID of the sender.
        stanza.attrs["from"] = origin.full
        if self.presence_stamp is not None and stanza.name == "presence":
            waiting = self.presence_stamp(origin, stanza)
            if waiting is not None:
                return self._route_when_stamped(waiting, origin, stanza)
        to_text = stanza.attrs.get("to")
        if to_text is None:
            to = None
        else:
            try:
                to = JID.parse(to_text)
            except InvalidJID as exc:
                return self._bounce(origin, stanza, StanzaErrorCondition.JID_MALFORMED, str(exc))
            if self.services:
                service = self.services.get(to.domain)
                if service is not None:
                    if (
                        stanza.name == "presence"
                        and to.domain in self.presence_sinks
                        and self.presence_handler is not None
                    ):
                        # A contact's server, as it were: the presence module
                        # records subscriptions and directed presence, then
                        # hands the stanza on (`presence_to_service`).
                        return self.presence_handler(origin, stanza, to)
                    return service(origin, stanza, to)
        name = stanza.name
        if name == "message":
            return self._route_message(origin, stanza, to)
        if name == "presence":
            if self.presence_handler is not None:
                return self.presence_handler(origin, stanza, to)
            return None
        if name == "iq":
            return self._route_iq(origin, stanza, to)
        origin.close(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, f"<{name}/> is not a stanza")
        return None

    async def _route_when_stamped(
        self, waiting: Awaitable[None], origin: C2SSession, stanza: Element
    ) -> None:
        """A presence that waited for what `presence_stamp` needed (the avatar hash
        of an account whose first session just bound) is routed then, stamped."""
        await waiting
        STANZAS.received -= 1  # counted once, by the first `route`
        pending = self.route(origin, stanza)
        if pending is not None:
            await pending

    def _route_message(self, origin: C2SSession, stanza: Element, to: JID | None) -> Pending:
        if to is None:
            # §10.3.1 no 'to': processed as if addressed to the sender's bare JID.
            to = JID(origin.username, origin.domain, "")
        if to.domain not in self.domains:
            return self._bounce(origin, stanza, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND)
        if not to.local:
            # A message to the server itself: nothing here handles it.
            return self._bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
        stages = self.stages
        if stages:
            for stage in stages:
                if not stage.routing(origin, stanza, to):
                    return None
        resources = self._local.get(f"{to.local}@{to.domain}")
        if to.resource and resources is not None:
            target = resources.get(to.resource)
            if target is not None:
                # §8.5.3.1: a connected resource gets any message addressed to it.
                STANZAS.sent += 1
                target.write(serialize(stanza).encode())
                if stages:
                    _delivered(stages, stanza, to, (target,))
                return None
        return self._message_to_bare(stanza, to, resources, origin, stages)

    def deliver_message_to_bare(
        self, stanza: Element, to: JID, origin: C2SSession | None = None
    ) -> Pending:
        """RFC 6121 §8.5.2: a message for a local account's bare JID `to` (its resource,
        if any, is ignored), from `origin` (None: from the server, nobody to bounce to).
        Returns what is left to await (offline storage, the existence check)."""
        resources = self._local.get(f"{to.local}@{to.domain}")
        return self._message_to_bare(stanza, to, resources, origin)

    def _message_to_bare(
        self,
        stanza: Element,
        to: JID,
        resources: Mapping[str, C2SSession] | None,
        origin: C2SSession | None,
        stages: tuple[StanzaStage, ...] = (),
    ) -> Pending:
        """§8.5.2 for a bare JID, or a full JID whose resource is gone (§8.5.3.2.1):
        the available resources of the highest non-negative priority get a chat or
        normal message, every non-negative one a headline; none of them: offline
        storage or an error (`_undeliverable`).  `stages` hear where it went."""
        mtype = stanza.attrs.get("type", "normal")
        if mtype == "groupchat":
            # §8.5.2.1.2 / §8.5.3.2.1: groupchat to a user is an error.
            return self._bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
        targets: list[C2SSession] = []
        if resources:
            best = -1
            for session in resources.values():
                if not session.available or session.priority < 0:
                    continue
                if mtype == "headline":
                    targets.append(session)  # §8.5.2.1.2: every non-negative resource
                elif session.priority > best:
                    best = session.priority
                    targets = [session]
                elif session.priority == best:
                    targets.append(session)
        if targets:
            data = serialize(stanza).encode()
            STANZAS.sent += len(targets)
            for session in targets:
                session.write(data)
            if stages:
                _delivered(stages, stanza, to, targets)
            return None
        if stages:
            _delivered(stages, stanza, to, ())
        if mtype == "error":
            return None  # §8.5.2.2.1: errors are never bounced or stored
        return self._undeliverable(stanza, to, mtype, origin)

    async def _undeliverable(
        self, stanza: Element, to: JID, mtype: str, origin: C2SSession | None
    ) -> None:
        bare = f"{to.local}@{to.domain}"
        if not await self.account_exists(to.local, to.domain):
            # §8.5.1: no such account.
            self._bounce_now(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return
        if mtype in ("chat", "normal"):
            stored = await self.hooks.decide(MessageUndeliverable(bare, stanza))
            if stored:
                return
        if mtype != "headline":
            # §8.5.2.2.1: not stored, so the sender learns it was not delivered.
            self._bounce_now(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)

    def _route_iq(self, origin: C2SSession, stanza: Element, to: JID | None) -> Pending:
        itype = stanza.attrs.get("type")
        if itype not in ("get", "set", "result", "error") or not stanza.attrs.get("id"):
            # RFC 6120 §8.2.3: type and id are required.
            return self._bounce(
                origin, stanza, StanzaErrorCondition.BAD_REQUEST, "iq needs id and type"
            )
        if to is not None and to.domain not in self.domains:
            return self._bounce(origin, stanza, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND)
        if self.stages and to is not None and to.local:
            for stage in self.stages:
                if not stage.routing(origin, stanza, to):
                    return None
        if to is not None and to.resource:
            target = self._local.get(f"{to.local}@{to.domain}", _NONE).get(to.resource)
            if target is not None:
                STANZAS.sent += 1
                target.write(serialize(stanza).encode())
                return None
            if itype in ("get", "set"):
                # §8.5.3.2.2 (RFC 6121): no such resource.
                return self._bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
            return None
        if itype in ("result", "error"):
            if self._asked and (to is None or not to.local):
                waiting = self._asked.pop((origin.full, stanza.attrs["id"]), None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(stanza)
            return None  # a reply to the server or an account nobody waits for
        if self.iq_dispatch is not None:
            return self.iq_dispatch(origin, stanza, to)
        return self._bounce(origin, stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)

    # ------------------------------------------------------------ the server asking

    async def ask(self, to_full: str, iq: Element, timeout: float = 10.0) -> Element:
        """Send `iq` (a get or set) from the server to the connected resource `to_full`
        and return its reply, a result or an error (e.g. the disco#info behind a
        XEP-0115 caps hash).  The server's own domain is the IQ's 'from', and its id
        is made here, unguessable, so no other client can answer in its place.

        Raises LookupError when that resource is not connected, TimeoutError when no
        reply comes within `timeout` seconds, and OverflowError when
        `MAX_PENDING_QUESTIONS` questions already wait (one client that never
        answers cannot grow this table without bound).  In a cluster only a resource
        bound to this node can be asked (a reply goes to the node its client is on):
        a resource on another node is LookupError at once, not a timeout.
        """
        if len(self._asked) >= MAX_PENDING_QUESTIONS:
            raise OverflowError("too many questions to clients are waiting for replies")
        full = JID.parse(to_full)
        if full.resource not in self.directory.local.get(f"{full.local}@{full.domain}", _NONE):
            raise LookupError(f"{to_full} is not connected to this node")
        iq.attrs["id"] = "q" + os.urandom(9).hex()
        iq.attrs["to"] = to_full
        iq.attrs["from"] = full.domain
        key = (to_full, iq.attrs["id"])
        reply: asyncio.Future[Element] = asyncio.get_running_loop().create_future()
        self._asked[key] = reply
        try:
            if not self.deliver_to_full(full, iq):
                raise LookupError(f"{to_full} is not connected")
            return await asyncio.wait_for(reply, timeout)
        finally:
            self._asked.pop(key, None)

    # ------------------------------------------------------------ delivery for modules

    def deliver_to_full(self, full: JID, stanza: Element) -> bool:
        """Write `stanza` as it is to one connected resource, available or not (RFC
        6121 §8.5.3.1); False when that resource is not connected."""
        target = self._local.get(f"{full.local}@{full.domain}", _NONE).get(full.resource)
        if target is None:
            return False
        STANZAS.sent += 1
        target.write(serialize(stanza).encode())
        return True

    def deliver_to_available(self, bare: str, stanza: Element) -> None:
        """Write `stanza` as it is (its 'to' kept) to every available resource of `bare`
        (directed presence to a bare JID, RFC 6121 §4.6)."""
        data = None
        for session in self._local.get(bare, _NONE).values():
            if session.available:
                if data is None:
                    data = serialize(stanza).encode()
                STANZAS.sent += 1
                session.write(data)

    def broadcast_presence(self, bares: Iterable[str], xml: str) -> None:
        """A presence serialized once (`xml`, without 'to') to every available resource
        of each bare JID in `bares`, each copy addressed to its resource (RFC 6121
        §4.2.2, §4.4.2).  A bare JID given twice is served twice."""
        local = self._local
        tail = xml[_PRESENCE_NAME:]
        sent = 0
        for bare in bares:
            resources = local.get(bare)
            if resources is not None:
                for session in resources.values():
                    if session.available:
                        sent += 1
                        session.write(f'<presence to="{escape_attr(session.full)}"{tail}'.encode())
        STANZAS.sent += sent

    def presence_to_services(self, jids: Iterable[str], xml: str) -> None:
        """A presence serialized once (`xml`, without 'to') to each JID in `jids` that
        is on a service's domain that takes presence (`register_service`), addressed
        to it; others are skipped.  What `broadcast_presence` is for accounts, for
        the contacts a caller knows are not on a served domain (`Roster.
        remote_subscribers`): the broadcast to accounts has no check of its own."""
        if self.presence_sinks:
            for jid in jids:
                self._presence_to_sink(jid, xml)

    def broadcast_presence_here(self, bares: Iterable[str], xml: str) -> None:
        """As `broadcast_presence`, to this process's sessions only (what each node
        does for a session lost with a dead node, so nobody gets it twice)."""
        local = self.directory.local
        _write_presence(
            [s for bare in bares for s in local.get(bare, _NONE).values() if s.available], xml
        )

    def write_presence(self, sessions: Iterable[C2SSession], xml: str) -> None:
        """A presence serialized once (`xml`, without 'to') to each of `sessions`,
        addressed to it (what the broadcasts do, for sessions a caller has chosen)."""
        _write_presence(sessions, xml)

    def presence_to(self, jids: Iterable[str], xml: str) -> None:
        """A presence serialized once (`xml`, without 'to') to what each JID names: a
        bare JID its available resources, a full JID that resource if connected; each
        session once, in the order first named (RFC 6121 §4.5.2: unavailable to
        subscribers, own resources and directed-presence recipients alike)."""
        seen: dict[int, C2SSession] = {}
        to_services: set[str] | None = None
        for jid in jids:
            sessions = self._sessions_named(jid)
            if sessions:
                for session in sessions:
                    seen.setdefault(id(session), session)
            elif self.presence_sinks:
                if to_services is None:
                    to_services = set()
                if jid not in to_services:
                    to_services.add(jid)
                    self._presence_to_sink(jid, xml)
        _write_presence(seen.values(), xml)

    def message_to(self, fulls: Iterable[str], xml: str) -> list[str]:
        """A message serialized once (`xml`, without 'to') to each connected full JID
        in `fulls`, each copy addressed to it (a room's groupchat to its occupants,
        XEP-0045 §7.4); returns the full JIDs that are not connected."""
        tail = xml[_MESSAGE_NAME:]
        local = self._local
        missing: list[str] = []
        sent = 0
        for full in fulls:
            bare, _, resource = full.partition("/")
            session = local.get(bare, _NONE).get(resource)
            if session is None:
                missing.append(full)
                continue
            sent += 1
            session.write(f'<message to="{escape_attr(full)}"{tail}'.encode())
        STANZAS.sent += sent
        return missing

    def send_presence_of(self, bare: str, to: str) -> None:
        """Each available resource of `bare` sends its last presence to `to` (a bare JID:
        its available resources; a full JID: that resource): the answer to a probe
        (RFC 6121 §4.3.2) and the presence a new subscriber gets (§3.1.5)."""
        resources = self._local.get(bare)
        if resources is None:
            if self.presence_sinks and self._sessions_named(to):
                # A contact on a service's domain answers for itself: probe it, from
                # the bare JID of whoever wants its presence (RFC 6121 §4.3.1), if
                # anyone is there to see the answer.
                asker = escape_attr(to.partition("/")[0])
                self._presence_to_sink(bare, f'<presence type="probe" from="{asker}"/>')
            return
        targets: list[C2SSession] | None = None
        for session in resources.values():
            if session.available and session.presence is not None:
                if targets is None:
                    targets = self._sessions_named(to)
                xml = serialize(session.presence)
                if targets:
                    _write_presence(targets, xml)
                elif self.presence_sinks:
                    self._presence_to_sink(to, xml)

    def send_unavailable_of(self, bare: str, to: str) -> None:
        """Each available resource of `bare` sends unavailable presence to the available
        resources of the bare JID `to` (a cancelled subscription, RFC 6121 §3.2.2)."""
        for session in self._local.get(bare, _NONE).values():
            if session.available:
                stanza = Element(
                    "presence", ns.CLIENT, {"from": session.full, "type": "unavailable"}
                )
                if self.presence_sinks and to not in self._local:
                    self._presence_to_sink(to, serialize(stanza))
                else:
                    self.broadcast_presence((to,), serialize(stanza))

    def takes_presence(self, domain: str) -> bool:
        """Whether `domain` is a service's that takes presence (`register_service`)."""
        return domain in self.presence_sinks

    def presence_to_service(self, stanza: Element) -> bool:
        """Hand a presence, its 'to' on a service's domain that takes presence, to that
        service as it is; False (nothing sent) when its domain is not one."""
        to = stanza.attrs.get("to", "")
        sink = self.presence_sinks.get(to.partition("/")[0].rpartition("@")[2])
        if sink is None:
            return False
        STANZAS.sent += 1
        sink(serialize(stanza).encode())
        return True

    def _presence_to_sink(self, jid: str, xml: str) -> None:
        """`xml` (a presence without 'to') to `jid`, when it is on a service's domain
        that takes presence; nothing otherwise."""
        sink = self.presence_sinks.get(jid.partition("/")[0].rpartition("@")[2])
        if sink is not None:
            STANZAS.sent += 1
            sink(f'<presence to="{escape_attr(jid)}"{xml[_PRESENCE_NAME:]}'.encode())

    def push(
        self,
        bare: str,
        payload: Element,
        also: Callable[[C2SSession], bool] | None = None,
    ) -> None:
        """An IQ set carrying `payload` to every resource of `bare` that asked for
        pushes (`C2SSession.interested`: it requested the roster, RFC 6121 §2.1.6),
        and to those `also` names (the resources that requested a XEP-0191
        blocklist), each with its own id."""
        for session in self._local.get(bare, _NONE).values():
            if session.interested or (also is not None and also(session)):
                iq = Element(
                    "iq",
                    ns.CLIENT,
                    {"type": "set", "id": "push" + os.urandom(6).hex(), "to": session.full},
                )
                iq.append(payload)
                session.send(iq)

    def _sessions_named(self, jid: str) -> list[C2SSession]:
        """A full JID's session if connected; a bare JID's available sessions."""
        bare, _, resource = jid.partition("/")
        resources = self._local.get(bare, _NONE)
        if resource:
            session = resources.get(resource)
            return [session] if session is not None else []
        return [s for s in resources.values() if s.available]

    def _bounce(
        self,
        origin: C2SSession | None,
        stanza: Element,
        condition: StanzaErrorCondition,
        text: str = "",
    ) -> Pending:
        """Bounce now; returns the nothing-pending a routing function returns."""
        self._bounce_now(origin, stanza, condition, text)
        return None

    def _bounce_now(
        self,
        origin: C2SSession | None,
        stanza: Element,
        condition: StanzaErrorCondition,
        text: str = "",
    ) -> None:
        # §8.3.1: never answer an error with an error.
        if origin is None or stanza.attrs.get("type") == "error":
            return
        reply = error_reply(stanza, condition, text)
        if reply.attrs.get("to") == origin.full or "to" not in reply.attrs:
            reply.attrs["to"] = origin.full
        origin.send(reply)


def _delivered(
    stages: tuple[StanzaStage, ...], stanza: Element, to: JID, targets: Sequence[C2SSession]
) -> None:
    """Tell every stage where a message went; one stage's failure is logged and the
    others still hear (the message is already delivered)."""
    for stage in stages:
        try:
            stage.delivered(stanza, to, targets)
        except Exception:
            log.exception("stage %r failed after delivering a message", stage)


#: At most this many server-to-client questions (`Router.ask`) wait at once.
MAX_PENDING_QUESTIONS = 10_000

#: What `.get(bare, _NONE)` gives for an account with no session here (no dict made).
_NONE: Mapping[str, C2SSession] = MappingProxyType({})
_PRESENCE_NAME = len("<presence")
_MESSAGE_NAME = len("<message")


def _write_presence(sessions: Iterable[C2SSession], xml: str) -> None:
    """Write one serialized <presence .../> (without 'to') to each session, addressed
    to it: each copy only gets its own 'to' spliced in after the element name."""
    tail = xml[_PRESENCE_NAME:]
    sent = 0
    for session in sessions:
        sent += 1
        session.write(f'<presence to="{escape_attr(session.full)}"{tail}'.encode())
    STANZAS.sent += sent
