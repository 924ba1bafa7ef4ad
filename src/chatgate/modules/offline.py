"""Offline messages (XEP-0160): kept for accounts with no available resource,
delivered with a delay stamp (XEP-0203) when the account next becomes available.

Storage is bounded per account by count and by stored bytes, and each sender
(bare JID) gets only a share of both (`[limits] max_offline_*`), so one sender
can neither make a login expensive nor lock other senders out.  Sizes are those
of the stored form, which is re-serialized and can be much larger than the
stanza that arrived.  A message over a bound is bounced by the router with
`service-unavailable`, as RFC 6121 §8.5.2.2.1 and XEP-0160 §3 say; ejabberd
answers `resource-constraint`, but that would tell any sender that the account
exists and how full its store is, which `service-unavailable` (also the answer
for no such account, §8.5.1) does not.

Delivery never loses what was stored: it reads the oldest messages in batches
bounded in count and bytes (memory at login is one batch, not the whole store),
writes each to the session, and then deletes by id only what it wrote.  If the
session goes away, what it did not get stays stored.  Stored text was written by
this server and is parsed without the stream's stanza limit, which its escaped
form may exceed (Prosody and ejabberd read stored stanzas back without it too);
a row that still cannot be parsed stays stored, is logged without its content,
and is skipped.  One delivery runs per account at a time (`DeliveryGate`), so
two resources becoming available together do not both get a message.

A message can be stored while its recipient comes online: the router found no
available resource, and the initial presence's delivery read the store before
the write was committed (the writer and the readers are separate connections;
in a cluster the sender's and the recipient's nodes differ).  So each stored
message is followed by a look for an available resource (on this node, and on
every other node through `ctx.peers`, topic ``offline-stored``): one found runs
a delivery again, which takes turns with the first through the gate and finds
only what is still stored, so nothing is delivered twice or left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, ClassVar, Protocol

from chatgate.modules.base import DiscoFeature, OnEvent, Registration, Spec
from chatgate.storage.errors import AccountNotFound, StorageUnavailable
from chatgate.storage.outage_log import OutageLog
from chatgate.storage.repositories.offline import OfflineQuota, Stored
from chatgate.vocabulary import ns
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize
from chatgate.xmpp.events import BecameAvailable
from chatgate.xmpp.router import MessageUndeliverable

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.storage.records import OfflineMessage
    from chatgate.xml.element import Element
    from chatgate.xmpp.session import C2SSession

log = logging.getLogger(__name__)
_OUTAGE = OutageLog(log, "offline delivery")

#: Messages read per batch at login.
BATCH_MESSAGES = 50
#: Stored bytes read per batch at login (a single larger message comes alone).
BATCH_BYTES = 262_144
#: The `ctx.peers` topic that tells the other nodes a message was stored for a
#: bare JID (payload: the bare JID), in case its resource there came online meanwhile.
STORED_TOPIC = "offline-stored"
#: Nesting allowed when reading stored stanzas back: the most `[limits] max_depth`
#: allows, so lowering that limit later does not make stored messages unreadable.
STORED_MAX_DEPTH = 1000


def _stamp(moment: datetime.datetime) -> str:
    """XEP-0082 DateTime in UTC, as XEP-0203 requires."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class DeliveryGate(Protocol):
    """One offline delivery per account at a time (a cluster would lock in its shared store)."""

    def hold(self, account: str) -> contextlib.AbstractAsyncContextManager[None]: ...


class LocalDeliveryGate:
    """In-process `DeliveryGate`: a lock per account while a delivery runs or waits."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, account: str) -> AsyncIterator[None]:
        lock, users = self._held.get(account) or (asyncio.Lock(), 0)
        self._held[account] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[account]
            if users == 1:
                del self._held[account]
            else:
                self._held[account] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._held)


class OfflineMessages:
    name: ClassVar[str] = "offline"
    depends: ClassVar[tuple[str, ...]] = ("presence",)
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0160", "1.0.1"), Spec("XEP-0203", "2.0"))

    def __init__(self, gate: DeliveryGate | None = None) -> None:
        # `is None`, not `or`: an empty LocalDeliveryGate is falsy (it has __len__).
        self.gate = gate if gate is not None else LocalDeliveryGate()

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        self.ctx = ctx
        limits = ctx.config.limits
        self.quota = OfflineQuota(
            messages=limits.max_offline_messages,
            bytes=limits.max_offline_bytes,
            sender_messages=limits.max_offline_messages_per_sender,
            sender_bytes=limits.max_offline_bytes_per_sender,
        )
        ctx.peers.on_message(STORED_TOPIC, self._stored_elsewhere)
        yield OnEvent(MessageUndeliverable, self._store)
        yield OnEvent(BecameAvailable, self._deliver, priority=0)
        yield DiscoFeature(ns.OFFLINE)

    async def _store(self, event: MessageUndeliverable) -> bool | None:
        local, _, domain = event.recipient.partition("@")
        sender = event.stanza.attrs.get("from", "").partition("/")[0]
        try:
            outcome = await self.ctx.db.offline.store(
                (local, domain),
                sender,
                serialize(event.stanza),
                datetime.datetime.now(datetime.UTC),
                self.quota,
            )
        except AccountNotFound:
            return None  # deleted since the router looked: no such account (§8.5.1)
        if outcome is Stored.STORED:
            self._deliver_if_online(event.recipient)
            if self.ctx.peers.clustered:
                self.ctx.peers.broadcast(STORED_TOPIC, event.recipient.encode())
            return True
        log.debug("offline store of %s %s for %s", event.recipient, outcome.value, sender)
        return None  # the router bounces it with service-unavailable

    def _stored_elsewhere(self, _sender: str, payload: bytes) -> None:
        self._deliver_if_online(payload.decode(errors="replace"))

    def _deliver_if_online(self, bare: str) -> None:
        """A message was just stored for `bare`: if one of its resources on this node
        is available now (it came online while the message was being stored), deliver
        to the one with the highest non-negative priority."""
        resources = self.ctx.router.directory.local.get(bare)
        if not resources:
            return
        best: C2SSession | None = None
        for session in resources.values():
            if (
                session.available
                and session.priority >= 0
                and (best is None or session.priority > best.priority)
            ):
                best = session
        if best is not None:
            self.ctx.spawn(self._deliver_again(best))

    async def _deliver_again(self, session: C2SSession) -> None:
        try:
            await self._deliver_to(session)
        except StorageUnavailable as exc:  # stays stored for the next login
            _OUTAGE.failed(f"offline delivery to {session.full}", exc)

    async def _deliver(self, event: BecameAvailable) -> None:
        await self._deliver_to(event.session)

    async def _deliver_to(self, session: C2SSession) -> None:
        # XEP-0160 §4: only to a resource with non-negative priority.
        if session.priority < 0:
            return
        owner = (session.username, session.domain)
        store = self.ctx.db.offline
        async with self.gate.hold(session.bare):
            after = 0
            while True:
                batch = await store.batch(
                    owner, after=after, max_messages=BATCH_MESSAGES, max_bytes=BATCH_BYTES
                )
                if not batch or not self._connected(session):
                    return
                written = []
                for message in batch:
                    stanza = self._restore(message, session)
                    if stanza is not None:
                        session.send(stanza)
                        written.append(message.id)
                after = batch[-1].id
                await store.delete(owner, written)

    def _connected(self, session: C2SSession) -> bool:
        return self.ctx.router.directory.is_bound(session)

    @staticmethod
    def _restore(message: OfflineMessage, session: C2SSession) -> Element | None:
        """The stored message, addressed to `session` and stamped; None (logged) when
        the row cannot be read back, so that it stays stored."""
        try:
            data = message.stanza.encode()
            stanza = parse_fragment(
                data, max_stanza_bytes=max(len(data), 1), max_depth=STORED_MAX_DEPTH
            )
        except Exception as exc:  # any failure keeps the row: it must not be lost
            log.warning(
                "offline message %d for %s cannot be read back (%s: %s); kept, not delivered",
                message.id,
                session.bare,
                type(exc).__name__,
                getattr(getattr(exc, "condition", None), "value", "-"),
            )
            return None
        if stanza.name != "message" or stanza.ns != ns.CLIENT:
            log.warning(
                "offline message %d for %s is not a message; kept, not delivered",
                message.id,
                session.bare,
            )
            return None
        stanza.attrs["to"] = session.full
        delay = stanza.sub(
            "delay", ns.DELAY, {"from": session.domain, "stamp": _stamp(message.stamp)}
        )
        delay.set_text("Offline Storage")
        return stanza
