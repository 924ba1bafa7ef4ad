"""The PEP operations on one account's nodes (XEP-0060 §6-8 as XEP-0163 narrows
them): publish, retract, retrieve, create, configure, delete, purge; who may read;
and which events each operation sends.

Owns the rules; storage is `PubsubRepository`, delivery is `notifier.Audience`.
Every refusal is a `PubsubError` with the condition XEP-0060 names for it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from chatgate.modules.pep.caps import NOTIFY
from chatgate.modules.pep.config import AccessModel, NodeConfig, SendLast, apply, matches
from chatgate.modules.pep.errors import PubsubError
from chatgate.modules.pep.notifier import PUBSUB_EVENT, Audience
from chatgate.modules.roster.service import RosterService
from chatgate.storage.records import Subscription
from chatgate.storage.repositories.owner import Owner
from chatgate.storage.repositories.pubsub import (
    ConfigChanged,
    NodeExists,
    NodeNotFound,
    PubsubRepository,
    StoredItem,
    TooManyNodes,
)
from chatgate.vocabulary.errors import StanzaErrorCondition as C
from chatgate.vocabulary.ns import PUBSUB
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize
from chatgate.xmpp.session import C2SSession

MAX_NAME = 1023  # node names and item ids (the columns' size)
MAX_WANTED = 500


#: (owner, node, the session that made the change, None for the server itself)
Observer = Callable[[Owner, str, "C2SSession | None"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Limits:
    max_item_bytes: int
    max_items_cap: int
    max_nodes: int
    default: NodeConfig


def bare_of(owner: Owner) -> str:
    return f"{owner[0]}@{owner[1]}"


class PepService:
    def __init__(
        self,
        repository: PubsubRepository,
        rosters: RosterService,
        audience: Audience,
        limits: Limits,
    ) -> None:
        self.repository = repository
        self.rosters = rosters
        self.audience = audience
        self.limits = limits
        #: heard after the owner changed a node's items (publish, retract, purge,
        #: delete) through a client's request: (owner, node, session); the
        #: bookmarks module keeps XEP-0048 storage in step with XEP-0402 this way
        self.observers: list[Observer] = []

    async def _changed(self, owner: Owner, node: str, session: C2SSession | None) -> None:
        for observer in self.observers:
            await observer(owner, node, session)

    # ------------------------------------------------------------ access

    async def config_of(self, owner: Owner, node: str) -> NodeConfig | None:
        stored = await self.repository.node(owner, node)
        return NodeConfig.from_json(stored.config) if stored is not None else None

    async def may_read(self, owner: Owner, config: NodeConfig, who: str) -> PubsubError | None:
        """None when `who` (a bare JID) may retrieve items and hear events of a node
        with `config` (XEP-0060 §6.1.3, §6.5.9), else the error to answer."""
        if who == bare_of(owner) or config.access_model is AccessModel.OPEN:
            return None
        if config.access_model is AccessModel.WHITELIST:
            return PubsubError(C.NOT_ALLOWED, "closed-node")
        item = await self.rosters.item(owner, who)
        subscribed = item is not None and item.subscription in (
            Subscription.FROM,
            Subscription.BOTH,
        )
        if config.access_model is AccessModel.PRESENCE:
            if subscribed:
                return None
            return PubsubError(C.NOT_AUTHORIZED, "presence-subscription-required")
        # roster: in one of the allowed groups (and, as for presence, subscribed)
        if subscribed and item is not None and set(item.groups) & set(config.roster_groups_allowed):
            return None
        return PubsubError(C.NOT_AUTHORIZED, "not-in-roster-group")

    async def audience_of(self, owner: Owner, config: NodeConfig, node: str) -> list[str]:
        """The accounts whose sessions may hear an event on `node` now: the owner and
        each contact online (on any node) that the access model lets in.  Which of
        their sessions hear it is each session's node's to say (`notifier`)."""
        owner_bare = bare_of(owner)
        bares = [owner_bare]
        if config.access_model is not AccessModel.WHITELIST:
            roster = await self.rosters.read(owner)
            for contact in roster.presence_subscribers:
                if not await self.audience.online(contact):
                    continue
                if await self.may_read(owner, config, contact) is None:
                    bares.append(contact)
        return bares

    # ------------------------------------------------------------ items

    async def publish(
        self,
        owner: Owner,
        publisher: str,
        node: str,
        item: Element | None,
        options: dict[str, object] | None,
        *,
        session: C2SSession | None = None,
        observe: bool = True,
    ) -> str:
        """Publish one item (XEP-0060 §7.1); returns its id.  `options` are the
        publish-options preconditions (§7.1.5), already read from their form."""
        _check_name(node)
        if item is None:
            raise PubsubError(C.BAD_REQUEST, "item-required")
        item_id = item.get("id") or os.urandom(12).hex()
        if len(item_id) > MAX_NAME:
            raise PubsubError(C.NOT_ACCEPTABLE, None, "the item id is too long")
        payloads = [c for c in item.children if isinstance(c, Element)]
        if len(payloads) > 1:
            raise PubsubError(C.BAD_REQUEST, "invalid-payload")
        if not payloads:
            # XEP-0163 nodes deliver payloads: an item without one means nothing.
            raise PubsubError(C.BAD_REQUEST, "payload-required")
        xml = serialize(payloads[0], parent_ns="")
        if len(xml.encode()) > self.limits.max_item_bytes:
            raise PubsubError(
                C.NOT_ACCEPTABLE,
                "payload-too-big",
                f"an item may take at most {self.limits.max_item_bytes} bytes",
            )
        stored = await self.repository.node(owner, node)
        if stored is None:
            config = self.limits.default
            if options:
                config = _replace(config, options)
            expected = None
        else:
            config = NodeConfig.from_json(stored.config)
            if options and not matches(config, options):
                raise PubsubError(
                    C.CONFLICT,
                    "precondition-not-met",
                    "the node's configuration does not match the publish-options",
                )
            expected = stored.config
        record = StoredItem(item_id, publisher, xml, datetime.now(UTC))
        try:
            await self.repository.publish(
                owner,
                node,
                record,
                create_config=config.to_json(),
                expected_config=expected,
                max_items=config.max_items,
                max_nodes=self.limits.max_nodes,
                store=config.persist_items,
            )
        except TooManyNodes as exc:
            raise PubsubError(C.RESOURCE_CONSTRAINT, None, str(exc)) from None
        except ConfigChanged:
            raise PubsubError(
                C.CONFLICT, "precondition-not-met", "the node was reconfigured meanwhile"
            ) from None
        event = _items_event(
            node, [_event_item(item_id, payloads[0] if config.deliver_payloads else None)]
        )
        self.audience.notify(
            bare_of(owner), await self.audience_of(owner, config, node), node, event
        )
        if observe:
            await self._changed(owner, node, session)
        return item_id

    async def retract(
        self,
        owner: Owner,
        node: str,
        item_id: str,
        notify: bool,
        *,
        session: C2SSession | None = None,
        observe: bool = True,
    ) -> None:
        """XEP-0060 §7.2: delete one item; with `notify`, subscribers hear it."""
        _check_name(node)
        if not item_id:
            raise PubsubError(C.BAD_REQUEST, "item-required")
        config = await self.config_of(owner, node)
        if config is None:
            raise PubsubError(C.ITEM_NOT_FOUND)
        try:
            found = await self.repository.retract(owner, node, item_id)
        except NodeNotFound:
            raise PubsubError(C.ITEM_NOT_FOUND) from None
        if not found:
            raise PubsubError(C.ITEM_NOT_FOUND, None, "no such item")
        if notify:
            event = Element("event", PUBSUB_EVENT)
            event.sub("items", attrs={"node": node}).sub("retract", attrs={"id": item_id})
            self.audience.notify(
                bare_of(owner), await self.audience_of(owner, config, node), node, event
            )
        if observe:
            await self._changed(owner, node, session)

    async def items(
        self, owner: Owner, who: str, node: str, *, last: int | None, ids: Sequence[str] | None
    ) -> Element:
        """XEP-0060 §6.5: the <items/> answer for `who` (a bare JID)."""
        _check_name(node)
        config = await self.config_of(owner, node)
        if config is None:
            raise PubsubError(C.ITEM_NOT_FOUND)
        refusal = await self.may_read(owner, config, who)
        if refusal is not None:
            raise refusal
        try:
            stored = await self.repository.items(owner, node, last=last, ids=ids)
        except NodeNotFound:
            raise PubsubError(C.ITEM_NOT_FOUND) from None
        answer = Element("items", PUBSUB, {"node": node})
        for item in stored:
            answer.append(_stored_item(item, PUBSUB))
        return answer

    # ------------------------------------------------------------ nodes

    async def create(self, owner: Owner, node: str, changes: dict[str, object]) -> None:
        """XEP-0060 §8.1 (PEP: no instant nodes, XEP-0163 §7)."""
        _check_name(node, C.NOT_ACCEPTABLE)
        config = _replace(self.limits.default, changes)
        try:
            await self.repository.create(
                owner, node, config.to_json(), max_nodes=self.limits.max_nodes
            )
        except NodeExists:
            raise PubsubError(C.CONFLICT, None, "the node exists") from None
        except TooManyNodes as exc:
            raise PubsubError(C.RESOURCE_CONSTRAINT, None, str(exc)) from None

    async def configure(self, owner: Owner, node: str, changes: dict[str, object]) -> None:
        """XEP-0060 §8.2.4; fewer max_items drops the oldest items."""
        config = await self.config_of(owner, node)
        if config is None:
            raise PubsubError(C.ITEM_NOT_FOUND)
        config = _replace(config, changes)
        try:
            await self.repository.configure(owner, node, config.to_json(), config.max_items)
        except NodeNotFound:
            raise PubsubError(C.ITEM_NOT_FOUND) from None

    async def delete(self, owner: Owner, node: str, session: C2SSession | None = None) -> None:
        """XEP-0060 §8.4: subscribers hear <delete/> when the node says so."""
        config = await self.config_of(owner, node)
        if config is None:
            raise PubsubError(C.ITEM_NOT_FOUND)
        bares = await self.audience_of(owner, config, node) if config.notify_delete else []
        try:
            await self.repository.delete(owner, node)
        except NodeNotFound:
            raise PubsubError(C.ITEM_NOT_FOUND) from None
        event = Element("event", PUBSUB_EVENT)
        event.sub("delete", attrs={"node": node})
        self.audience.notify(bare_of(owner), bares, node, event)
        await self._changed(owner, node, session)

    async def purge(self, owner: Owner, node: str, session: C2SSession | None = None) -> None:
        """XEP-0060 §8.5."""
        config = await self.config_of(owner, node)
        if config is None:
            raise PubsubError(C.ITEM_NOT_FOUND)
        try:
            await self.repository.purge(owner, node)
        except NodeNotFound:
            raise PubsubError(C.ITEM_NOT_FOUND) from None
        event = Element("event", PUBSUB_EVENT)
        event.sub("purge", attrs={"node": node})
        self.audience.notify(
            bare_of(owner), await self.audience_of(owner, config, node), node, event
        )
        await self._changed(owner, node, session)

    # ------------------------------------------------------------ last items

    async def send_last_items(self, session: C2SSession, owners: Sequence[Owner]) -> None:
        """The last published item of each node of `owners` that `session` wants and
        may read (XEP-0163 §4.3.5: on presence and on caps discovery)."""
        features = self.audience.interest.features(session.full) or frozenset()
        # A client names as many +notify features as it likes: at most
        # MAX_WANTED nodes are looked at (real clients name a dozen or two).
        wanted = sorted(f[: -len(NOTIFY)] for f in features if f.endswith(NOTIFY))[:MAX_WANTED]
        for owner, stored in await self.repository.nodes_named(owners, wanted):
            config = NodeConfig.from_json(stored.config)
            if config.send_last_published_item is SendLast.NEVER:
                continue
            if await self.may_read(owner, config, session.bare) is not None:
                continue
            try:
                last = await self.repository.items(owner, stored.node, last=1)
            except NodeNotFound:
                continue
            if last:
                event = Element("event", PUBSUB_EVENT)
                items = event.sub("items", attrs={"node": stored.node})
                items.append(_stored_item(last[0], PUBSUB_EVENT, config.deliver_payloads))
                self.audience.send_event(bare_of(owner), [session], event)


def _check_name(node: str | None, condition: C = C.BAD_REQUEST) -> None:
    """XEP-0060 §7.1.3.3 (bad-request + nodeid-required); a create without a node
    is an instant node, which PEP does not offer: not-acceptable (§8.1.2)."""
    if not node:
        raise PubsubError(condition, "nodeid-required")
    if len(node) > MAX_NAME:
        raise PubsubError(C.NOT_ACCEPTABLE, None, "the node name is too long")


def _replace(config: NodeConfig, changes: dict[str, object]) -> NodeConfig:
    return apply(config, changes)


def _items_event(node: str, items: list[Element]) -> Element:
    event = Element("event", PUBSUB_EVENT)
    holder = event.sub("items", attrs={"node": node})
    for item in items:
        holder.append(item)
    return event


def _event_item(item_id: str, payload: Element | None) -> Element:
    item = Element("item", PUBSUB_EVENT, {"id": item_id})
    if payload is not None:
        item.append(payload.copy())
    return item


def _stored_item(stored: StoredItem, namespace: str, payload: bool = True) -> Element:
    item = Element("item", namespace, {"id": stored.item_id})
    if payload and stored.xml:
        data = stored.xml.encode()
        item.append(parse_fragment(data, "", max_stanza_bytes=len(data) + 1))
    return item
