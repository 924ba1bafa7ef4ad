"""Roster management (RFC 6121 §2) with roster versioning (XEP-0237, RFC 6121 §2.6).

Roster get returns the items (or nothing when the client's version is current),
roster set adds, updates or removes one item and pushes the change to every
interested resource of the account (§2.1.6).

Sizes are bounded by `[limits]`: the 'name' and each <group/> by characters,
the groups per item by count (RFC 6121 §2.3.3: `not-acceptable`), and the items
per account by `max_roster_items` (`QUOTA`, checked by storage in the
transaction that would add the item).  A roster set holds the account's lock
(and the contact's, for a removal, which also ends subscriptions) from its
read to its last write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from chatgate.jid import JID, InvalidJID
from chatgate.modules.base import (
    DiscoFeature,
    IqHandler,
    OnEvent,
    Registration,
    Spec,
    StreamFeature,
)
from chatgate.modules.roster.service import Owner, RosterLimits, RosterService, bare
from chatgate.storage.records import RosterItem, Subscription
from chatgate.storage.repositories.roster import RosterLimitReached
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.events import SessionClosed
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.sm_events import SessionArrived, SessionArriving
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.context import ServerContext


#: The condition for every count quota of rosters and presence (items, pending
#: requests, directed presence).  RFC 6121 names none for counts (§2.3.3 only
#: has `not-acceptable` for sizes).  resource-constraint (RFC 6120 §8.3.3.18,
#: type wait: "lacks the system resources necessary to service the request")
#: is what ejabberd (mod_offline's full queue, mod_muc_room's "You have joined
#: too many conferences") and Prosody (mod_http_file_share's "Daily quota
#: reached") answer per-user quotas with, and `wait` fits: room comes back when
#: the user removes items or answers requests.  policy-violation would say the
#: stanza broke a rule, which asking once more than allowed hardly does, and
#: RFC 3920-era clients do not know it (slixmpp cannot even build the IqError
#: for it, so a roster set answered with it never completes as an error).
QUOTA = StanzaErrorCondition.RESOURCE_CONSTRAINT


def item_element(item: RosterItem, *, removed: bool = False) -> Element:
    """RFC 6121 §2.1.2: the <item/> as clients see it."""
    attrs = {"jid": item.jid, "subscription": "remove" if removed else item.subscription.value}
    if not removed:
        if item.name:
            attrs["name"] = item.name
        if item.ask:
            attrs["ask"] = "subscribe"
        if item.approved:
            attrs["approved"] = "true"
    el = Element("item", ns.ROSTER, attrs)
    if not removed:
        for group in item.groups:
            el.sub("group", text=group)
    return el


class RosterModule:
    name: ClassVar[str] = "roster"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("RFC 6121", "§2"), Spec("XEP-0237", "1.3"))

    def __init__(self) -> None:
        self.service: RosterService | None = None
        self.ctx: ServerContext | None = None

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        self.ctx = ctx
        limits = ctx.config.limits
        self.service = RosterService(
            ctx.db.roster,
            RosterLimits(limits.max_roster_items, limits.max_subscription_requests),
        )
        if ctx.cluster is not None:
            from chatgate.cluster.rosters import share_rosters

            share_rosters(ctx.cluster, self.service)
        yield IqHandler(ns.ROSTER, "get", self.get)
        yield IqHandler(ns.ROSTER, "set", self.set)
        yield StreamFeature(f"<ver xmlns='{ns.ROSTER_VER_FEATURE}'/>")
        yield StreamFeature(f"<sub xmlns='{ns.PRE_APPROVAL_FEATURE}'/>")
        yield DiscoFeature(ns.ROSTER)
        yield OnEvent(SessionClosed, self._session_closed, priority=-100)
        yield OnEvent(SessionArriving, self._session_arriving)
        yield OnEvent(SessionArrived, self._session_arrived)

    # ------------------------------------------------------------ IQ handlers

    async def get(self, session: C2SSession, iq: Element) -> None:
        """§2.1.3 roster get; §2.6.3 an empty result when the client's version is current."""
        assert self.service is not None
        self._check_own(session, iq)
        roster = await self.service.load((session.username, session.domain))
        assert self.ctx is not None
        self.ctx.router.directory.mark_interested(session)
        query = iq.find("query", ns.ROSTER)
        assert query is not None
        version = str(roster.version)
        reply = iq_result(iq)
        reply.attrs["to"] = session.full
        reply.attrs.pop("from", None)
        if query.get("ver") != version:
            payload = reply.sub("query", ns.ROSTER, {"ver": version})
            for item in roster.items.values():
                payload.append(item_element(item))
        session.send(reply)

    async def set(self, session: C2SSession, iq: Element) -> None:
        """§2.1.5 roster set: add/update one item, or remove it (§2.5)."""
        assert self.service is not None and self.ctx is not None
        self._check_own(session, iq)
        query = iq.find("query", ns.ROSTER)
        assert query is not None
        items = query.find_all("item", ns.ROSTER)
        if len(items) != 1:
            # §2.3.3: exactly one item per roster set.
            raise StanzaError(
                StanzaErrorCondition.BAD_REQUEST, "a roster set carries exactly one item"
            )
        el = items[0]
        try:
            contact = JID.parse(el.get("jid") or "")
        except InvalidJID as exc:
            raise StanzaError(StanzaErrorCondition.JID_MALFORMED, str(exc)) from None
        contact_bare = str(contact.bare)
        owner: Owner = (session.username, session.domain)
        if contact_bare == session.bare:
            raise StanzaError(StanzaErrorCondition.NOT_ALLOWED, "you cannot add yourself")
        if el.get("subscription") == "remove":
            async with self.service.locks.hold(session.bare, contact_bare):
                await self.remove_item(owner, contact_bare)
        else:
            name, groups = self._checked_sizes(el)
            async with self.service.locks.hold(session.bare):
                await self.update_item(owner, contact_bare, name, groups)
        reply = iq_result(iq)
        reply.attrs["to"] = session.full
        reply.attrs.pop("from", None)
        session.send(reply)

    def _checked_sizes(self, el: Element) -> tuple[str | None, tuple[str, ...]]:
        """The item's name and groups, held to RFC 6121 §2.3.3 and `[limits]`.

        Raises StanzaError: `not-acceptable` for a name or group longer than
        allowed (lengths in characters), an empty group or more groups than
        allowed; `bad-request` for a group named twice.
        """
        assert self.ctx is not None
        limits = self.ctx.config.limits
        name = el.get("name")
        if name is not None and len(name) > limits.max_roster_name_length:
            # §2.3.3: "The length of the 'name' attribute is greater than a
            # server-configured limit."
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE,
                f"name longer than {limits.max_roster_name_length} characters",
            )
        group_elements = el.find_all("group", ns.ROSTER)
        if len(group_elements) > limits.max_groups_per_roster_item:
            raise StanzaError(
                StanzaErrorCondition.NOT_ACCEPTABLE,
                f"more than {limits.max_groups_per_roster_item} groups",
            )
        groups: list[str] = []
        for group in group_elements:
            text = group.text
            if not text:
                # §2.3.3: an empty group name is not acceptable.
                raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "empty group name")
            if len(text) > limits.max_roster_group_length:
                # §2.3.3: the <group/> element's length "is greater than a
                # server-configured limit".
                raise StanzaError(
                    StanzaErrorCondition.NOT_ACCEPTABLE,
                    f"group name longer than {limits.max_roster_group_length} characters",
                )
            if text in groups:
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "duplicate group")
            groups.append(text)
        return name, tuple(groups)

    async def update_item(
        self, owner: Owner, contact: str, name: str | None, groups: tuple[str, ...]
    ) -> None:
        """§2.3/§2.4: add or change an item.  The caller holds the owner's lock.

        Raises StanzaError `QUOTA` when adding it would pass `max_roster_items`.
        """
        assert self.service is not None and self.ctx is not None
        existing = await self.service.item(owner, contact)
        if existing is None:
            item = RosterItem(contact, name or None, Subscription.NONE, False, False, groups)
        else:
            # §2.1.5: the client changes name and groups; subscription state is the server's.
            item = RosterItem(
                contact,
                name or None,
                existing.subscription,
                existing.ask,
                existing.approved,
                groups,
            )
        try:
            version = await self.service.put(owner, item)
        except RosterLimitReached as exc:
            raise StanzaError(QUOTA, str(exc)) from None
        self.push(owner, item, version)

    async def remove_item(self, owner: Owner, contact: str) -> None:
        """§2.5.2: removing an item cancels subscriptions both ways first.

        The caller holds the locks of the owner and of `contact`."""
        assert self.service is not None and self.ctx is not None
        existing = await self.service.item(owner, contact)
        if existing is None:
            # §2.5.3: removing a missing item is item-not-found.
            raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND)
        presence = self.ctx.modules.get("presence")
        if presence is not None:
            await presence.module.cancel_on_remove(owner, existing)  # type: ignore[attr-defined]
        version = await self.service.remove(owner, contact)
        await self.service.set_pending(owner, contact, False)
        if version is not None:
            self.push(owner, existing, version, removed=True)

    # ------------------------------------------------------------ pushes

    def push(self, owner: Owner, item: RosterItem, version: int, *, removed: bool = False) -> None:
        """§2.1.6: a roster push to every interested resource of the account."""
        assert self.ctx is not None
        query = Element("query", ns.ROSTER, {"ver": str(version)})
        query.append(item_element(item, removed=removed))
        self.ctx.router.push(bare(owner), query)

    def _check_own(self, session: C2SSession, iq: Element) -> None:
        to = iq.get("to")
        if to and to not in (session.bare, session.domain):
            # §2.1.3/§2.1.5: only the account itself manages its roster.
            raise StanzaError(StanzaErrorCondition.FORBIDDEN, "not your roster")

    async def _session_arriving(self, event: SessionArriving) -> None:
        """A session resumed from another node: its roster in memory before the
        session is reachable here, so another node's later change (a subscription
        request to deliver) is read again here (`RosterService.refresh`); kept
        until the session has arrived, even if the account's other sessions here
        end meanwhile."""
        assert self.service is not None
        owner = (event.username, event.domain)
        self.service.arriving(owner)
        await self.service.load(owner)

    def _session_arrived(self, event: SessionArrived) -> None:
        assert self.service is not None and self.ctx is not None
        owner = (event.username, event.domain)
        self.service.arrived(owner)
        if not self.ctx.router.directory.bound_here(f"{owner[0]}@{owner[1]}"):
            self.service.forget(owner)  # the take-over failed and nothing else is here

    def _session_closed(self, event: SessionClosed) -> None:
        assert self.service is not None and self.ctx is not None
        session = event.session
        if not self.ctx.router.directory.bound_here(session.bare):
            # The cached roster serves this process's sessions: none is left (one
            # being resumed here keeps it: `RosterService.forget`).
            self.service.forget((session.username, session.domain))
