"""Helpers for the MUC tests: a real server (every built-in module, SQLite) and
clients on real connections; each `Client` reads what the server wrote to it
since its last read, parsed with ElementTree (not with our own parser)."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..wire import Server, Wire

C = "{jabber:client}"
MUC = "http://jabber.org/protocol/muc"
USER = "{http://jabber.org/protocol/muc#user}"
STANZAS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"
SERVICE = "conference.localhost"
ROOM = f"room@{SERVICE}"
USERS = ("alice", "bob", "carol", "dave")


@contextlib.asynccontextmanager
async def running(tmp: Path, **options: Any) -> AsyncIterator[Server]:
    srv = await Server.start(tmp, {"muc": options} if options else {})
    for name in USERS:
        with contextlib.suppress(Exception):
            await srv.add_user(name, f"{name}-pw")
    try:
        yield srv
    finally:
        await srv.stop()


class Client:
    def __init__(self, srv: Server, wire: Wire, user: str, resource: str) -> None:
        self.srv = srv
        self.wire = wire
        self.user = user
        self.full = f"{user}@localhost/{resource}"
        self._read = len(wire.transport.out)

    @classmethod
    async def login(
        cls, srv: Server, user: str, resource: str = "r", mode: str = "whole"
    ) -> Client:
        """Log in on a connection fed in `mode` (whole, bytewise or random chunks)."""
        wire = srv.connect(mode)
        bound = await wire.login_plain(user, f"{user}-pw", resource)
        assert "<jid>" in bound, bound
        await wire.send("<presence/>")  # available, as an IM client is
        return cls(srv, wire, user, resource)

    async def send(self, text: str) -> list[ET.Element]:
        """Send `text`; return what this client got since its last read."""
        await self.wire.send(text)
        return self.received()

    def received(self) -> list[ET.Element]:
        out = self.wire.transport.out[self._read :].decode()
        self._read = len(self.wire.transport.out)
        return list(ET.fromstring(f"<r xmlns='jabber:client'>{out}</r>"))

    async def join(
        self, nick: str, room: str = ROOM, extra: str = "", *, configure: bool = True
    ) -> list[ET.Element]:
        got = await self.send(
            f"<presence to='{room}/{nick}'><x xmlns='{MUC}'>{extra}</x></presence>"
        )
        if configure and any(codes(p) >= {"201"} for p in got):
            got += await self.send(instant(room))
        return got

    async def close(self) -> None:
        self.wire.conn.close_stream()
        await self.wire.settle()


def instant(room: str = ROOM) -> str:
    return (
        f"<iq type='set' id='instant' to='{room}'>"
        "<query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'/></query></iq>"
    )


def configure(fields: dict[str, str], room: str = ROOM, iq_id: str = "cfg") -> str:
    body = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    return (
        f"<iq type='set' id='{iq_id}' to='{room}'>"
        "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
        f"{body}</x></query></iq>"
    )


def admin(items: str, room: str = ROOM, iq_type: str = "set", iq_id: str = "adm") -> str:
    return (
        f"<iq type='{iq_type}' id='{iq_id}' to='{room}'>"
        f"<query xmlns='http://jabber.org/protocol/muc#admin'>{items}</query></iq>"
    )


def codes(el: ET.Element) -> set[str]:
    x = el.find(USER + "x")
    return {s.get("code", "") for s in x.findall(USER + "status")} if x is not None else set()


def item(el: ET.Element) -> dict[str, str]:
    found = el.find(f"{USER}x/{USER}item")
    return dict(found.attrib) if found is not None else {}


def presences(els: list[ET.Element], sender: str | None = None) -> list[ET.Element]:
    return [
        e for e in els if e.tag == C + "presence" and (sender is None or e.get("from") == sender)
    ]


def messages(els: list[ET.Element]) -> list[ET.Element]:
    return [e for e in els if e.tag == C + "message"]


def bodies(els: list[ET.Element]) -> list[str]:
    return [m.findtext(C + "body") or "" for m in messages(els) if m.find(C + "body") is not None]


def error(els: list[ET.Element]) -> str:
    """The condition of the only error stanza in `els`."""
    found = [e for e in els if e.get("type") == "error"]
    assert len(found) == 1, [ET.tostring(e) for e in els]
    err = found[0].find(C + "error")
    assert err is not None
    (cond,) = [c.tag for c in err if c.tag.startswith(STANZAS) and not c.tag.endswith("text")]
    return cond.removeprefix(STANZAS)


def result(els: list[ET.Element], iq_id: str) -> ET.Element:
    (found,) = [e for e in els if e.tag == C + "iq" and e.get("id") == iq_id]
    assert found.get("type") == "result", ET.tostring(found)
    return found
