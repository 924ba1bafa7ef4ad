"""Service discovery (XEP-0030) for the server and for accounts' bare JIDs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from chatgate.jid import JID
from chatgate.modules.base import IqHandler, Registration, Spec
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.context import ServerContext


class Disco:
    name: ClassVar[str] = "disco"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0030", "2.5rc3"),)

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        async def info(session: C2SSession, iq: Element) -> None:
            query = iq.find("query", ns.DISCO_INFO)
            assert query is not None
            if query.get("node"):
                raise StanzaError(StanzaErrorCondition.ITEM_NOT_FOUND, "no such node")
            to = iq.get("to")
            target = JID.parse(to) if to else None
            payload = Element("query", ns.DISCO_INFO)
            if target is None or not target.local:
                payload.sub(
                    "identity", attrs={"category": "server", "type": "im", "name": "chatgate"}
                )
                features = {ns.DISCO_INFO, ns.DISCO_ITEMS}
                features.update(f.var for f in ctx.disco_features if not f.on_account)
            else:
                # XEP-0030 §3.1 / RFC 6121 §8.5.1: the server answers for its accounts.
                if not await ctx.account_exists(target.local, target.domain):
                    raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
                kind = "anonymous" if ctx.is_anonymous(target.domain) else "registered"
                payload.sub("identity", attrs={"category": "account", "type": kind})
                features = {ns.DISCO_INFO, ns.DISCO_ITEMS}
                features.update(f.var for f in ctx.disco_features if f.on_account)
            for var in sorted(features):
                payload.sub("feature", attrs={"var": var})
            reply = iq_result(iq, payload)
            reply.attrs["to"] = session.full
            session.send(reply)

        def items(session: C2SSession, iq: Element) -> None:
            payload = Element("query", ns.DISCO_ITEMS)
            to = iq.get("to")
            target = JID.parse(to) if to else None
            if target is None or not target.local:
                # The server's services on domains of their own (XEP-0030 §4.1).
                host = target.domain if target is not None else session.domain
                for service in ctx.services:
                    if service.parent == host:
                        attrs = {"jid": service.domain}
                        if service.name:
                            attrs["name"] = service.name
                        payload.sub("item", attrs=attrs)
            reply = iq_result(iq, payload)
            reply.attrs["to"] = session.full
            session.send(reply)

        yield IqHandler(ns.DISCO_INFO, "get", info, to_server=True, to_account=True)
        yield IqHandler(ns.DISCO_ITEMS, "get", items, to_server=True, to_account=True)
