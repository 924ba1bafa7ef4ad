"""Instant messaging between slixmpp clients (RFC 6121): subscriptions, presence, messages,
offline delivery, resource conflicts, roster pushes, and isolation from a misbehaving client."""

from __future__ import annotations

import asyncio
import socket

import pytest

from .conftest import RunningServer, connect, logged_in

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    for name in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"):
        server.add_user(name, f"{name}-password")


async def wait_until(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_mutual_subscription_presence_and_messages(server: RunningServer) -> None:
    async with (
        logged_in(server, "alice@localhost/desk", "alice-password") as alice,
        logged_in(server, "bob@localhost/phone", "bob-password") as bob,
    ):
        # slixmpp's defaults approve incoming requests and subscribe back.
        alice.send_presence_subscription(pto="bob@localhost")
        await wait_until(lambda: alice.client_roster["bob@localhost"]["subscription"] == "both")
        await wait_until(lambda: bob.client_roster["alice@localhost"]["subscription"] == "both")
        # Each now sees the other's presence.
        await wait_until(lambda: "phone" in alice.client_roster.presence("bob@localhost"))
        await wait_until(lambda: "desk" in bob.client_roster.presence("alice@localhost"))

        alice.send_message(mto="bob@localhost", mbody="hello bob", mtype="chat")
        got = await bob.next_message()
        assert got["body"] == "hello bob" and got["from"] == "alice@localhost/desk"
        bob.send_message(mto="alice@localhost/desk", mbody="hi alice", mtype="chat")
        got = await alice.next_message()
        assert got["body"] == "hi alice" and got["from"] == "bob@localhost/phone"

    # The server stored the roster item: a new session (fresh roster, no version) sees it.
    async with logged_in(server, "alice@localhost/check", "alice-password") as alice:
        assert alice.client_roster["bob@localhost"]["subscription"] == "both"


async def test_unavailable_presence_reaches_the_contact_on_disconnect(
    server: RunningServer,
) -> None:
    async with logged_in(server, "carol@localhost/a", "carol-password") as carol:
        async with logged_in(server, "dave@localhost/b", "dave-password"):
            carol.send_presence_subscription(pto="dave@localhost")
            await wait_until(lambda: "b" in carol.client_roster.presence("dave@localhost"))
        got = await carol.next_presence("unavailable")
        assert got["from"] == "dave@localhost/b"


async def test_offline_message_is_delivered_with_a_delay_stamp(server: RunningServer) -> None:
    async with logged_in(server, "erin@localhost/x", "erin-password") as erin:
        erin.send_message(mto="frank@localhost", mbody="while you were out", mtype="chat")
        # A ping round trip makes sure the server has processed the message.
        await erin.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    async with logged_in(server, "frank@localhost/y", "frank-password") as frank:
        got = await frank.next_message()
        assert got["body"] == "while you were out"
        assert got["from"] == "erin@localhost/x"
        assert got["delay"]["stamp"] is not None
        assert got["delay"]["from"] == "localhost"
    # Delivered once: the next login gets nothing.
    async with logged_in(server, "frank@localhost/y", "frank-password") as frank:
        await frank.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        assert frank.messages.empty()


async def test_resource_conflict_replaces_the_older_session(server: RunningServer) -> None:
    first = await connect(server, "grace@localhost/same", "grace-password")
    try:
        async with logged_in(server, "grace@localhost/same", "grace-password") as second:
            error = await asyncio.wait_for(first.stream_errors.get(), 10)
            assert error["condition"] == "conflict"
            assert str(second.boundjid) == "grace@localhost/same"
            await second.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    finally:
        first.abort()


async def test_roster_push_reaches_the_other_resource(server: RunningServer) -> None:
    async with (
        logged_in(server, "heidi@localhost/one", "heidi-password") as one,
        logged_in(server, "heidi@localhost/two", "heidi-password") as two,
    ):
        await one.get_roster()
        await two.get_roster()
        await one.update_roster("carol@localhost", name="Carol", groups=["Friends"])
        await wait_until(lambda: "carol@localhost" in two.client_roster)
        item = two.client_roster["carol@localhost"]
        assert item["name"] == "Carol" and item["groups"] == ["Friends"]


async def test_message_to_unknown_user_bounces_service_unavailable(server: RunningServer) -> None:
    async with logged_in(server, "alice@localhost/u", "alice-password") as alice:
        alice.send_message(mto="nosuchuser@localhost", mbody="hello?", mtype="chat")
        got = await alice.next_message()
        assert got["type"] == "error"
        assert got["error"]["condition"] == "service-unavailable"


async def test_message_to_other_domain_bounces_remote_server_not_found(
    server: RunningServer,
) -> None:
    async with logged_in(server, "alice@localhost/r", "alice-password") as alice:
        alice.send_message(mto="someone@example.org", mbody="hello?", mtype="chat")
        got = await alice.next_message()
        assert got["type"] == "error"
        assert got["error"]["condition"] == "remote-server-not-found"


STREAM_HEADER = (
    b"<stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


def raw_session(
    server: RunningServer, payload: bytes, *, prolog: bytes = b"<?xml version='1.0'?>"
) -> bytes:
    """Open a plain TCP stream, send `payload` after the header, return all the server said."""
    with socket.create_connection(("127.0.0.1", server.plain_port), timeout=10) as sock:
        sock.sendall(prolog + STREAM_HEADER)
        sock.sendall(payload)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        (b"<message><<<>>></message>", b"not-well-formed"),
        (b"<message><!DOCTYPE x></message>", b"not-well-formed"),
        (b"<message>&undeclared;</message>", b"restricted-xml"),
        (b"<!-- a comment -->", b"restricted-xml"),
        (b"<?pi data?>", b"restricted-xml"),
        (b"<message>\xff\xfe</message>", b"unsupported-encoding"),
        (b"<foo:bar/>", b"bad-namespace-prefix"),
        (b"<message><body>" + b"x" * 300_000 + b"</body></message>", b"policy-violation"),
        (b"<message to='a@localhost'/>", b"not-authorized"),
    ],
)
def test_bad_input_gets_the_precise_stream_error(
    server: RunningServer, payload: bytes, condition: bytes
) -> None:
    answer = raw_session(server, payload)
    assert (
        b"<stream:error><" + condition + b" xmlns='urn:ietf:params:xml:ns:xmpp-streams'" in answer
    )
    assert answer.endswith(b"</stream:stream>")


def test_dtd_and_xml_bomb_in_the_prolog_are_restricted_xml(server: RunningServer) -> None:
    bomb = (
        b"<?xml version='1.0'?><!DOCTYPE stream:stream ["
        b"<!ENTITY a 'aaaaaaaaaa'>"
        + b"".join(b"<!ENTITY %c '%s'>" % (98 + i, (b"&%c;" % (97 + i)) * 10) for i in range(9))
        + b"]>"
    )
    answer = raw_session(server, b"<message><body>&j;</body></message>", prolog=bomb)
    assert b"<restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'" in answer


async def test_a_garbage_client_does_not_disturb_another_session(server: RunningServer) -> None:
    async with (
        logged_in(server, "alice@localhost/g1", "alice-password") as alice,
        logged_in(server, "bob@localhost/g2", "bob-password") as bob,
    ):
        loop = asyncio.get_running_loop()
        garbage = loop.run_in_executor(
            None, raw_session, server, b"<message>\x00\x01<<garbage" * 100
        )
        for i in range(20):
            alice.send_message(mto="bob@localhost/g2", mbody=f"m{i}", mtype="chat")
        bodies = [(await bob.next_message())["body"] for _ in range(20)]
        assert bodies == [f"m{i}" for i in range(20)]
        assert b"not-well-formed" in await garbage
