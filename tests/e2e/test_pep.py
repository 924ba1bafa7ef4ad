"""XEP-0163 PEP with slixmpp clients against the real `chatgate serve`: alice
publishes a mood and an avatar (XEP-0107, XEP-0084); bob, subscribed, whose caps
(XEP-0115, computed by slixmpp) include the nodes' +notify, hears them; carol, a
stranger with the same interests, does not; bob fetches the avatar's data; a
late joiner gets the last item on its presence; someone else's PEP is refused, a
huge item too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from slixmpp.exceptions import IqError

from .conftest import Client, RunningServer, present

pytestmark = pytest.mark.e2e

MOOD = "http://jabber.org/protocol/mood"
AVATAR_META = "urn:xmpp:avatar:metadata"
AVATAR_DATA = "urn:xmpp:avatar:data"
PEP_PLUGINS = ("xep_0060", "xep_0115", "xep_0163", "xep_0084", "xep_0107")


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    for name in ("alice", "bob", "carol", "dave"):
        server.add_user(name, f"{name}-password")


@contextlib.asynccontextmanager
async def pep_client(server: RunningServer, jid: str) -> AsyncIterator[Client]:
    """Logged in with the PEP plugins; initial presence carries caps that include
    mood+notify and avatar metadata+notify (as a real client's does)."""
    client = await connect_with(server, jid, PEP_PLUGINS)
    client.events: asyncio.Queue[object] = asyncio.Queue()  # type: ignore[misc]
    client.add_event_handler("user_mood_publish", client.events.put_nowait)
    client.add_event_handler("avatar_metadata_publish", client.events.put_nowait)
    async with present(client, caps=True):
        yield client


async def connect_with(server: RunningServer, jid: str, plugins: tuple[str, ...]) -> Client:
    """Log in over STARTTLS with `plugins` registered before the stream opens (the
    conftest's `connect` registers none), without sending presence."""
    client = Client(jid, jid.split("@")[0] + "-password")
    for plugin in plugins:
        client.register_plugin(plugin)
    client.ca_certs = server.certificate
    client.enable_plaintext = False
    client.enable_starttls = True
    client.enable_direct_tls = False
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _e: started.done() or started.set_result(None))
    client.connect("127.0.0.1", server.starttls_port)
    await asyncio.wait_for(started, 15)
    return client


async def wait_until(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def subscribe(a: Client, b: Client, bare_b: str, bare_a: str) -> None:
    a.send_presence_subscription(pto=bare_b)
    await wait_until(lambda: a.client_roster[bare_b]["subscription"] == "both")
    await wait_until(lambda: b.client_roster[bare_a]["subscription"] == "both")


async def test_mood_and_avatar_reach_the_subscribed_contact_only(server: RunningServer) -> None:
    async with (
        pep_client(server, "alice@localhost/desk") as alice,
        pep_client(server, "bob@localhost/phone") as bob,
        pep_client(server, "carol@localhost/web") as carol,
    ):
        await subscribe(alice, bob, "bob@localhost", "alice@localhost")
        await asyncio.sleep(0.5)  # caps questions answered

        await alice.plugin["xep_0107"].publish_mood("happy", "sunny day")
        event = await asyncio.wait_for(bob.events.get(), 10)
        assert event["from"] == "alice@localhost"
        mood = event["pubsub_event"]["items"]["item"]["mood"]
        assert mood["value"] == "happy" and mood["text"] == "sunny day"

        image = bytes(range(256)) * 8
        avatar_id = alice.plugin["xep_0084"].generate_id(image)
        await alice.plugin["xep_0084"].publish_avatar(image)
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": avatar_id, "type": "image/png", "bytes": len(image)}]
        )
        event = await asyncio.wait_for(bob.events.get(), 10)
        info = event["pubsub_event"]["items"]["item"]["avatar_metadata"]["info"]
        assert info["id"] == avatar_id and int(info["bytes"]) == len(image)
        data = await bob.plugin["xep_0084"].retrieve_avatar("alice@localhost", avatar_id)
        assert data["pubsub"]["items"]["item"]["avatar_data"]["value"] == image

        await asyncio.sleep(1)
        assert carol.events.empty(), "a stranger heard alice's PEP"
        with pytest.raises(IqError) as refused:
            await carol.plugin["xep_0060"].get_items("alice@localhost", MOOD)
        assert refused.value.condition == "not-authorized"


async def test_late_joiner_gets_the_last_item_on_presence(server: RunningServer) -> None:
    async with (
        pep_client(server, "dave@localhost/a") as dave,
        pep_client(server, "bob@localhost/b") as bob,
    ):
        await subscribe(dave, bob, "bob@localhost", "dave@localhost")
        await dave.plugin["xep_0107"].publish_mood("tired")
        await dave.plugin["xep_0107"].publish_mood("excited")
    async with pep_client(server, "bob@localhost/late") as late:
        # bob also sees alice (the test before): her last items come too.
        heard: dict[str, list[str]] = {}
        with contextlib.suppress(TimeoutError):
            while True:
                event = await asyncio.wait_for(late.events.get(), 3)
                item = event["pubsub_event"]["items"]["item"]
                if event["pubsub_event"]["items"]["node"] == MOOD:
                    heard.setdefault(str(event["from"]), []).append(item["mood"]["value"])
        assert heard["dave@localhost"] == ["excited"]  # the last one only


async def test_someone_elses_pep_and_huge_items_are_refused(server: RunningServer) -> None:
    async with pep_client(server, "carol@localhost/x") as carol:
        from slixmpp.plugins.xep_0107 import UserMood

        mood = UserMood()
        mood["value"] = "angry"
        with pytest.raises(IqError) as forbidden:
            await carol.plugin["xep_0060"].publish(
                "alice@localhost", MOOD, id="current", payload=mood.xml, timeout=10
            )
        assert forbidden.value.condition == "forbidden"
        with pytest.raises(IqError) as too_big:
            # 147 kB in base64: under the stanza limit, over max_item_bytes (128 KiB)
            await carol.plugin["xep_0084"].publish_avatar(b"\0" * 110_000, timeout=10)
        assert too_big.value.condition == "not-acceptable"
        # the session is still served
        await carol.plugin["xep_0107"].publish_mood("calm")


async def test_malformed_options_and_too_many_nodes(server: RunningServer) -> None:
    server.add_user("erin", "erin-password")
    async with pep_client(server, "erin@localhost/x") as erin:
        from slixmpp.plugins.xep_0107 import UserMood

        mood = UserMood()
        mood["value"] = "curious"  # a XEP-0107 value
        pubsub = erin.plugin["xep_0060"]
        not_submitted = erin.plugin["xep_0004"].make_form(ftype="form")
        not_submitted.add_field(
            var="FORM_TYPE",
            ftype="hidden",
            value="http://jabber.org/protocol/pubsub#publish-options",
        )
        with pytest.raises(IqError) as malformed:
            await pubsub.publish(
                None, MOOD, id="m", payload=mood.xml, options=not_submitted, timeout=10
            )
        assert malformed.value.condition == "bad-request"
        unknown = erin.plugin["xep_0004"].make_form(ftype="submit")
        unknown.add_field(
            var="FORM_TYPE",
            ftype="hidden",
            value="http://jabber.org/protocol/pubsub#publish-options",
        )
        unknown.add_field(var="pubsub#no_such_option", value="1")
        with pytest.raises(IqError) as unmet:
            await pubsub.publish(None, MOOD, id="m", payload=mood.xml, options=unknown, timeout=10)
        assert unmet.value.condition == "conflict"
        # [modules.pep] max_nodes_per_account defaults to 100
        await asyncio.gather(
            *(
                pubsub.publish(None, f"urn:x:n{n}", id="1", payload=mood.xml, timeout=30)
                for n in range(100)
            )
        )
        with pytest.raises(IqError) as full:
            await pubsub.publish(None, "urn:x:one-more", id="1", payload=mood.xml, timeout=10)
        assert full.value.condition == "resource-constraint"
        # an existing node still takes items
        await pubsub.publish(None, "urn:x:n0", id="2", payload=mood.xml, timeout=10)
