"""Carbons, PEP notifications and blocking across the nodes of a real cluster
(issue 15: every feature works unchanged in a cluster): two `chatgate serve`
nodes over one PostgreSQL and one Redis (`cluster_harness.py`), slixmpp clients
on both.

- carbons: alice on n1 and alice on n2, both with carbons on, get the copies of
  what bob sends either of them and of what either of them sends;
- PEP: a mood published on n1 reaches a contact on n2 whose caps ask for it, and
  back;
- blocking: a block made by alice's session on n1 stops bob's messages, IQs and
  presence to alice's session on n2 at once;
- push: one notification interval per registration, whichever node routes the
  messages;
- the hot path: messages between two accounts on one node cost no Redis command.

On a failure both nodes' logs are kept in `test-artifacts/test_cluster_sync/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from .cluster_harness import LocalCluster, logs_kept_on_failure, start_cluster
from .conftest import Client, present

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CHATGATE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
USERS = {
    name: f"{name}-secret-1"
    for name in ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "pushbot")
}
WAIT = 8.0
MOOD = "http://jabber.org/protocol/mood"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    cluster = start_cluster(names=("n1", "n2"), users=USERS)
    try:
        yield cluster
    finally:
        codes = cluster.close()
        shutil.rmtree(cluster.folder, ignore_errors=True)
    assert all(code == 0 for code in codes.values()), codes


@pytest.fixture(autouse=True)
def _keep_logs_on_failure(request: pytest.FixtureRequest, cluster: LocalCluster) -> Iterator[None]:
    yield from logs_kept_on_failure(request, cluster)


@contextlib.asynccontextmanager
async def online(
    cluster: LocalCluster, node: str, jid: str, plugins: tuple[str, ...] = ()
) -> AsyncIterator[Client]:
    """`jid` (user/resource@localhost) logged in on `node` with `plugins` registered
    before the stream opens (caps are computed from them), roster read and
    presence sent."""
    user = jid.split("@")[0]
    client = Client(jid, USERS[user])
    for plugin in plugins:
        client.register_plugin(plugin)
    client.enable_plaintext = True
    client.enable_starttls = False
    client.enable_direct_tls = False
    client.plugin["feature_mechanisms"].unencrypted_plain = True
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _e: started.done() or started.set_result(None))
    client.connect("127.0.0.1", cluster[node].port)
    await asyncio.wait_for(started, 15)
    async with present(client, caps="xep_0115" in plugins):
        yield client


async def wait_until(predicate, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def befriend(a: Client, b: Client) -> None:
    """Mutual presence subscription (slixmpp answers requests itself by default)."""
    bare_a, bare_b = a.boundjid.bare, b.boundjid.bare
    a.send_presence_subscription(pto=bare_b)
    await wait_until(lambda: a.client_roster[bare_b]["subscription"] == "both")
    await wait_until(lambda: b.client_roster[bare_a]["subscription"] == "both")


async def carbons_on(client: Client) -> dict[str, asyncio.Queue[slixmpp.Message]]:
    queues: dict[str, asyncio.Queue[slixmpp.Message]] = {
        "received": asyncio.Queue(),
        "sent": asyncio.Queue(),
    }
    client.add_event_handler("carbon_received", queues["received"].put_nowait)
    client.add_event_handler("carbon_sent", queues["sent"].put_nowait)
    await client.plugin["xep_0280"].enable(timeout=10)
    return queues


async def next_body(client: Client, body: str) -> slixmpp.Message:
    async def wait() -> slixmpp.Message:
        while True:
            message = await client.messages.get()
            if message["body"] == body:
                return message

    return await asyncio.wait_for(wait(), WAIT)


async def nothing_for(queue: asyncio.Queue[Any], seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), seconds)


# -- carbons ------------------------------------------------------------------------------


async def test_carbons_reach_the_accounts_resources_on_both_nodes(cluster: LocalCluster) -> None:
    carbons = ("xep_0297", "xep_0280")
    async with (
        online(cluster, "n1", "alice@localhost/desk", carbons) as desk,
        online(cluster, "n2", "alice@localhost/phone", carbons) as phone,
        online(cluster, "n1", "bob@localhost/pc") as bob,
        online(cluster, "n2", "bob@localhost/tablet") as bob2,
    ):
        desk_copies = await carbons_on(desk)
        phone_copies = await carbons_on(phone)

        # bob (n1) -> alice/desk (n1): alice/phone on n2 gets the <received/> copy.
        bob.send_message(mto="alice@localhost/desk", mbody="to desk", mtype="chat")
        assert (await next_body(desk, "to desk"))["from"] == "bob@localhost/pc"
        copy = await asyncio.wait_for(phone_copies["received"].get(), WAIT)
        assert copy["from"] == "alice@localhost"
        assert copy["carbon_received"]["body"] == "to desk"
        assert copy["carbon_received"]["from"] == "bob@localhost/pc"

        # bob (n2) -> alice/desk (n1): routed on n2, copied to alice/phone there.
        bob2.send_message(mto="alice@localhost/desk", mbody="from the tablet", mtype="chat")
        await next_body(desk, "from the tablet")
        copy = await asyncio.wait_for(phone_copies["received"].get(), WAIT)
        assert copy["carbon_received"]["from"] == "bob@localhost/tablet"

        # bob (n1) -> alice/phone (n2): alice/desk on n1 gets the <received/> copy.
        bob.send_message(mto="alice@localhost/phone", mbody="to phone", mtype="chat")
        await next_body(phone, "to phone")
        copy = await asyncio.wait_for(desk_copies["received"].get(), WAIT)
        assert copy["carbon_received"]["body"] == "to phone"

        # alice/phone (n2) -> bob: alice/desk on n1 gets the <sent/> copy.
        phone.send_message(mto="bob@localhost/pc", mbody="from phone", mtype="chat")
        await next_body(bob, "from phone")
        copy = await asyncio.wait_for(desk_copies["sent"].get(), WAIT)
        assert copy["carbon_sent"]["body"] == "from phone"
        assert copy["carbon_sent"]["from"] == "alice@localhost/phone"

        # alice/desk (n1) -> bob: alice/phone on n2 gets the <sent/> copy.
        desk.send_message(mto="bob@localhost/tablet", mbody="from desk", mtype="chat")
        await next_body(bob2, "from desk")
        copy = await asyncio.wait_for(phone_copies["sent"].get(), WAIT)
        assert copy["carbon_sent"]["body"] == "from desk"

        # Nobody got a copy of its own message, nor one too many.
        await nothing_for(desk_copies["sent"], 0.3)
        await nothing_for(phone_copies["sent"], 0.1)
        await nothing_for(desk_copies["received"], 0.1)
        await nothing_for(phone_copies["received"], 0.1)

        # Disabled on n2: n1 stops copying to it.
        await phone.plugin["xep_0280"].disable(timeout=10)  # answered once n1 was sent it
        bob.send_message(mto="alice@localhost/desk", mbody="after", mtype="chat")
        await next_body(desk, "after")
        await nothing_for(phone_copies["received"], 0.7)


# -- PEP ----------------------------------------------------------------------------------


async def test_a_pep_event_published_on_one_node_reaches_a_contact_on_the_other(
    cluster: LocalCluster,
) -> None:
    plugins = ("xep_0060", "xep_0115", "xep_0163", "xep_0107")
    async with (
        online(cluster, "n1", "carol@localhost/desk", plugins) as carol,
        online(cluster, "n2", "dave@localhost/phone", plugins) as dave,
    ):
        events: dict[str, asyncio.Queue[slixmpp.Message]] = {}
        for client in (carol, dave):
            queue: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
            client.add_event_handler("user_mood_publish", queue.put_nowait)
            events[client.boundjid.bare] = queue
        await befriend(carol, dave)
        await asyncio.sleep(0.5)  # each node asks its own session's caps

        await carol.plugin["xep_0107"].publish_mood("happy", "on n1")
        event = await asyncio.wait_for(events["dave@localhost"].get(), WAIT)
        assert event["from"] == "carol@localhost"
        mood = event["pubsub_event"]["items"]["item"]["mood"]
        assert mood["value"] == "happy" and mood["text"] == "on n1"
        # the publisher's own resource hears it too (its own node)
        own = await asyncio.wait_for(events["carol@localhost"].get(), WAIT)
        assert own["pubsub_event"]["items"]["item"]["mood"]["text"] == "on n1"

        await dave.plugin["xep_0107"].publish_mood("sleepy", "on n2")
        event = await asyncio.wait_for(events["carol@localhost"].get(), WAIT)
        assert event["from"] == "dave@localhost"
        assert event["pubsub_event"]["items"]["item"]["mood"]["text"] == "on n2"
        # once each: no node delivered the event twice
        await asyncio.sleep(0.5)
        assert events["carol@localhost"].empty()
        assert events["dave@localhost"].qsize() == 1  # its own publish only
        items = await carol.plugin["xep_0060"].get_items("dave@localhost", MOOD)
        assert items.xml.find(f".//{{{MOOD}}}mood/{{{MOOD}}}sleepy") is not None


# -- blocking -----------------------------------------------------------------------------


async def test_a_block_made_on_one_node_applies_at_once_on_the_other(
    cluster: LocalCluster,
) -> None:
    plugins = ("xep_0191",)
    async with (
        online(cluster, "n1", "erin@localhost/desk", plugins) as desk,
        online(cluster, "n2", "erin@localhost/phone", plugins) as phone,
        online(cluster, "n2", "frank@localhost/pc", plugins) as frank,
    ):
        await befriend(desk, frank)
        await wait_until(lambda: "pc" in phone.client_roster.presence("frank@localhost"))
        # before: frank (n2) reaches erin's phone (n2), whose node holds erin's list
        frank.send_message(mto="erin@localhost/phone", mbody="hello", mtype="chat")
        await next_body(phone, "hello")

        await desk.plugin["xep_0191"].block("frank@localhost")
        # at once: nothing of frank's reaches erin on n2 any more
        errors: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        frank.add_event_handler("message_error", errors.put_nowait)
        frank.send_message(mto="erin@localhost/phone", mbody="let me in", mtype="chat")
        error = await asyncio.wait_for(errors.get(), WAIT)
        assert error["error"]["condition"] == "service-unavailable"
        with pytest.raises(IqError) as caught:
            await frank.plugin["xep_0030"].get_info(jid="erin@localhost/phone", timeout=WAIT)
        assert caught.value.iq["error"]["condition"] == "service-unavailable"
        while not phone.presences.empty():
            phone.presences.get_nowait()
        frank.send_presence(pshow="dnd")
        with pytest.raises(TimeoutError):
            await phone.next_presence(sender="frank@localhost/pc", timeout=0.7)
        assert all(m["body"] != "let me in" for m in _drain(phone.messages))
        # and erin's own sends to frank from n2 are refused as blocked
        refused: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        phone.add_event_handler("message_error", refused.put_nowait)
        phone.send_message(mto="frank@localhost", mbody="hi", mtype="chat")
        error = await asyncio.wait_for(refused.get(), WAIT)
        assert error["error"]["condition"] == "not-acceptable"

        # Unblocked on n2: frank's messages reach erin on n1 again at once.
        await phone.plugin["xep_0191"].unblock("frank@localhost")
        frank.send_message(mto="erin@localhost/desk", mbody="back", mtype="chat")
        await next_body(desk, "back")


def _drain(queue: asyncio.Queue[slixmpp.Message]) -> list[slixmpp.Message]:
    found = []
    while not queue.empty():
        found.append(queue.get_nowait())
    return found


# -- push ---------------------------------------------------------------------------------

PUBSUB = "http://jabber.org/protocol/pubsub"
PUSH_ENABLE = "<enable xmlns='urn:xmpp:push:0' jid='pushbot@localhost/app' node='device-1'/>"


def _count(iq: slixmpp.Iq) -> str:
    for field in iq.xml.iter("{jabber:x:data}field"):
        if field.get("var") == "message-count":
            value = field.find("{jabber:x:data}value")
            assert value is not None and value.text is not None
            return value.text
    raise AssertionError("no message-count")


async def test_one_push_interval_per_registration_whichever_node_routes(
    cluster: LocalCluster,
) -> None:
    """min_interval is 5 s (the default): bob's message on n1 wakes gina's phone at
    once; carol's two on n2 just after are counted into one notification when the
    interval ends, not sent at once by n2."""
    async with online(cluster, "n2", "gina@localhost/phone") as gina:
        iq = gina.make_iq_set()
        iq.append(ET.fromstring(PUSH_ENABLE))
        assert (await iq.send(timeout=10))["type"] == "result"
    async with (
        online(cluster, "n1", "pushbot@localhost/app") as app,
        online(cluster, "n1", "bob@localhost/pc") as bob,
        online(cluster, "n2", "carol@localhost/pc") as carol,
    ):
        published: asyncio.Queue[tuple[float, slixmpp.Iq]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def got(iq: slixmpp.Iq) -> None:
            published.put_nowait((loop.time(), iq))
            iq.reply(clear=True).send()

        app.register_handler(
            Callback("push", MatchXPath(f"{{jabber:client}}iq/{{{PUBSUB}}}pubsub"), got)
        )
        bob.send_message(mto="gina@localhost", mbody="one", mtype="chat")
        first_at, first = await asyncio.wait_for(published.get(), WAIT)
        assert first["from"] == "gina@localhost" and _count(first) == "1"
        carol.send_message(mto="gina@localhost", mbody="two", mtype="chat")
        carol.send_message(mto="gina@localhost", mbody="three", mtype="chat")
        second_at, second = await asyncio.wait_for(published.get(), 10)
        assert _count(second) == "2"
        assert second_at - first_at > 3.5, "n2 notified within n1's interval"
        await nothing_for(published, 0.5)


# -- the hot path -------------------------------------------------------------------------

#: what the nodes send Redis on their own, whatever the clients do (heartbeats,
#: membership, the lean connection's keep-alive)
BACKGROUND = {"set", "sadd", "smembers", "mget", "ping", "info", "client|setinfo", "hello"}


def _commands(cluster: LocalCluster) -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(cluster.redis.url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_messages_on_one_node_cost_no_redis_command_while_carbons_are_on_elsewhere(
    cluster: LocalCluster,
) -> None:
    carbons = ("xep_0297", "xep_0280")
    async with (
        online(cluster, "n2", "alice@localhost/phone", carbons) as phone,
        online(cluster, "n1", "bob@localhost/pc") as bob,
        online(cluster, "n1", "carol@localhost/pc") as carol,
    ):
        await carbons_on(phone)  # so both nodes' carbons stages are active
        bob.send_message(mto="carol@localhost/pc", mbody="warm-up", mtype="chat")
        await next_body(carol, "warm-up")
        before = _commands(cluster)
        count = 200
        for i in range(count):
            bob.send_message(mto="carol@localhost/pc", mbody=f"m{i}", mtype="chat")
        await next_body(carol, f"m{count - 1}")
        after = _commands(cluster)
        grown = {
            name: after[name] - before.get(name, 0)
            for name in after
            if name not in BACKGROUND and after[name] != before.get(name, 0)
        }
        # a round trip per message would show as `count` commands or more
        assert sum(grown.values()) < 10, grown


def test_no_node_logged_a_traceback_or_a_malformed_peer_message(cluster: LocalCluster) -> None:
    for name, text in cluster.logs().items():
        assert "Traceback" not in text, f"{name}:\n{text[-4000:]}"
        assert "malformed" not in text, f"{name}:\n{text[-4000:]}"
