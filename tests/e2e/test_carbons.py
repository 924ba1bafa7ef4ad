"""XEP-0280 message carbons against the real `chatgate serve`, with slixmpp's xep_0280."""

from __future__ import annotations

import asyncio

import pytest
import slixmpp

from .conftest import Client, RunningServer, logged_in

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    for name in ("alice", "bob"):
        server.add_user(name, f"{name}-password")


async def with_carbons(client: Client) -> dict[str, asyncio.Queue[slixmpp.Message]]:
    client.register_plugin("xep_0297")
    client.register_plugin("xep_0280")
    queues: dict[str, asyncio.Queue[slixmpp.Message]] = {
        "received": asyncio.Queue(),
        "sent": asyncio.Queue(),
    }
    client.add_event_handler("carbon_received", queues["received"].put_nowait)
    client.add_event_handler("carbon_sent", queues["sent"].put_nowait)
    await client.plugin["xep_0280"].enable(timeout=10)
    return queues


async def test_carbons_end_to_end(server: RunningServer) -> None:
    async with (
        logged_in(server, "alice@localhost/desk", "alice-password") as desk,
        logged_in(server, "alice@localhost/phone", "alice-password") as phone,
        logged_in(server, "bob@localhost/pc", "bob-password") as bob,
    ):
        desk_carbons = await with_carbons(desk)
        phone_carbons = await with_carbons(phone)
        info = await desk.plugin["xep_0030"].get_info(jid="localhost", timeout=10)
        assert "urn:xmpp:carbons:2" in info["disco_info"]["features"]

        # bob -> alice/desk: desk gets it, phone the <received/> carbon.
        bob.send_message(mto="alice@localhost/desk", mbody="to desk", mtype="chat")
        assert (await desk.next_message())["body"] == "to desk"
        carbon = await asyncio.wait_for(phone_carbons["received"].get(), 10)
        assert carbon["from"] == "alice@localhost"
        inner = carbon["carbon_received"]
        assert inner["body"] == "to desk" and inner["from"] == "bob@localhost/pc"

        # bob -> alice (bare): both get it, neither a carbon.
        bob.send_message(mto="alice@localhost", mbody="to bare", mtype="chat")
        assert (await desk.next_message())["body"] == "to bare"
        phone_got = await phone.next_message()
        while phone_got.xml.find("{urn:xmpp:carbons:2}received") is not None:
            # the carbon above, also seen as a message
            phone_got = await phone.next_message()
        assert phone_got["body"] == "to bare"

        # alice/desk -> bob: phone gets the <sent/> carbon, desk none.
        desk.send_message(mto="bob@localhost", mbody="from desk", mtype="chat")
        assert (await bob.next_message())["body"] == "from desk"
        sent = await asyncio.wait_for(phone_carbons["sent"].get(), 10)
        assert sent["carbon_sent"]["body"] == "from desk"
        assert sent["carbon_sent"]["from"] == "alice@localhost/desk"
        assert sent["carbon_sent"]["to"] == "bob@localhost"

        # A <private/> message is not copied.
        private = desk.make_message(mto="bob@localhost", mbody="secret", mtype="chat")
        private.enable("carbon_private")
        private.send()
        assert (await bob.next_message())["body"] == "secret"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(phone_carbons["sent"].get(), 0.5)

        # Disabled on phone: it stops getting copies; desk never got its own.
        await phone.plugin["xep_0280"].disable(timeout=10)
        bob.send_message(mto="alice@localhost/desk", mbody="after", mtype="chat")
        assert (await desk.next_message())["body"] == "after"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(phone_carbons["received"].get(), 0.5)
        assert desk_carbons["sent"].empty() and desk_carbons["received"].empty()
