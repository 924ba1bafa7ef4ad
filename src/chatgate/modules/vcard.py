"""vcard-temp (XEP-0054): a user's vCard, stored as XML, readable by all, written by its owner.

Owns: the vCard IQs and the document's size bound.  After storing a vCard a client
set, it announces `VCardStored` (awaited before the IQ's result, so what a listener
does, e.g. XEP-0398's publishing of the PHOTO as a XEP-0084 avatar, has happened
when the client hears the result).  A listener's failure is logged by the hooks and
never fails the IQ: the vCard is the client's request, and it is stored.
Must not: announce writes it did not receive from a client (the PEP-to-vCard copy
writes the repository directly, so nothing echoes back to PEP).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from chatgate.jid import JID
from chatgate.modules.base import DiscoFeature, IqHandler, Registration, Spec
from chatgate.storage.repositories.owner import Owner
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.context import ServerContext

#: A vCard is a profile, not a file store: larger ones get not-acceptable.
MAX_VCARD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class VCardStored:
    """A client's vCard set was stored (`card` is what it sent, within the bound)."""

    owner: Owner
    card: Element
    session: C2SSession


class VCard:
    name: ClassVar[str] = "vcard"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0054", "1.2"),)

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        vcards = ctx.db.vcards

        async def get(session: C2SSession, iq: Element) -> None:
            to = iq.get("to")
            owner = (session.username, session.domain)
            if to:
                target = JID.parse(to)
                owner = (target.local, target.domain)
                if not await ctx.account_exists(*owner):
                    raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
            stored = await vcards.get(owner)
            # XEP-0054 §3.1: an empty <vCard/> when the user has none.
            payload = parse_fragment(stored.encode()) if stored else Element("vCard", ns.VCARD)
            reply = iq_result(iq, payload)
            reply.attrs["to"] = session.full
            session.send(reply)

        async def set_(session: C2SSession, iq: Element) -> None:
            to = iq.get("to")
            if to and JID.parse(to).bare != JID(session.username, session.domain, ""):
                raise StanzaError(StanzaErrorCondition.FORBIDDEN, "only the owner sets a vCard")
            card = iq.find("vCard", ns.VCARD)
            assert card is not None
            text = serialize(card, parent_ns="")
            if len(text.encode()) > MAX_VCARD_BYTES:
                raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "vCard too large")
            owner = (session.username, session.domain)
            await vcards.put(owner, text)
            # Listeners' errors are logged by `notify`; the stored vCard stands.
            await ctx.hooks.notify(VCardStored(owner, card, session))
            reply = iq_result(iq)
            reply.attrs["to"] = session.full
            reply.attrs.pop("from", None)
            session.send(reply)

        yield IqHandler(ns.VCARD, "get", get, to_server=True, to_account=True)
        yield IqHandler(ns.VCARD, "set", set_)
        yield DiscoFeature(ns.VCARD)
