"""Roster and presence limits against the real server, with slixmpp clients (issue 9, items 8, 12).

The attacks of the issue, bounded: a roster group of ~245 KB (1,000 of them made
one roster read 245 MB), rosters grown past `max_roster_items` through the
subscription paths (an auto-approving client such as slixmpp's default turns
every inbound request into a new item), inbound requests past
`max_subscription_requests`, and directed presence to ever new addresses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from .conftest import Client, RunningServer, logged_in, start_server

pytestmark = pytest.mark.e2e

LIMITS = """
[limits]
max_roster_items = 3
max_subscription_requests = 2
max_directed_presences = 3
"""
USERS = ("alice", "bob", "carol", "dave", "erin")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("roster-limits"), LIMITS)
    for name in USERS:
        srv.add_user(name, f"{name}-password")
    yield srv
    code = srv.stop()
    assert code == 0, f"server exit code {code}:\n{srv.log_text()}"
    assert "Traceback" not in srv.log_text(), srv.log_text()


async def roster_of(client: Client) -> dict[str, dict[str, object]]:
    """A fresh roster get (no version): what the server stores now."""
    iq = client.Iq(stype="get")
    iq.enable("roster")
    result = await iq.send(timeout=10)
    return {str(jid): item for jid, item in result["roster"]["items"].items()}


async def roster_set(client: Client, jid: str, **item: object) -> None:
    iq = client.Iq(stype="set")
    iq["roster"]["items"] = {jid: item}
    await iq.send(timeout=10)


async def error_presence(client: Client, sender: str) -> slixmpp.Presence:
    return await client.next_presence("error", sender=sender)


async def test_a_245_kb_group_name_is_not_acceptable(server: RunningServer) -> None:
    async with logged_in(server, "erin@localhost/g", "erin-password") as erin:
        with pytest.raises(IqError) as refused:
            await roster_set(erin, "bob@localhost", groups=["g" * 245_000])
        assert refused.value.iq["error"]["condition"] == "not-acceptable"
        assert refused.value.iq["error"]["type"] == "modify"
        with pytest.raises(IqError) as refused:
            await roster_set(erin, "bob@localhost", groups=[str(i) for i in range(17)])
        assert refused.value.iq["error"]["condition"] == "not-acceptable"
        with pytest.raises(IqError) as refused:
            await roster_set(erin, "bob@localhost", name="n" * 257)
        assert refused.value.iq["error"]["condition"] == "not-acceptable"
        assert await roster_of(erin) == {}
        await roster_set(erin, "bob@localhost", name="Bob", groups=["g" * 256])
        assert list(await roster_of(erin)) == ["bob@localhost"]
        await roster_set(erin, "bob@localhost", subscription="remove")


async def test_no_path_grows_a_roster_past_max_roster_items(server: RunningServer) -> None:
    async with (
        logged_in(server, "alice@localhost/a", "alice-password") as alice,
        logged_in(server, "bob@localhost/b", "bob-password") as bob,
    ):
        for i in range(3):
            await roster_set(alice, f"filler{i}@example.org")
        # Roster set.
        with pytest.raises(IqError) as refused:
            await roster_set(alice, "dave@localhost")
        assert refused.value.iq["error"]["condition"] == "resource-constraint"
        # Outbound subscribe to a contact not in the roster.
        alice.send_presence(pto="dave@localhost", ptype="subscribe")
        refusal = await error_presence(alice, "dave@localhost")
        assert refusal["error"]["condition"] == "resource-constraint"
        # Pre-approval of a contact not in the roster (RFC 6121 §3.4).
        alice.send_presence(pto="carol@localhost", ptype="subscribed")
        refusal = await error_presence(alice, "carol@localhost")
        assert refusal["error"]["condition"] == "resource-constraint"
        # Inbound subscribe: alice's slixmpp approves (and asks back) on its own, as
        # in the attack; both answers would add bob and are refused.
        assert alice.auto_authorize is True and alice.auto_subscribe is True
        bob.send_presence(pto="alice@localhost", ptype="subscribe")
        for _ in range(2):
            refusal = await error_presence(alice, "bob@localhost")
            assert refusal["error"]["condition"] == "resource-constraint"
        assert sorted(await roster_of(alice)) == [f"filler{i}@example.org" for i in range(3)]
        # bob's request stays what it was: asked, not approved.
        (bob_item,) = (await roster_of(bob)).values()
        assert (bob_item["subscription"], bob_item["ask"]) == ("none", "subscribe")
        # Removing one item makes room again.
        await roster_set(alice, "filler0@example.org", subscription="remove")
        await roster_set(alice, "dave@localhost")
        assert "dave@localhost" in await roster_of(alice)


async def test_inbound_requests_past_the_limit_are_not_stored(server: RunningServer) -> None:
    senders = ("dave", "erin", "bob")
    async with (
        logged_in(server, "dave@localhost/d", "dave-password") as dave,
        logged_in(server, "erin@localhost/e", "erin-password") as erin,
        logged_in(server, "bob@localhost/b2", "bob-password") as bob,
    ):
        clients = dict(zip(senders, (dave, erin, bob), strict=True))
        # carol is offline: requests are stored for her next login (RFC 6121 §3.1.3).
        for name in ("dave", "erin"):
            clients[name].send_presence(pto="carol@localhost", ptype="subscribe")
        # Wait until both are stored: each roster push to the sender follows the store.
        for name in ("dave", "erin"):
            await wait_for_ask(clients[name], "carol@localhost")
        bob.send_presence(pto="carol@localhost", ptype="subscribe")
        refusal = await error_presence(bob, "carol@localhost")
        assert refusal["error"]["condition"] == "resource-constraint"
        assert refusal["error"]["type"] == "wait"
    # carol logs in and is offered exactly the two stored requests.
    carol = Client("carol@localhost/c", "carol-password")
    carol.auto_authorize = None  # let the test see the requests, answer nothing
    got = await login_and_collect_subscribes(server, carol)
    assert sorted(got) == ["dave@localhost", "erin@localhost"]


async def test_directed_presence_past_the_limit_is_refused(server: RunningServer) -> None:
    async with (
        logged_in(server, "erin@localhost/x", "erin-password") as erin,
        logged_in(server, "dave@localhost/y", "dave-password") as dave,
    ):
        for i in range(3):
            erin.send_presence(pto=f"nobody{i}@localhost/r")
        erin.send_presence(pto="dave@localhost/y")
        refusal = await error_presence(erin, "dave@localhost/y")
        assert refusal["error"]["condition"] == "resource-constraint"
        # Directed unavailable frees a place; the next directed presence is routed.
        erin.send_presence(pto="nobody0@localhost/r", ptype="unavailable")
        erin.send_presence(pto="dave@localhost/y", pstatus="here")
        got = await dave.next_presence(sender="erin@localhost/x")
        assert got["status"] == "here"


async def wait_for_ask(client: Client, contact: str, timeout: float = 10) -> None:
    async def check() -> None:
        while True:
            item = (await roster_of(client)).get(contact)
            if item is not None and item["ask"] == "subscribe":
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(check(), timeout)


async def login_and_collect_subscribes(server: RunningServer, client: Client) -> list[str]:
    """Log `client` in, send initial presence, and return who asked to subscribe.

    The server redelivers stored requests right after initial presence
    (RFC 6121 §3.1.3); a ping round trip after that marks the end of them.
    """
    requests: list[str] = []
    client.add_event_handler("presence_subscribe", lambda p: requests.append(str(p["from"].bare)))
    client.ca_certs = server.certificate
    client.enable_plaintext = False
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _e: started.set_result(None))
    client.connect("127.0.0.1", server.starttls_port)
    try:
        await asyncio.wait_for(started, 15)
        client.send_presence()
        await client.plugin["xep_0199"].ping(timeout=10)
    finally:
        await asyncio.wait_for(client.disconnect(), 5)
    return requests
