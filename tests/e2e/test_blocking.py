"""XEP-0191 blocking against the real `chatgate serve`, with slixmpp's xep_0191 plugin."""

from __future__ import annotations

import asyncio

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from .conftest import Client, RunningServer, logged_in

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    for name in ("alice", "bob", "carol"):
        server.add_user(name, f"{name}-password")


async def wait_until(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def with_blocking(client: Client) -> asyncio.Queue[slixmpp.Iq]:
    client.register_plugin("xep_0191")
    pushes: asyncio.Queue[slixmpp.Iq] = asyncio.Queue()
    client.add_event_handler("blocked", pushes.put_nowait)
    client.add_event_handler("unblocked", pushes.put_nowait)
    return pushes


async def no_message(client: Client, wait: float = 0.5) -> None:
    """Nothing but errors arrives within `wait` seconds."""
    deadline = asyncio.get_running_loop().time() + wait
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            got = await client.next_message(timeout=left)
        except TimeoutError:
            return
        assert got["type"] == "error", f"unexpected message: {got}"


async def test_blocking_end_to_end(server: RunningServer) -> None:
    async with (
        logged_in(server, "alice@localhost/desk", "alice-password") as desk,
        logged_in(server, "alice@localhost/phone", "alice-password") as phone,
        logged_in(server, "bob@localhost/pc", "bob-password") as bob,
    ):
        with_blocking(desk)
        phone_pushes = with_blocking(phone)
        # Mutual subscription (slixmpp approves and subscribes back by default).
        desk.send_presence_subscription(pto="bob@localhost")
        await wait_until(lambda: desk.client_roster["bob@localhost"]["subscription"] == "both")
        await wait_until(lambda: "pc" in desk.client_roster.presence("bob@localhost"))
        await wait_until(lambda: "desk" in bob.client_roster.presence("alice@localhost"))
        while not bob.presences.empty():
            bob.presences.get_nowait()

        assert await desk.plugin["xep_0191"].get_blocked_jids() == set()
        await desk.plugin["xep_0191"].block("bob@localhost")
        # The push reaches alice's other resource.
        push = await asyncio.wait_for(phone_pushes.get(), 10)
        assert [str(i["jid"]) for i in push["block"]] == ["bob@localhost"]
        assert await phone.plugin["xep_0191"].get_blocked_jids() == {slixmpp.JID("bob@localhost")}
        # §3.3: bob sees alice's resources go unavailable.
        gone = {
            str((await bob.next_presence("unavailable"))["from"]),
            str((await bob.next_presence("unavailable"))["from"]),
        }
        assert gone == {"alice@localhost/desk", "alice@localhost/phone"}

        # bob's messages do not arrive; he is told service-unavailable.
        errors: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        bob.add_event_handler("message_error", errors.put_nowait)
        bob.send_message(mto="alice@localhost", mbody="let me in", mtype="chat")
        error = await asyncio.wait_for(errors.get(), 10)
        assert error["error"]["condition"] == "service-unavailable"
        await no_message(desk)
        await no_message(phone, 0.1)
        # An IQ to alice's resource is answered service-unavailable by her server.
        with pytest.raises(IqError) as caught:
            await bob.plugin["xep_0030"].get_info(jid="alice@localhost/desk", timeout=10)
        assert caught.value.iq["error"]["condition"] == "service-unavailable"

        # alice's message to bob is refused with not-acceptable + <blocked/>.
        refused: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        desk.add_event_handler("message_error", refused.put_nowait)
        desk.send_message(mto="bob@localhost", mbody="hi bob", mtype="chat")
        error = await asyncio.wait_for(refused.get(), 10)
        assert error["error"]["condition"] == "not-acceptable"
        assert error.xml.find(".//{urn:xmpp:blocking:errors}blocked") is not None
        await no_message(bob)

        # bob's presence no longer reaches alice, and hers not him.
        while not desk.presences.empty():
            desk.presences.get_nowait()
        bob.send_presence(pshow="dnd")
        desk.send_presence(pshow="away")
        with pytest.raises(asyncio.TimeoutError):
            await desk.next_presence(sender="bob@localhost/pc", timeout=0.7)
        with pytest.raises(asyncio.TimeoutError):
            await bob.next_presence(sender="alice@localhost/desk", timeout=0.3)

        # Unblocked: messages flow and presence comes back.
        await desk.plugin["xep_0191"].unblock("bob@localhost")
        unpush = await asyncio.wait_for(phone_pushes.get(), 10)
        assert [str(i["jid"]) for i in unpush["unblock"]] == ["bob@localhost"]
        await bob.next_presence(sender="alice@localhost/desk")
        bob.send_message(mto="alice@localhost/desk", mbody="better", mtype="chat")
        got = await desk.next_message()
        while got["type"] == "error":  # the refusal above, also seen as a message
            got = await desk.next_message()
        assert got["body"] == "better"


async def test_blocking_refuses_malformed_requests(server: RunningServer) -> None:
    async with logged_in(server, "carol@localhost/x", "carol-password") as carol:
        with_blocking(carol)
        iq = carol.make_iq_set()
        iq.enable("block")  # no item
        with pytest.raises(IqError) as caught:
            await iq.send(timeout=10)
        assert caught.value.iq["error"]["condition"] == "bad-request"
        with pytest.raises(IqError) as caught:
            await carol.plugin["xep_0191"].block("a@b@c", timeout=10)
        assert caught.value.iq["error"]["condition"] == "jid-malformed"
        assert await carol.plugin["xep_0191"].get_blocked_jids() == set()
