"""XEP-0280 message carbons through the real connection, router and modules."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatgate.modules.carbons import eligible
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment

from .test_blocking import Client, block, condition, iq, of
from .wire import Server

C = "{jabber:client}"
CARBONS = "{urn:xmpp:carbons:2}"
FORWARD = "{urn:xmpp:forward:0}"
ENABLE = iq("set", "<enable xmlns='urn:xmpp:carbons:2'/>", "c1")
DISABLE = iq("set", "<disable xmlns='urn:xmpp:carbons:2'/>", "c2")


@contextlib.asynccontextmanager
async def server(tmp: Path, modules: dict[str, Any] | None = None) -> AsyncIterator[Server]:
    srv = await Server.start(tmp, modules or {})
    for name in ("alice", "bob", "carol"):
        await srv.add_user(name, f"{name}-pw")
    try:
        yield srv
    finally:
        await srv.stop()


async def login(srv: Server, user: str, resource: str, *, carbons: bool = True) -> Client:
    wire = srv.connect()
    assert "<jid>" in await wire.login_plain(user, f"{user}-pw", resource)
    client = Client(wire)
    await client.send("<presence/>")
    if carbons:
        (reply,) = of(await client.send(ENABLE), "iq", id="c1")
        assert reply.get("type") == "result"
    return client


def message(to: str, body: str = "hi", mtype: str = "chat", extra: str = "") -> str:
    return f"<message to='{to}' type='{mtype}' id='m1'><body>{body}</body>{extra}</message>"


def carbons(els: list[ET.Element], kind: str) -> list[ET.Element]:
    """The forwarded messages of each `kind` carbon in `els` (checked well formed)."""
    found = []
    for el in of(els, "message"):
        wrapper = el.find(CARBONS + kind)
        if wrapper is None:
            continue
        forwarded = wrapper.find(FORWARD + "forwarded")
        assert forwarded is not None
        inner = forwarded.find(C + "message")
        assert inner is not None
        found.append((el, inner))
    for el, _inner in found:
        # §11: a carbon comes from the user's own bare JID.
        assert "/" not in (el.get("from") or "") and el.get("to", "").startswith(
            el.get("from", "") + "/"
        )
    return [inner for _el, inner in found]


def plain(els: list[ET.Element]) -> list[str]:
    """Bodies of messages that are not carbons."""
    return [
        m.findtext(C + "body") or ""
        for m in of(els, "message")
        if m.find(CARBONS + "sent") is None and m.find(CARBONS + "received") is None
    ]


async def test_received_carbons_go_to_resources_that_did_not_get_the_message(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as srv:
        desk = await login(srv, "alice", "desk")
        phone = await login(srv, "alice", "phone")
        off = await login(srv, "alice", "off", carbons=False)
        bob = await login(srv, "bob", "pc")
        # To a full JID: desk gets it, phone a <received/> carbon, off nothing.
        await bob.send(message("alice@localhost/desk", "to desk"))
        assert plain(desk.take()) == ["to desk"]
        (inner,) = carbons(phone.take(), "received")
        assert inner.findtext(C + "body") == "to desk"
        assert inner.get("from") == "bob@localhost/pc"
        assert inner.get("to") == "alice@localhost/desk"
        assert of(off.take(), "message") == []
        # To the bare JID: every resource of equal priority gets it, no carbon.
        await bob.send(message("alice@localhost", "to bare"))
        for client in (desk, phone, off):
            assert plain(client.take()) == ["to bare"]
        # Disabled: no more carbons for phone.
        await phone.send(DISABLE)
        await bob.send(message("alice@localhost/desk", "again"))
        assert of(phone.take(), "message") == []


async def test_sent_carbons_go_to_the_senders_other_enabled_resources(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        desk = await login(srv, "alice", "desk")
        phone = await login(srv, "alice", "phone")
        bob = await login(srv, "bob", "pc")
        out = await desk.send(message("bob@localhost", "from desk"))
        assert carbons(out, "sent") == []  # never to the sender itself
        (inner,) = carbons(phone.take(), "sent")
        assert inner.get("from") == "alice@localhost/desk"
        assert inner.get("to") == "bob@localhost"
        assert inner.findtext(C + "body") == "from desk"
        assert plain(bob.take()) == ["from desk"]
        # A message to an offline account is still copied (it is stored for later).
        await desk.send(message("carol@localhost", "for later"))
        assert [i.findtext(C + "body") for i in carbons(phone.take(), "sent")] == ["for later"]


async def test_ineligible_messages_are_not_copied(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        desk = await login(srv, "alice", "desk")
        phone = await login(srv, "alice", "phone")
        await login(srv, "bob", "pc")
        cases = [
            message("bob@localhost", mtype="headline"),
            message("bob@localhost", extra="<private xmlns='urn:xmpp:carbons:2'/>"),
            message("bob@localhost", extra="<no-copy xmlns='urn:xmpp:hints'/>"),
            message("bob@localhost", extra="<x xmlns='http://jabber.org/protocol/muc#user'/>"),
            "<message to='bob@localhost' type='normal' id='m'><subject>s</subject></message>",
            "<message to='bob@localhost' type='error' id='m'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        ]
        for text in cases:
            await desk.send(text)
            assert carbons(phone.take(), "sent") == [], text
        # Bodiless normal messages with a receipt or chat state are copied.
        await desk.send(
            "<message to='bob@localhost' id='r'><received xmlns='urn:xmpp:receipts' id='x'/>"
            "</message>"
        )
        assert len(carbons(phone.take(), "sent")) == 1


@pytest.mark.parametrize(
    ("text", "copied"),
    [
        ("<message type='chat'/>", True),
        ("<message><body>x</body></message>", True),
        ("<message type='normal'/>", False),
        ("<message type='groupchat'><body>x</body></message>", False),
        (
            "<message type='chat'><sent xmlns='urn:xmpp:carbons:2'/><body>x</body></message>",
            False,
        ),
        (
            "<message><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
            True,
        ),
        ("<message><displayed xmlns='urn:xmpp:chat-markers:0' id='1'/></message>", True),
    ],
)
def test_eligibility(text: str, copied: bool) -> None:
    stanza = parse_fragment(text.replace("<message", "<message xmlns='jabber:client'", 1).encode())
    assert isinstance(stanza, Element)
    assert eligible(stanza) is copied


async def test_a_client_cannot_forge_a_carbon(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        mallory = await login(srv, "bob", "pc")
        alice = await login(srv, "alice", "desk")
        phone = await login(srv, "alice", "phone")
        forged = (
            "<message to='alice@localhost/desk' type='chat' id='f'>"
            "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            "<message xmlns='jabber:client' from='carol@localhost/x' to='alice@localhost'>"
            "<body>fake</body></message></forwarded></received></message>"
        )
        await mallory.send(forged)
        # Delivered as bob's message (its 'from' is bob: the client can tell), not copied.
        (got,) = of(alice.take(), "message")
        assert got.get("from") == "bob@localhost/pc"
        assert of(phone.take(), "message") == []


async def test_carbon_iq_errors_and_state_cleared_when_the_session_closes(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as srv:
        desk = await login(srv, "alice", "desk")
        (reply,) = of(
            await desk.send(iq("set", "<bogus xmlns='urn:xmpp:carbons:2'/>", "c3")), "iq", id="c3"
        )
        assert condition(reply) == "bad-request"
        (reply,) = of(
            await desk.send(
                "<iq type='set' id='c4' to='bob@localhost'><enable xmlns='urn:xmpp:carbons:2'/>"
                "</iq>"
            ),
            "iq",
            id="c4",
        )
        assert reply.get("type") == "error"
        state = srv.module("carbons").state
        assert state.of("alice@localhost")
        desk.wire.conn.connection_lost()
        await desk.wire.settle()
        assert not state.of("alice@localhost") and not state


async def test_blocked_messages_are_never_copied(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        desk = await login(srv, "alice", "desk")
        phone = await login(srv, "alice", "phone")
        bob = await login(srv, "bob", "pc")
        await desk.send(block("bob@localhost"))
        phone.take()
        await desk.send(message("bob@localhost", "refused"))
        await bob.send(message("alice@localhost/desk", "dropped"))
        assert of(phone.take(), "message") == []


async def test_disabled_module(tmp_path: Path) -> None:
    async with server(tmp_path, {"carbons": {"enabled": False}}) as srv:
        wire = srv.connect()
        await wire.login_plain("alice", "alice-pw", "desk")
        desk = Client(wire)
        (reply,) = of(await desk.send(ENABLE), "iq", id="c1")
        assert condition(reply) == "service-unavailable"


async def test_a_lower_priority_resource_gets_the_received_carbon(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        desk = await login(srv, "alice", "desk")
        await desk.send("<presence><priority>5</priority></presence>")
        phone = await login(srv, "alice", "phone")
        bob = await login(srv, "bob", "pc")
        await bob.send(message("alice@localhost", "to bare"))
        assert plain(desk.take()) == ["to bare"]
        phone_got = phone.take()
        assert plain(phone_got) == []
        assert [i.findtext(C + "body") for i in carbons(phone_got, "received")] == ["to bare"]
