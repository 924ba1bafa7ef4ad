"""XEP-0163 Personal Eventing Protocol on a small XEP-0060 core: the module.

Owns: reading pubsub IQs (`http://jabber.org/protocol/pubsub` and `#owner`)
addressed to an account's bare JID (or without 'to', the user's own), handing
them to `PepService`, and following sessions' availability and caps
(`BecameAvailable`, `SessionClosed`) for implicit subscriptions.
Must not: deliver except through the router (`notifier.Audience`), or let anyone
but the owner change a node (forbidden).

What is not offered (answered feature-not-implemented with XEP-0060's
`<unsupported feature=.../>`): explicit subscriptions, affiliation and
subscription management, collection nodes, instant nodes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from chatgate.modules.base import DiscoFeature, IqHandler, OnEvent, Registration, Spec
from chatgate.modules.dataforms import find_form
from chatgate.modules.pep.caps import CapsCache, Interest
from chatgate.modules.pep.config import (
    NODE_CONFIG,
    FormRejected,
    NodeConfig,
    config_form,
    read_options,
)
from chatgate.modules.pep.errors import PubsubError, error_iq
from chatgate.modules.pep.notifier import Audience
from chatgate.modules.pep.presence_hash import AdvertisedHashes, PhotoHashes
from chatgate.modules.pep.service import PUBSUB, Limits, PepService
from chatgate.modules.pep.vcard_avatar import AvatarToVCard
from chatgate.modules.pep.vcard_to_avatar import CONVERSION, VCardToAvatar
from chatgate.modules.roster.module import RosterModule
from chatgate.modules.vcard import VCardStored
from chatgate.storage.repositories.owner import Owner
from chatgate.storage.repositories.pubsub import PubsubRepository
from chatgate.vocabulary.errors import StanzaError
from chatgate.vocabulary.errors import StanzaErrorCondition as C
from chatgate.vocabulary.ns import PUBLISH_OPTIONS
from chatgate.xml.element import Element
from chatgate.xmpp.events import BecameAvailable, SessionBound, SessionClosed
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.sm_events import SessionMovedIn, SessionMovedOut
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.context import ServerContext

PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"

#: reads one IQ and returns the result's payload (raises StanzaError)
Action = Callable[[C2SSession, Element], Awaitable[Element | None]]

#: XEP-0060 §10 features (on the account's bare JID, XEP-0163 §1)
FEATURES = (
    "http://jabber.org/protocol/pubsub",
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#presence-notifications",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-items",
)


class PepOptions(BaseModel):
    """``[modules.pep]``: XEP-0163 personal eventing."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """Offer PEP on every account (XEP-0163, with XEP-0084 avatars, XEP-0402 bookmarks
    and XEP-0223 private storage on it). When off, pubsub requests get service-unavailable."""
    max_item_bytes: Annotated[int, Field(ge=1024, le=1_048_576)] = 131_072
    """Largest item payload (serialized, UTF-8 bytes); larger ones get not-acceptable
    with payload-too-big. An avatar's data node (XEP-0084) needs its image's base64 size."""
    max_items_per_node: Annotated[int, Field(ge=1, le=10_000)] = 256
    """Most items a node may keep (what max_items 'max' means)."""
    max_nodes_per_account: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Most nodes one account may have; past it, resource-constraint."""
    caps_cache_entries: Annotated[int, Field(ge=16, le=1_000_000)] = 4096
    """Verified XEP-0115 caps (ver -> features) kept in memory."""
    caps_query_timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    """Seconds to wait for a client's disco#info answer about its caps."""
    avatar_to_vcard: bool = True
    """Copy an avatar published on PEP (XEP-0084) into the user's vCard PHOTO
    (XEP-0398, PEP to vCard), for clients that know only vCard avatars."""
    vcard_to_avatar: bool = True
    """Publish a vCard PHOTO a client sets (XEP-0054) as its XEP-0084 avatar on PEP
    (XEP-0398, vCard to PEP). With avatar_to_vcard also on, the account's disco#info
    lists urn:xmpp:pep-vcard-conversion:0."""


class PersonalEventing:
    name: ClassVar[str] = "pep"
    depends: ClassVar[tuple[str, ...]] = ("roster",)
    implements: ClassVar[tuple[Spec, ...]] = (
        Spec("XEP-0060", "1.26.0"),
        Spec("XEP-0163", "1.2.2"),
        Spec("XEP-0084", "1.1.4"),
        Spec("XEP-0223", "1.1.1"),
        Spec("XEP-0398", "0.3.1"),
    )
    Options: ClassVar[type[BaseModel]] = PepOptions

    def __init__(self) -> None:
        self.service: PepService | None = None

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, PepOptions)
        if not options.enabled:
            return
        roster_module = ctx.modules["roster"].module
        assert isinstance(roster_module, RosterModule) and roster_module.service is not None
        self.rosters = roster_module.service
        interest = Interest(CapsCache(options.caps_cache_entries))
        self.audience = Audience(
            ctx.router, interest, ctx.spawn, ask_timeout=options.caps_query_timeout
        )
        self.audience.on_learned = self._learned
        if ctx.cluster is not None and ctx.peers.clustered:
            from chatgate.cluster.pep import PepFanout

            # Events reach the interested sessions of every node.
            self.fanout = PepFanout(ctx.peers, self.audience)
        limits = Limits(
            max_item_bytes=options.max_item_bytes,
            max_items_cap=options.max_items_per_node,
            max_nodes=options.max_nodes_per_account,
            default=NodeConfig(),
        )
        self.limits = limits
        self.service = PepService(
            PubsubRepository(ctx.db.engine), self.rosters, self.audience, limits
        )
        self.ctx = ctx
        if options.avatar_to_vcard:
            self.service.observers.append(AvatarToVCard(self.service, ctx.db.vcards))
        if options.vcard_to_avatar:
            yield OnEvent(VCardStored, VCardToAvatar(self.service))
        if options.avatar_to_vcard and options.vcard_to_avatar:
            yield DiscoFeature(CONVERSION, on_account=True)
            yield from self._advertise_hashes(ctx)
        for kind in ("get", "set"):
            yield IqHandler(PUBSUB, kind, self._pubsub, to_server=True, to_account=True)
            yield IqHandler(PUBSUB_OWNER, kind, self._owner, to_server=True, to_account=True)
        for var in FEATURES:
            yield DiscoFeature(var, on_account=True)
        yield OnEvent(BecameAvailable, self._available)
        yield OnEvent(SessionClosed, self._closed)
        # A session resumed on another node (XEP-0198 across a cluster) is that
        # node's to notify from then on.
        yield OnEvent(SessionMovedOut, self._closed)
        yield OnEvent(SessionMovedIn, self._moved_in)

    def _advertise_hashes(self, ctx: ServerContext) -> Iterable[Registration]:
        """XEP-0398 §4: the avatar hash in every available presence of a user."""
        assert self.service is not None
        hashes = AdvertisedHashes(PhotoHashes(self.service), ctx.spawn)
        self.hashes = hashes
        ctx.router.presence_stamp = hashes.stamp_presence
        self.service.observers.append(hashes.observe)
        fanout = getattr(self, "fanout", None)
        if fanout is not None:
            fanout.on_event = hashes.changed_elsewhere
        yield OnEvent(SessionBound, hashes.bound)
        yield OnEvent(SessionClosed, hashes.ended)
        yield OnEvent(SessionMovedOut, hashes.ended)
        # After the vCard-to-PEP copy (priority 0), which publishes unobserved.
        yield OnEvent(VCardStored, lambda event: hashes.changed(event.owner), priority=-10)

    # ------------------------------------------------------------ presence

    async def _available(self, event: BecameAvailable) -> None:
        if self.audience.available(event.session):
            await self._learned(event.session)

    def _closed(self, event: SessionClosed | SessionMovedOut) -> None:
        self.audience.closed(event.session)

    def _moved_in(self, event: SessionMovedIn) -> None:
        """The session had its last items on its old node: only note it (and ask its
        caps here if this node does not know them; it then gets the items again,
        as after any caps discovery)."""
        if event.session.available:
            self.audience.available(event.session)

    async def _learned(self, session: C2SSession) -> None:
        """The session's features are known: the last items it wants, of itself and
        of the contacts whose presence it sees."""
        assert self.service is not None
        features = self.audience.interest.features(session.full)
        if not features or not any(f.endswith("+notify") for f in features):
            return
        roster = await self.rosters.read((session.username, session.domain))
        owners: list[Owner] = [(session.username, session.domain)]
        for contact in roster.presence_sources:
            local, _, domain = contact.partition("@")
            if domain in self.ctx.hosts and local:
                owners.append((local, domain))
        await self.service.send_last_items(session, owners)

    # ------------------------------------------------------------ IQs

    async def _pubsub(self, session: C2SSession, iq: Element) -> None:
        await self._answer(session, iq, self._pubsub_action)

    async def _owner(self, session: C2SSession, iq: Element) -> None:
        await self._answer(session, iq, self._owner_action)

    async def _answer(self, session: C2SSession, iq: Element, action: Action) -> None:
        try:
            payload = await action(session, iq)
        except StanzaError as exc:
            session.send(error_iq(iq, session.full, exc))
            return
        reply = iq_result(iq, payload)
        reply.attrs["to"] = session.full
        session.send(reply)

    def _target(self, session: C2SSession, iq: Element) -> tuple[Owner, bool]:
        """The account whose PEP the IQ is for, and whether it is the sender's own."""
        to = iq.get("to")
        if not to:
            return (session.username, session.domain), True
        bare, _, resource = to.partition("/")
        local, at, domain = bare.partition("@")
        if not at or resource:
            # XEP-0163 lives on accounts' bare JIDs; the server itself is no pubsub
            # service (RFC 6120 §8.4: what nobody here offers is service-unavailable).
            raise PubsubError(C.SERVICE_UNAVAILABLE, None, "no pubsub service here")
        owner = (local, domain)
        return owner, owner == (session.username, session.domain)

    async def _pubsub_action(self, session: C2SSession, iq: Element) -> Element | None:
        assert self.service is not None
        owner, own = self._target(session, iq)
        pubsub = iq.find("pubsub", PUBSUB)
        assert pubsub is not None
        actions = [c for c in pubsub.children if isinstance(c, Element) and c.ns == PUBSUB]
        kind = iq.get("type")
        if not actions:
            raise PubsubError(C.BAD_REQUEST, None, "no pubsub action")
        action = actions[0]
        if kind == "get":
            if action.name == "items":
                return _wrap(await self._items(session, owner, action))
            if action.name in ("subscriptions", "affiliations") and own:
                return _wrap(await self._own_lists(owner, action.name))
            raise PubsubError(
                C.FEATURE_NOT_IMPLEMENTED, "unsupported", feature=_feature(action.name)
            )
        if not own:
            if action.name in ("subscribe", "unsubscribe"):
                raise PubsubError(C.FEATURE_NOT_IMPLEMENTED, "unsupported", feature="subscribe")
            raise PubsubError(C.FORBIDDEN, None, "only the owner changes a PEP node")
        if action.name == "publish":
            return _wrap(await self._publish(session, owner, pubsub, action))
        if action.name == "retract":
            node = action.get("node") or ""
            notify = (action.get("notify") or "").lower() in ("1", "true")
            items = action.find_all("item", PUBSUB)
            if len(items) != 1:
                raise PubsubError(C.BAD_REQUEST, "item-required")
            await self.service.retract(
                owner, node, items[0].get("id") or "", notify, session=session
            )
            return None
        if action.name == "create":
            changes = self._form_changes(pubsub.find("configure", PUBSUB), NODE_CONFIG)
            await self.service.create(owner, action.get("node") or "", changes)
            return None
        raise PubsubError(C.FEATURE_NOT_IMPLEMENTED, "unsupported", feature=_feature(action.name))

    async def _owner_action(self, session: C2SSession, iq: Element) -> Element | None:
        assert self.service is not None
        owner, own = self._target(session, iq)
        if not own:
            raise PubsubError(C.FORBIDDEN, None, "only the owner manages a PEP node")
        pubsub = iq.find("pubsub", PUBSUB_OWNER)
        assert pubsub is not None
        actions = [c for c in pubsub.children if isinstance(c, Element) and c.ns == PUBSUB_OWNER]
        if not actions:
            raise PubsubError(C.BAD_REQUEST, None, "no pubsub#owner action")
        action, kind = actions[0], iq.get("type")
        node = action.get("node") or ""
        if action.name == "configure" and kind == "get":
            config = await self.service.config_of(owner, node)
            if config is None:
                raise PubsubError(C.ITEM_NOT_FOUND)
            answer = Element("pubsub", PUBSUB_OWNER)
            answer.sub("configure", attrs={"node": node}).append(
                config_form(config, self.limits.max_items_cap)
            )
            return answer
        if action.name == "default" and kind == "get":
            answer = Element("pubsub", PUBSUB_OWNER)
            answer.sub("default").append(
                config_form(self.limits.default, self.limits.max_items_cap)
            )
            return answer
        if kind == "set" and action.name == "configure":
            form = _form(action)
            if form is None:
                raise PubsubError(C.BAD_REQUEST, None, "no configuration form")
            if form.get("type") == "cancel":
                return None
            await self.service.configure(owner, node, self._read(form, NODE_CONFIG))
            return None
        if kind == "set" and action.name == "delete":
            await self.service.delete(owner, node, session)
            return None
        if kind == "set" and action.name == "purge":
            await self.service.purge(owner, node, session)
            return None
        raise PubsubError(C.FEATURE_NOT_IMPLEMENTED, "unsupported", feature=_feature(action.name))

    async def _publish(
        self, session: C2SSession, owner: Owner, pubsub: Element, action: Element
    ) -> Element:
        assert self.service is not None
        items = action.find_all("item", PUBSUB)
        if len(items) > 1:
            raise PubsubError(C.BAD_REQUEST, "invalid-payload", "one item per publish")
        options_el = pubsub.find("publish-options", PUBSUB)
        options = None
        if options_el is not None:
            form = _form(options_el)
            if form is not None:
                try:
                    options = read_options(
                        form, PUBLISH_OPTIONS, max_items_cap=self.limits.max_items_cap
                    )
                except FormRejected as exc:
                    if exc.condition == "bad-request":
                        raise PubsubError(C.BAD_REQUEST, "invalid-options", exc.text) from None
                    # XEP-0060 §7.1.5: options the service cannot meet
                    raise PubsubError(C.CONFLICT, "precondition-not-met", exc.text) from None
        node = action.get("node") or ""
        item_id = await self.service.publish(
            owner, session.full, node, items[0] if items else None, options, session=session
        )
        answer = Element("publish", PUBSUB, {"node": node})
        answer.sub("item", attrs={"id": item_id})
        return answer

    async def _items(self, session: C2SSession, owner: Owner, action: Element) -> Element:
        assert self.service is not None
        if not await self.ctx.account_exists(*owner):
            raise PubsubError(C.ITEM_NOT_FOUND)
        max_items = action.get("max_items")
        last = None
        if max_items is not None:
            if not max_items.isdigit() or int(max_items) < 1:
                raise PubsubError(C.BAD_REQUEST, None, "max_items must be a positive integer")
            last = min(int(max_items), self.limits.max_items_cap)
        ids = [i.get("id") or "" for i in action.find_all("item", PUBSUB)] or None
        if ids is not None and len(ids) > self.limits.max_items_cap:
            raise PubsubError(C.NOT_ACCEPTABLE, None, "too many item ids")
        return await self.service.items(
            owner, session.bare, action.get("node") or "", last=last, ids=ids
        )

    async def _own_lists(self, owner: Owner, name: str) -> Element:
        """XEP-0060 §5.6/§5.7: the owner has no explicit subscriptions and owns
        every node of its PEP."""
        assert self.service is not None
        answer = Element(name, PUBSUB)
        if name == "affiliations":
            for stored in await self.service.repository.nodes(owner):
                answer.sub("affiliation", attrs={"node": stored.node, "affiliation": "owner"})
        return answer

    def _form_changes(self, holder: Element | None, form_type: str) -> dict[str, object]:
        if holder is None:
            return {}
        form = _form(holder)
        if form is None:
            return {}
        return self._read(form, form_type)

    def _read(self, form: Element, form_type: str) -> dict[str, object]:
        try:
            changes = read_options(form, form_type, max_items_cap=self.limits.max_items_cap)
        except FormRejected as exc:
            condition = C.BAD_REQUEST if exc.condition == "bad-request" else C.NOT_ACCEPTABLE
            raise PubsubError(condition, None, exc.text) from None
        return changes


def _wrap(child: Element | None) -> Element:
    pubsub = Element("pubsub", PUBSUB)
    if child is not None:
        pubsub.append(child)
    return pubsub


def _form(holder: Element) -> Element | None:
    return find_form(holder)


def _feature(action: str) -> str:
    return {
        "subscriptions": "retrieve-subscriptions",
        "affiliations": "retrieve-affiliations",
        "subscribe": "subscribe",
        "unsubscribe": "subscribe",
        "options": "subscription-options",
    }.get(action, action)
