"""Presence (RFC 6121 §4) and presence subscriptions (§3) between local accounts.

Broadcast is the hot part: an available presence is serialized once and written
to every available resource of every contact allowed to see it, using the
roster kept in memory for online accounts.  Subscription stanzas are decided
by the pure state machine in `modules/roster/subscription.py`; this module
stores, delivers and pushes what its `Outcome` says, in the order it says.

A service's domain that takes presence (an XEP-0114 component: a gateway, see
`Router.register_service`) is handled like a remote contact's server: directed
presence to its JIDs is remembered (unavailable follows), subscription stanzas
to them are recorded in the user's roster and handed to the service, and those
it sends back (`from_service`) are recorded as any contact's (RFC 6121 §3).
Until federation exists, presence for other domains is dropped (subscription
stanzas) or bounced with `remote-server-not-found` (directed presence).

Subscription handling holds the locks (`modules/roster/locks.py`) of both
accounts of the pair for the whole exchange (the user's side, delivery to the
contact's side and any automatic reply): everything a subscription stanza
changes is then decided on state no other change can alter meanwhile.

Blocking (XEP-0191) plugs in as a `PresenceFilter` the blocking module sets on
`filter`; without it (blocking off) every path below costs one attribute test.

Limits (`[limits]`), each answered with `resource-constraint` (type wait): a
subscription stanza whose outcome would add a roster item past
`max_roster_items` is refused and changes nothing; an inbound request past
`max_subscription_requests` is neither stored nor delivered and its sender is
told; directed presence to more than `max_directed_presences` entities per
session is refused and not routed.  Why that condition: see `QUOTA` in
`modules/roster/module.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, ClassVar, Protocol

from chatgate.jid import JID
from chatgate.modules.base import OnEvent, Registration, Spec
from chatgate.modules.roster.module import QUOTA, RosterModule
from chatgate.modules.roster.service import Owner, Roster, RosterService, bare
from chatgate.modules.roster.subscription import (
    Outcome,
    PairState,
    Step,
    SubscriptionStanza,
    inbound,
    outbound,
)
from chatgate.storage.records import RosterItem, Subscription
from chatgate.storage.repositories.roster import RosterLimitReached
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize
from chatgate.xmpp.events import (
    AccountRemoving,
    BecameAvailable,
    BecameUnavailable,
    PresenceMissed,
    RemoteSessionLost,
    SessionClosed,
)
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.sm_events import SessionArrived, SessionArriving
from chatgate.xmpp.stanza import error_reply

if TYPE_CHECKING:
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)

_SUBSCRIPTION_TYPES = {t.value: t for t in SubscriptionStanza}


def _presence_xml(sender: str, ptype: str) -> str:
    """A presence of `ptype` from `sender`, without 'to' (a subscription stanza)."""
    return serialize(Element("presence", ns.CLIENT, {"from": sender, "type": ptype}))


def _request_xml(contact: str) -> str:
    """A subscription request from `contact` (RFC 6121 §3.1.3)."""
    return _presence_xml(contact, "subscribe")


def _parse_priority(stanza: Element) -> int:
    """RFC 6121 §4.7.2.3: an integer in -128..127; anything else counts as 0."""
    el = stanza.find("priority", ns.CLIENT)
    if el is None:
        return 0
    try:
        value = int(el.text.strip())
    except ValueError:
        return 0
    return value if -128 <= value <= 127 else 0


class PresenceFilter(Protocol):
    """Which presence may pass between two accounts (XEP-0191 blocking supplies it):
    `visible` is asked on the synchronous broadcast paths and reads only what is
    in memory; `ready`/`load` bring an account's own rules into memory before its
    first broadcast; `hides` may read storage (subscription stanzas)."""

    def ready(self, bare: str) -> bool: ...

    async def load(self, bare: str) -> None: ...

    def visible(self, bare: str, others: Iterable[str]) -> Iterable[str]:
        """Those of the accounts `others` that may see `bare`'s presence and whose
        presence `bare` may see."""
        ...

    async def hides(self, bare: str, other: str) -> bool: ...


class PresenceModule:
    name: ClassVar[str] = "presence"
    #: set by the blocking module when it is loaded
    filter: PresenceFilter | None = None

    depends: ClassVar[tuple[str, ...]] = ("roster",)
    implements: ClassVar[tuple[Spec, ...]] = (Spec("RFC 6121", "§3, §4"),)

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        self.ctx = ctx
        roster_module = ctx.modules["roster"].module
        assert isinstance(roster_module, RosterModule) and roster_module.service is not None
        self.roster_module = roster_module
        self.rosters: RosterService = roster_module.service
        self.router = ctx.router
        self.directory = ctx.router.directory
        self.max_directed = ctx.config.limits.max_directed_presences
        ctx.router.presence_handler = self.handle
        ctx.router.service_presence = self.from_service
        self.rosters.requests_arrived.append(self._requests_arrived)
        self.rosters.request_withdrawn.append(self._request_withdrawn)
        #: requests read in for accounts whose session is being resumed here from
        #: another node, not yet reachable: handed to it once it has arrived
        self._held: dict[str, list[str]] = {}
        yield OnEvent(SessionClosed, self._session_closed, priority=100)
        yield OnEvent(AccountRemoving, self._account_removing)
        yield OnEvent(RemoteSessionLost, self._remote_session_lost)
        yield OnEvent(PresenceMissed, self._presence_missed)
        # Both before the roster module's (priority 0): a request its read of the
        # roster lets in is held for the arriving session, and the count of
        # arrivals (`RosterService.arrivals`) still holds this one when it lands.
        yield OnEvent(SessionArriving, self._session_arriving, priority=10)
        yield OnEvent(SessionArrived, self._session_arrived, priority=10)

    # ------------------------------------------------------------ from a local client

    def handle(self, origin: C2SSession, stanza: Element, to: JID | None) -> Awaitable[None] | None:
        ptype = stanza.attrs.get("type")
        if to is None:
            if ptype is None:
                return self._available(origin, stanza)
            if ptype == "unavailable":
                self._unavailable(origin, stanza)
                return self.ctx.hooks.fire(BecameUnavailable(origin))
            return None  # §4.7.1: other types without 'to' mean nothing to the server
        kind = _SUBSCRIPTION_TYPES.get(ptype or "")
        if kind is not None:
            return self._outbound_subscription(origin, stanza, str(to.bare), kind)
        if ptype == "probe":
            return None  # §4.3: probes are the server's business, not the client's
        self._directed(origin, stanza, to)
        return None

    def _available(self, origin: C2SSession, stanza: Element) -> Awaitable[None] | None:
        roster = self.rosters.cached((origin.username, origin.domain))
        flt = self.filter
        if roster is None or (flt is not None and not flt.ready(origin.bare)):
            return self._available_after_load(origin, stanza)
        return self._broadcast_available(origin, stanza, roster)

    async def _available_after_load(self, origin: C2SSession, stanza: Element) -> None:
        owner = (origin.username, origin.domain)
        roster = await self.rosters.load(owner)
        if self.filter is not None:
            await self.filter.load(origin.bare)
            # Another node's change may have been read in meanwhile: the copy now
            # in memory is the one whose requests this session has not been sent.
            roster = self.rosters.cached(owner) or roster
        pending = self._broadcast_available(origin, stanza, roster)
        if pending is not None:
            await pending

    def _broadcast_available(
        self, origin: C2SSession, stanza: Element, roster: Roster
    ) -> Awaitable[None] | None:
        """§4.2.2 initial presence and §4.4.2 subsequent presence: to subscribers and self."""
        initial = not origin.available
        stanza.attrs.pop("to", None)
        self.directory.mark_available(origin, _parse_priority(stanza), stanza)
        router = self.router
        data = serialize(stanza)
        flt = self.filter
        subscribers: Iterable[str] = roster.presence_subscribers
        if flt is not None:
            subscribers = flt.visible(origin.bare, subscribers)
        router.broadcast_presence(subscribers, data)
        router.broadcast_presence((origin.bare,), data)
        remote = roster.remote_subscribers(self.ctx.hosts)
        if remote:
            # Subscribers on an external component's domain (a gateway's users).
            router.presence_to_services(
                remote if flt is None else flt.visible(origin.bare, remote), data
            )
        if not initial:
            return None
        # §4.2.2 / §4.3: probe the contacts whose presence the user sees; local
        # contacts answer at once with the last presence of each available resource.
        sources: Iterable[str] = roster.presence_sources
        if flt is not None:
            sources = flt.visible(origin.bare, sources)
        for contact in sources:
            router.send_presence_of(contact, origin.full)
        # §3.1.3: requests that arrived while offline, from the roster in memory now;
        # one noted later reaches this session through `_deliver_request` or
        # `_requests_arrived`, never twice
        if roster.pending_in:
            self._write_requests(origin, roster, sorted(roster.pending_in))
        return self.ctx.hooks.notify(BecameAvailable(origin))

    def _unavailable(self, origin: C2SSession, stanza: Element) -> None:
        """§4.5.2: unavailable goes to subscribers, own resources and directed recipients."""
        was_available = origin.available
        self.directory.mark_unavailable(origin)
        stanza.attrs.pop("to", None)
        data = serialize(stanza)
        recipients: list[str] = []
        roster = self.rosters.cached((origin.username, origin.domain))
        if was_available and roster is not None:
            if self.filter is not None:
                recipients.extend(self.filter.visible(origin.bare, roster.presence_subscribers))
            else:
                recipients.extend(roster.presence_subscribers)
        recipients.append(origin.bare)  # its other available resources (not itself now)
        recipients.extend(origin.directed)
        origin.directed.clear()
        self.router.presence_to(recipients, data)  # each session once, in order

    def _directed(self, origin: C2SSession, stanza: Element, to: JID) -> None:
        """§4.6: presence addressed to one entity; remembered so unavailable follows."""
        to_service = False
        if to.domain not in self.ctx.hosts:
            to_service = self.router.takes_presence(to.domain)
            if not to_service:
                if stanza.attrs.get("type") != "error":
                    reply = error_reply(stanza, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND)
                    reply.attrs["to"] = origin.full
                    origin.send(reply)
                return
        if self.filter is not None and not self.filter.visible(origin.bare, (str(to.bare),)):
            return  # XEP-0191 §3.3: not to nor from a blocked entity, and no error
        ptype = stanza.attrs.get("type")
        if ptype is None:
            target = str(to)
            if target not in origin.directed:
                if len(origin.directed) >= self.max_directed:
                    # §4.6.3 obliges the server to send unavailable to every entity
                    # that got directed presence; one it cannot remember would keep
                    # seeing the user online forever, so the presence is refused
                    # rather than routed and forgotten.  Room comes back as the
                    # client sends directed unavailable (ejabberd answers "You have
                    # joined too many conferences", the same quota for MUC joins,
                    # with resource-constraint too).
                    reply = error_reply(
                        stanza,
                        QUOTA,
                        f"directed presence to more than {self.max_directed} entities",
                    )
                    reply.attrs["to"] = origin.full
                    origin.send(reply)
                    return
                origin.directed.add(target)
        elif ptype == "unavailable":
            origin.directed.discard(str(to))
        # As the client wrote it, 'to' included: to that resource, connected, or to
        # the bare JID's available resources; or to the service that serves it.
        if to_service:
            self.router.presence_to_service(stanza)
        elif to.resource:
            self.router.deliver_to_full(to, stanza)
        else:
            self.router.deliver_to_available(str(to), stanza)

    # ------------------------------------------------------------ subscriptions

    async def _outbound_subscription(
        self, origin: C2SSession, stanza: Element, contact: str, kind: SubscriptionStanza
    ) -> None:
        if contact == origin.bare:
            return
        if self.filter is not None and await self.filter.hides(origin.bare, contact):
            return  # XEP-0191 §3.3: presence to or from a blocked entity goes nowhere
        try:
            await self.process_outbound((origin.username, origin.domain), contact, kind)
        except RosterLimitReached as exc:
            # Subscribing, approving or pre-approving would add a roster item past
            # the account's quota: refused before anything was stored or routed,
            # with the roster set's condition (`QUOTA`).
            reply = error_reply(stanza, QUOTA, str(exc))
            reply.attrs["to"] = origin.full
            origin.send(reply)

    async def process_outbound(self, owner: Owner, contact: str, kind: SubscriptionStanza) -> None:
        """§3.x "user's server" side: the user sent `kind` to `contact`.

        Holds the locks of both accounts.  Raises RosterLimitReached, with
        nothing changed, when the outcome would add a roster item past the
        user's limit.
        """
        user = bare(owner)
        async with self.rosters.locks.hold(user, contact):
            await self._outbound_held(owner, user, contact, kind)

    async def _outbound_held(
        self, owner: Owner, user: str, contact: str, kind: SubscriptionStanza
    ) -> None:
        """`process_outbound` for a caller that holds the locks of `user` and `contact`."""
        state = await self._state(owner, contact)
        outcome = outbound(state, kind)
        await self._carry_out(owner, user, contact, state, outcome, kind, inbound_side=False)

    async def _account_removing(self, event: AccountRemoving) -> None:
        await self.withdraw_all((event.username, event.domain))

    async def withdraw_all(self, owner: Owner) -> None:
        """RFC 6121 §3.2/§3.3 for an account about to disappear (in-band <remove/>, the
        end of an anonymous identity): contacts stop seeing it and it stops seeing
        them, and no request to or from it stays pending, in stored and in-memory
        rosters alike."""
        user = bare(owner)
        for item in await self.ctx.db.roster.items(owner):
            if item.jid != user:
                await self.process_outbound(owner, item.jid, SubscriptionStanza.UNSUBSCRIBE)
                await self.process_outbound(owner, item.jid, SubscriptionStanza.UNSUBSCRIBED)
        for contact in await self.ctx.db.roster.pending_in(owner):
            await self.process_outbound(owner, contact, SubscriptionStanza.UNSUBSCRIBED)

    async def _process_inbound(self, recipient: str, sender: str, kind: SubscriptionStanza) -> None:
        """§3.x "contact's server" side: `sender` sent `kind` to local `recipient`.

        The caller holds the locks of `recipient` and `sender`.
        """
        local, _, domain = recipient.partition("@")
        if not await self.ctx.account_exists(local, domain):
            return  # RFC 6121 §8.5.1: presence to a missing account is ignored
        owner = (local, domain)
        state = await self._state(owner, sender)
        outcome = inbound(state, kind)
        try:
            await self._carry_out(owner, recipient, sender, state, outcome, kind, inbound_side=True)
        except RosterLimitReached as exc:
            # Only a new request can get here (nothing inbound adds a roster item):
            # the recipient already has `max_subscription_requests` unanswered.  The
            # request is neither stored nor delivered.  RFC 6121 would let us drop it
            # silently, but then the sender waits forever on a request nobody will
            # see; the error tells it the request did not arrive, and `wait` that
            # there may be room later, once the recipient answers some requests.
            # (It tells nothing new about the recipient: a message to a missing
            # account already bounces, RFC 6121 §8.5.1.)
            self._refuse_inbound(recipient, sender, kind, str(exc))

    def _refuse_inbound(
        self, recipient: str, sender: str, kind: SubscriptionStanza, text: str
    ) -> None:
        request = Element("presence", ns.CLIENT, {"from": sender, "to": recipient})
        request.attrs["type"] = kind.value
        reply = error_reply(request, QUOTA, text)
        reply.attrs.pop("to", None)
        if sender.rpartition("@")[2] in self.ctx.hosts:
            self._deliver_stanza(sender, reply)
        else:
            self.router.presence_to_services((sender,), serialize(reply))  # a component

    async def _state(self, owner: Owner, contact: str) -> PairState:
        item = await self.rosters.item(owner, contact)
        pending = await self.rosters.pending(owner, contact)
        return PairState(contact, item, pending)

    async def _carry_out(
        self,
        owner: Owner,
        user: str,
        contact: str,
        old: PairState,
        outcome: Outcome,
        kind: SubscriptionStanza,
        *,
        inbound_side: bool,
    ) -> None:
        version: int | None = None
        new = outcome.new_state
        # A request its sender withdraws (§3.1.3): the other nodes deliver the
        # withdrawal on the request's path, never before it (`_request_withdrawn`);
        # not when a roster push follows (a stale row), which must come after it
        withdrawal = (
            inbound_side
            and kind is SubscriptionStanza.UNSUBSCRIBE
            and old.pending_in
            and not new.pending_in
            and not outcome.roster_push
            and self.rosters.kept_elsewhere
        )
        for step in outcome.steps:
            if step is Step.STORE:
                if new.item is not None and new.item != old.item:
                    version = await self.rosters.put(owner, new.item)
                if new.pending_in != old.pending_in:
                    await self.rosters.set_pending(
                        owner, contact, new.pending_in, withdrawn=withdrawal
                    )
            elif step is Step.SEND_UNAVAILABLE_TO_CONTACT:
                self.router.send_unavailable_of(user, contact)
            elif step is Step.DELIVER:
                if inbound_side:
                    # Deliver to the user's available resources; a subscribe is also
                    # kept as pending_in and redelivered at next login (§3.1.3).
                    if kind is SubscriptionStanza.SUBSCRIBE:
                        self._deliver_request(user, contact)
                    elif withdrawal:
                        self.router.broadcast_presence_here(
                            (user,), _presence_xml(contact, kind.value)
                        )
                    else:
                        self._deliver_presence(user, contact, kind.value)
                else:
                    # §3.1.2: stamped with the user's bare JID, routed to the contact.
                    await self._to_contact(contact, user, kind)
            elif step is Step.AUTO_REPLY:
                assert outcome.auto_reply is not None
                await self._to_contact(contact, user, outcome.auto_reply)
            elif step is Step.ROSTER_PUSH:
                if new.item is not None:
                    if version is None:
                        version = await self.rosters.version(owner)
                    self.roster_module.push(owner, new.item, version)
            elif step is Step.SEND_PRESENCE_TO_CONTACT:
                self.router.send_presence_of(user, contact)
            elif step is Step.PROBE_CONTACT:
                self.router.send_presence_of(contact, user)

    async def _to_contact(self, contact: str, user: str, kind: SubscriptionStanza) -> None:
        """A subscription stanza from `user` to `contact`: the contact's side here
        for an account, the contact's service for a service's JID (which decides
        and answers, as a remote server would); dropped for any other domain."""
        domain = contact.rpartition("@")[2]
        if domain in self.ctx.hosts:
            await self._process_inbound(contact, user, kind)
        elif self.router.takes_presence(domain):
            stanza = Element(
                "presence", ns.CLIENT, {"from": user, "to": contact, "type": kind.value}
            )
            self.router.presence_to_service(stanza)

    def from_service(self, stanza: Element, sender: JID, to: JID) -> Awaitable[None] | None:
        """Presence from a JID on a service's domain (an external component) to an
        account: subscription stanzas are recorded as from any contact (§3, the
        "contact's server" side), a probe is answered when the sender may see the
        account's presence (§4.3.2), other presence is delivered (§4.6)."""
        ptype = stanza.attrs.get("type")
        kind = _SUBSCRIPTION_TYPES.get(ptype or "")
        if not to.local:
            return None  # presence to the server itself: nothing here takes it
        recipient = f"{to.local}@{to.domain}"
        if kind is not None:
            return self._inbound_from_service(recipient, str(sender.bare), kind)
        if ptype == "probe":
            return self._probe_from_service(recipient, str(sender))
        if to.resource:
            self.router.deliver_to_full(to, stanza)
        else:
            self.router.deliver_to_available(recipient, stanza)
        return None

    async def _inbound_from_service(
        self, recipient: str, sender: str, kind: SubscriptionStanza
    ) -> None:
        if self.filter is not None and await self.filter.hides(recipient, sender):
            return  # XEP-0191 §3.3: presence to or from a blocked entity goes nowhere
        async with self.rosters.locks.hold(recipient, sender):
            await self._process_inbound(recipient, sender, kind)

    async def _probe_from_service(self, recipient: str, sender: str) -> None:
        local, _, domain = recipient.partition("@")
        item = await self.rosters.item((local, domain), sender.partition("/")[0])
        if item is None or item.subscription not in (Subscription.FROM, Subscription.BOTH):
            return  # §4.3.2: not a subscriber: no answer (nor any hint the account exists)
        if self.filter is not None and await self.filter.hides(recipient, item.jid):
            return
        self.router.send_presence_of(recipient, sender)

    def _deliver_presence(self, to_bare: str, from_jid: str, ptype: str) -> None:
        self.router.broadcast_presence((to_bare,), _presence_xml(from_jid, ptype))

    def _deliver_stanza(self, to_bare: str, stanza: Element) -> None:
        """`stanza` (a presence without 'to') to the available resources of `to_bare`."""
        self.router.broadcast_presence((to_bare,), serialize(stanza))

    async def cancel_on_remove(self, owner: Owner, item: RosterItem) -> None:
        """RFC 6121 §2.5.2: removing a contact cancels both subscriptions first.

        The caller holds the locks of the owner and of `item.jid`.
        """
        user = bare(owner)
        pending_in = await self.rosters.pending(owner, item.jid)
        if item.subscription in (Subscription.TO, Subscription.BOTH) or item.ask:
            await self._outbound_held(owner, user, item.jid, SubscriptionStanza.UNSUBSCRIBE)
        if item.subscription in (Subscription.FROM, Subscription.BOTH) or pending_in:
            await self._outbound_held(owner, user, item.jid, SubscriptionStanza.UNSUBSCRIBED)

    # ------------------------------------------------------------ lifecycle

    def _deliver_request(self, user: str, contact: str) -> None:
        """§3.1.3: a request just stored to `user`'s available resources.  When other
        nodes keep rosters, to this node's only: each other node delivers it to its
        own once it has read the stored request (`_requests_arrived`), which holds
        however late it learns that a session there is available."""
        if self.rosters.kept_elsewhere:
            self.router.broadcast_presence_here((user,), _request_xml(contact))
        else:
            self.router.broadcast_presence((user,), _request_xml(contact))

    def _write_requests(self, session: C2SSession, roster: Roster, contacts: Iterable[str]) -> None:
        """The requests of `contacts` to show (`_open_requests`), to `session`."""
        for contact in self._open_requests(session.bare, roster, contacts):
            self.router.write_presence((session,), _request_xml(contact))

    def _requests_arrived(self, owner: Owner, contacts: list[str]) -> None:
        """Requests another node stored to `owner`: to its available sessions here."""
        user = bare(owner)
        held = self._held.get(user)
        if held is not None:
            held.extend(c for c in contacts if c not in held)
        sessions = self.directory.local.get(user)
        if not sessions or not any(s.available for s in sessions.values()):
            return  # none here; the next initial presence reads them with the roster
        roster = self.rosters.cached(owner)
        if roster is None:
            return
        for contact in self._open_requests(user, roster, contacts):
            self.router.broadcast_presence_here((user,), _request_xml(contact))

    def _session_arriving(self, event: SessionArriving) -> None:
        self._held.setdefault(f"{event.username}@{event.domain}", [])

    def _session_arrived(self, event: SessionArrived) -> None:
        """A session resumed from another node is bound here: the requests read in
        while it was on its way, which neither node could deliver to it (§3.1.3;
        the old node may have queued one too: it may come twice, but not never)."""
        user, owner = f"{event.username}@{event.domain}", (event.username, event.domain)
        others = self.rosters.arrivals(owner) > 1  # still on their way: keep the list
        held = self._held.get(user, []) if others else self._held.pop(user, [])
        session = event.session
        roster = self.rosters.cached(owner)
        if held and session is not None and session.available and roster is not None:
            self._write_requests(session, roster, [c for c in held if c in roster.pending_in])

    def _request_withdrawn(self, owner: Owner, contact: str) -> None:
        """Another node noted `contact` withdrawing its request to `owner` (§3.1.3):
        the `unsubscribe` to the available sessions here, after the request."""
        user = bare(owner)
        if self.filter is None or list(self.filter.visible(user, (contact,))):
            self.router.broadcast_presence_here((user,), _presence_xml(contact, "unsubscribe"))

    def _open_requests(self, user: str, roster: Roster, contacts: Iterable[str]) -> list[str]:
        """Those of the requests to `user` to show: not from a blocked contact, nor
        from one already approved (a stale request row)."""
        if self.filter is not None:
            contacts = self.filter.visible(user, contacts)
        shown = []
        for contact in contacts:
            item = roster.items.get(contact)
            if item is None or item.subscription not in (Subscription.FROM, Subscription.BOTH):
                shown.append(contact)
        return shown

    async def _remote_session_lost(self, event: RemoteSessionLost) -> None:
        """A session on a dead cluster node: what its stream's end would have sent
        (§4.5.2), to this node's sessions only (every node does its own)."""
        if not event.available:
            return
        local, _, domain = event.bare.partition("@")
        roster = await self.rosters.read((local, domain))
        stanza = Element("presence", ns.CLIENT, {"from": event.full, "type": "unavailable"})
        data = serialize(stanza)
        subscribers: Iterable[str] = roster.presence_subscribers
        if self.filter is not None:
            subscribers = self.filter.visible(event.bare, subscribers)
        self.router.broadcast_presence_here((*subscribers, event.bare), data)

    async def _presence_missed(self, event: PresenceMissed) -> None:
        """A contact on another node missed a change of this node's `sender` while
        Redis was unreachable: it gets the sender's presence as it is when this
        runs (never an older one), if it may see it: an available presence only
        if it is still a presence subscriber of the account (not a mere
        directed-presence recipient: what it was sent directly is not kept), and
        nothing a block hides (XEP-0191).  A sender that has ended, or is
        unavailable, sends unavailable (§4.5.2); one that moved to another node
        (XEP-0198) sends what that node announced of it."""
        bare, _, resource = event.sender.partition("/")
        recipient_bare, _, recipient_resource = event.recipient.partition("/")
        local, _, domain = bare.partition("@")
        roster = await self.rosters.read((local, domain))
        if self.filter is not None and await self.filter.hides(bare, recipient_bare):
            return
        # Nothing is awaited from here on: what is written is the sender's state now.
        directory = self.router.directory
        # Here, or moved to another node (XEP-0198): what the copy of it shows.
        session = directory.table.get(bare, {}).get(resource)
        if session is not None and session.available and session.presence is not None:
            if recipient_bare not in roster.presence_subscribers:
                return
            stanza = session.presence.copy()
            stanza.attrs["from"] = event.sender
            stanza.attrs.pop("to", None)
        else:
            stanza = Element("presence", ns.CLIENT, {"from": event.sender, "type": "unavailable"})
        target = directory.table.get(recipient_bare, {}).get(recipient_resource)
        if target is not None and target.available:
            self.router.write_presence((target,), serialize(stanza))

    def _session_closed(self, event: SessionClosed) -> None:
        """RFC 6121 §4.5.2 on a lost or closed stream: the server sends unavailable."""
        session = event.session
        if session.available or session.directed:
            stanza = Element("presence", ns.CLIENT, {"from": session.full, "type": "unavailable"})
            self._unavailable(session, stanza)
