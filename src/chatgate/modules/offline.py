"""Offline messages (XEP-0160): kept for accounts with no available resource,
delivered with a delay stamp (XEP-0203) when the account next becomes available.

Storage is bounded per account; a message over the bound is bounced by the
router with `service-unavailable` (RFC 6121 §8.5.2.2.1) instead of dropped.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from chatgate.modules.base import DiscoFeature, OnEvent, Registration, Spec
from chatgate.xml.parser import parse_fragment
from chatgate.xml.serialize import serialize
from chatgate.xmpp import ns
from chatgate.xmpp.events import BecameAvailable
from chatgate.xmpp.router import MessageUndeliverable

if TYPE_CHECKING:
    from chatgate.context import ServerContext


def _stamp(moment: datetime.datetime) -> str:
    """XEP-0082 DateTime in UTC, as XEP-0203 requires."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class OfflineMessages:
    name: ClassVar[str] = "offline"
    depends: ClassVar[tuple[str, ...]] = ("presence",)
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0160", "1.0.1"), Spec("XEP-0203", "2.0"))

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        self.ctx = ctx
        yield OnEvent(MessageUndeliverable, self._store)
        yield OnEvent(BecameAvailable, self._deliver, priority=0)
        yield DiscoFeature(ns.OFFLINE)

    async def _store(self, event: MessageUndeliverable) -> bool | None:
        local, _, domain = event.recipient.partition("@")
        stored = await self.ctx.db.offline.store(
            (local, domain),
            serialize(event.stanza),
            datetime.datetime.now(datetime.UTC),
            self.ctx.config.limits.max_offline_messages,
        )
        return True if stored else None

    async def _deliver(self, event: BecameAvailable) -> None:
        session = event.session
        # XEP-0160 §4: only to a resource with non-negative priority.
        if session.priority < 0:
            return
        messages = await self.ctx.db.offline.take_all((session.username, session.domain))
        for message in messages:
            stanza = parse_fragment(message.stanza.encode())
            stanza.attrs["to"] = session.full
            delay = stanza.sub(
                "delay", ns.DELAY, {"from": session.domain, "stamp": _stamp(message.stamp)}
            )
            delay.set_text("Offline Storage")
            session.send(stanza)
