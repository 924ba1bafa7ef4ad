"""Small server services: legacy session establishment, ping, software version, entity time.

Each is one module class; they share this file because each is a few lines.
"""

from __future__ import annotations

import datetime
import platform
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from chatgate import __version__
from chatgate.modules.base import DiscoFeature, IqHandler, Registration, Spec
from chatgate.vocabulary import ns
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import iq_result

if TYPE_CHECKING:
    from chatgate.context import ServerContext


def _reply(session: C2SSession, iq: Element, payload: Element | None = None) -> None:
    reply = iq_result(iq, payload)
    reply.attrs["to"] = session.full
    session.send(reply)


class LegacySession:
    """RFC 3921 §3 session establishment, a no-op kept for old clients (COMPAT)."""

    name: ClassVar[str] = "session"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("RFC 3921", "§3"),)

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        def handle(session: C2SSession, iq: Element) -> None:
            _reply(session, iq)

        yield IqHandler(ns.SESSION, "set", handle)


class Ping:
    name: ClassVar[str] = "ping"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0199", "2.0.1"),)

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        def handle(session: C2SSession, iq: Element) -> None:
            _reply(session, iq)

        yield IqHandler(ns.PING, "get", handle)
        yield DiscoFeature(ns.PING)


class SoftwareVersion:
    name: ClassVar[str] = "version"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0092", "1.1"),)

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        server = ctx.config.server

        def handle(session: C2SSession, iq: Element) -> None:
            query = Element("query", ns.VERSION)
            query.sub("name", text=server.version_name)
            query.sub("version", text=__version__)
            if server.reveal_os:
                query.sub("os", text=f"{platform.system()} {platform.release()}")
            _reply(session, iq, query)

        yield IqHandler(ns.VERSION, "get", handle)
        yield DiscoFeature(ns.VERSION)


class EntityTime:
    name: ClassVar[str] = "time"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (Spec("XEP-0202", "2.0"),)

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        def handle(session: C2SSession, iq: Element) -> None:
            now = datetime.datetime.now(datetime.UTC)
            payload = Element("time", ns.TIME)
            payload.sub("tzo", text="+00:00")
            payload.sub("utc", text=now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
            _reply(session, iq, payload)

        yield IqHandler(ns.TIME, "get", handle)
        yield DiscoFeature(ns.TIME)
