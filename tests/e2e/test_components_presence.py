"""Presence between accounts and a gateway's JIDs against a real `chatgate serve`:
slixmpp's `ComponentXMPP` as the gateway (its own roster answering subscriptions,
as a gateway built on it does), slixmpp clients as the accounts.

What a gateway such as Slidge or Spectrum relies on, as Prosody and ejabberd give
it: subscriptions with its JIDs recorded in the account's roster, the probe and
the available presence when an account with gateway contacts logs in, unavailable
when it leaves, and unavailable after directed presence."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
import slixmpp

from tests.e2e.conftest import Client, RunningServer, logged_in
from tests.e2e.test_components import (
    DOMAIN,
    Component,
    component,
    start_with_components,
)

pytestmark = pytest.mark.e2e

USERS = ("bob", "carol", "dave")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, int]]:
    server, port = start_with_components(tmp_path_factory.mktemp("components-presence"))
    for user in USERS:
        server.add_user(user, f"{user}-pass")
    yield server, port
    code = server.stop()
    assert code == 0, server.log_text()
    assert "Traceback" not in server.log_text(), server.log_text()


class Gateway(Component):
    """The component, recording every presence it is sent."""

    def __init__(self, jid: str, secret: str, port: int) -> None:
        super().__init__(jid, secret, port)
        # ComponentXMPP leaves subscriptions unanswered by default; a gateway
        # approves them and asks back, as slixmpp's clients do.
        self.auto_authorize = True
        self.auto_subscribe = True
        self.presences: asyncio.Queue[slixmpp.Presence] = asyncio.Queue()
        self.add_event_handler("presence", self.presences.put_nowait)

    async def expect(
        self, ptype: str, sender: str, to: str | None = None, timeout: float = 10
    ) -> slixmpp.Presence:
        """The next presence of `ptype` from `sender` (to `to`), skipping others."""

        async def wait() -> slixmpp.Presence:
            while True:
                p = await self.presences.get()
                if p["type"] == ptype and p["from"] == sender and (to is None or p["to"] == to):
                    return p

        return await asyncio.wait_for(wait(), timeout)


def gateway(port: int) -> contextlib.AbstractAsyncContextManager[Gateway]:
    return component(port, kind=Gateway)


async def roster_subscription(client: Client, jid: str, want: str, timeout: float = 10) -> str:
    """The subscription the server's roster records for `jid`, once it is `want`."""
    deadline = time.monotonic() + timeout
    got = ""
    while time.monotonic() < deadline:
        await client.get_roster()
        roster = client.client_roster
        got = roster[jid]["subscription"] if jid in roster else ""
        if got == want:
            return got
        await asyncio.sleep(0.1)
    return got


async def subscribe_both(client: Client, gw: Gateway, contact: str) -> None:
    """The whole handshake, each side answering as slixmpp does by default
    (authorize, and subscribe back)."""
    client.send_presence(pto=contact, ptype="subscribe")
    await gw.expect("subscribe", client.boundjid.bare, contact)
    assert await roster_subscription(client, contact, "both") == "both"


async def test_a_subscription_handshake_with_a_gateway_jid_is_recorded_in_the_roster(
    setup: tuple[RunningServer, int],
) -> None:
    server, port = setup
    contact = f"bob-friend@{DOMAIN}"
    async with gateway(port) as gw, logged_in(server, "bob@localhost", "bob-pass") as bob:
        # Stamped with bob's bare JID (RFC 6121 §3.1.2), to the gateway, which
        # approves and asks back; bob's client approves: both ways.
        await subscribe_both(bob, gw, contact)
        await gw.expect("subscribed", "bob@localhost", contact)
        # Recorded on the server: a new session reads the same roster.
    async with logged_in(server, "bob@localhost", "bob-pass") as again:
        assert again.client_roster[contact]["subscription"] == "both"
        # Unsubscribing is recorded too, the gateway told.
        async with gateway(port) as gw:
            again.send_presence(pto=contact, ptype="unsubscribe")
            await gw.expect("unsubscribe", "bob@localhost", contact)
            assert await roster_subscription(again, contact, "from") == "from"


async def test_a_gateway_contact_is_probed_and_sees_the_account_come_and_go(
    setup: tuple[RunningServer, int],
) -> None:
    server, port = setup
    contact = f"carol-friend@{DOMAIN}"
    async with gateway(port) as gw:
        async with logged_in(server, "carol@localhost", "carol-pass") as carol:
            await subscribe_both(carol, gw, contact)
        await gw.expect("unavailable", str(carol.boundjid), contact)
        # Logging in again: the gateway is probed and gets the available presence.
        async with logged_in(server, "carol@localhost", "carol-pass") as carol:
            # Her presence to subscribers first, then the probes (RFC 6121 §4.2.2).
            available = await gw.expect("available", str(carol.boundjid), contact)
            assert available["to"] == contact
            await gw.expect("probe", "carol@localhost", contact)
            # slixmpp's component answered the probe: carol sees her contact.
            seen = await carol.next_presence("available", sender=contact)
            assert seen["to"].bare == "carol@localhost"
            full = str(carol.boundjid)
        # Logging out: unavailable to the gateway's subscribed JID.
        await gw.expect("unavailable", full, contact)


async def test_directed_presence_to_a_gateway_jid_is_followed_by_unavailable(
    setup: tuple[RunningServer, int],
) -> None:
    server, port = setup
    target = f"bot@{DOMAIN}/x"
    async with gateway(port) as gw:
        async with logged_in(server, "dave@localhost", "dave-pass") as dave:
            dave.send_presence(pto=target, pstatus="here")
            got = await gw.expect("available", str(dave.boundjid), target)
            assert got["status"] == "here"
            full = str(dave.boundjid)
        await gw.expect("unavailable", full, target)
