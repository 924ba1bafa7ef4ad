"""A test client over `wire.Wire` for PEP: what the server wrote to it, as parsed
stanzas; answers to the server's caps questions (XEP-0115 disco#info), computed
here from the features the test gives (hashlib, independent of the server's code)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from chatgate.storage.records import RosterItem, Subscription

from ..wire import Server, Wire

CLIENT = "{jabber:client}"
PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = "http://jabber.org/protocol/pubsub#owner"
EVENT = "http://jabber.org/protocol/pubsub#event"
ERRORS = "http://jabber.org/protocol/pubsub#errors"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
CAPS_NODE = "https://example.org/testclient"
USERS = ("alice", "bob", "carol")


def ver_of(features: Iterable[str], identity: str = "client/pc//test") -> str:
    """XEP-0115 §5.1 for one identity and no forms."""
    s = identity + "<" + "".join(f"{f}<" for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


class Client:
    def __init__(self, wire: Wire, jid: str) -> None:
        self.wire = wire
        self.jid = jid
        self._read = len(wire.transport.out)
        #: what `iq` read that was not its reply, for the next `take`
        self._backlog: list[ET.Element] = []

    async def send(self, text: str) -> list[ET.Element]:
        """Send and settle; everything new written to this client."""
        await self.wire.send(text)
        return self.take()

    async def send_nowait(self, text: str) -> None:
        """Feed `text` without waiting for background work (which may be waiting
        for this very client to answer)."""
        self.wire.conn.events(self.wire.parser.feed(text.encode()))
        for _ in range(500):
            await asyncio.sleep(0.002)
            if not self.wire.conn._tasks:
                break
        for _ in range(20):
            await asyncio.sleep(0.002)

    def take(self) -> list[ET.Element]:
        self.wire.conn.output.flush()
        data = bytes(self.wire.transport.out[self._read :])
        self._read = len(self.wire.transport.out)
        backlog, self._backlog = self._backlog, []
        return backlog + list(ET.fromstring(b"<r xmlns='jabber:client'>" + data + b"</r>"))

    async def available(self, features: Iterable[str] | None, *, ver: str | None = None) -> None:
        """Initial presence with caps for `features` (None: no caps); the server's
        disco#info question, if it asks, is answered with those features."""
        features = list(features) if features is not None else None
        caps = ""
        if features is not None:
            ver = ver or ver_of(features)
            caps = f"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{ver}'/>"
        await self.send_nowait(f"<presence>{caps}</presence>")
        if features is not None:
            await self.answer_caps(features)
        await self.wire.settle()

    async def answer_caps(self, features: Iterable[str]) -> bool:
        """Answer the server's pending disco#info question, if any."""
        for el in self.take():
            query = el.find(f"{{{DISCO_INFO}}}query")
            if el.tag == CLIENT + "iq" and el.get("type") == "get" and query is not None:
                body = "<identity category='client' type='pc' name='test'/>" + "".join(
                    f"<feature var='{f}'/>" for f in features
                )
                await self.send_nowait(
                    f"<iq type='result' id='{el.get('id')}' to='{el.get('from')}'>"
                    f"<query xmlns='{DISCO_INFO}' node='{query.get('node')}'>{body}</query></iq>"
                )
                return True
        return False

    async def iq(self, iq_type: str, body: str, to: str = "", iq_id: str = "i1") -> ET.Element:
        attr = f" to='{to}'" if to else ""
        out = await self.send(f"<iq type='{iq_type}' id='{iq_id}'{attr}>{body}</iq>")
        replies = [el for el in out if el.tag == CLIENT + "iq" and el.get("id") == iq_id]
        assert len(replies) == 1, [ET.tostring(e) for e in out]
        self._backlog = [el for el in out if el is not replies[0]]
        return replies[0]

    def events(self) -> list[ET.Element]:
        """The pubsub event messages written to this client since the last read."""
        return [
            el
            for el in self.take()
            if el.tag == CLIENT + "message" and el.find(f"{{{EVENT}}}event") is not None
        ]


def error_of(reply: ET.Element) -> tuple[str, str | None]:
    """(defined condition, pubsub#errors condition or None) of an error IQ."""
    assert reply.get("type") == "error", ET.tostring(reply)
    error = reply.find(CLIENT + "error")
    assert error is not None
    defined = [
        c.tag.split("}")[1]
        for c in error
        if c.tag.startswith("{" + STANZAS) and not c.tag.endswith("}text")
    ]
    app = [c.tag.split("}")[1] for c in error if c.tag.startswith("{" + ERRORS)]
    assert len(defined) == 1
    return defined[0], (app[0] if app else None)


def publish(
    node: str, payload: str, item_id: str | None = None, options: dict[str, str] | None = None
) -> str:
    id_attr = f" id='{item_id}'" if item_id else ""
    body = f"<publish node='{node}'><item{id_attr}>{payload}</item></publish>"
    if options is not None:
        body += f"<publish-options>{form('http://jabber.org/protocol/pubsub#publish-options', options)}</publish-options>"
    return f"<pubsub xmlns='{PUBSUB}'>{body}</pubsub>"


def form(form_type: str, fields: dict[str, str], kind: str = "submit") -> str:
    inner = f"<field var='FORM_TYPE' type='hidden'><value>{form_type}</value></field>"
    inner += "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    return f"<x xmlns='jabber:x:data' type='{kind}'>{inner}</x>"


@contextlib.asynccontextmanager
async def pep_server(tmp: Path, **options: Any) -> AsyncIterator[Server]:
    """alice and bob subscribed both ways; carol a stranger to both."""
    srv = await Server.start(tmp, {"pep": options} if options else {})
    for name in USERS:
        await srv.add_user(name, f"{name}-pw")
    await srv.db.roster.put(
        ("alice", "localhost"),
        RosterItem("bob@localhost", subscription=Subscription.BOTH, groups=("friends",)),
    )
    await srv.db.roster.put(
        ("bob", "localhost"), RosterItem("alice@localhost", subscription=Subscription.BOTH)
    )
    try:
        yield srv
    finally:
        await srv.stop()


async def login(srv: Server, user: str, resource: str = "r") -> Client:
    wire = srv.connect()
    assert "<jid>" in await wire.login_plain(user, f"{user}-pw", resource)
    return Client(wire, f"{user}@localhost/{resource}")
