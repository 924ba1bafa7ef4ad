"""Group chat on a three-node cluster (issue 15 in a cluster): three `chatgate
serve` processes, one PostgreSQL, one Redis (`cluster_harness.py`), slixmpp
clients with xep_0045 spread over the nodes.

Each room lives on one node (rendezvous hashing of the room JID over the live
nodes, `docs/muc.md`); the rooms here are named so that the node the test means
owns them.  A room is made from one node and joined from the two others:
presence, groupchat, subject, a kick from a non-owner node, private messages
between nodes, history and the room archive for a late joiner.  Then the owner
is killed with SIGKILL: occupants on the surviving nodes get status 332 and the
persistent room works again on its new owner, as stored.  Then the killed node
starts again and gets its rooms back live: occupants stay, history and subject
follow.  Last, the owner is stopped with SIGTERM: it hands its rooms over live
before leaving, and nobody is sent away.

On a failure every node's log is kept in `test-artifacts/test_cluster_muc/<test>/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import slixmpp

from chatgate.peers import rendezvous_owner

from .cluster_harness import LocalCluster, logs_kept_on_failure, serving_cleanly
from .conftest import Client, connect

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CHATGATE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
NODES = ("n1", "n2", "n3")
SERVICE = "conference.localhost"
USERS = {name: f"{name}-secret-1" for name in ("alice", "bob", "carol", "dave", "erin")}
TIMEOUT = 10.0


def owned_by(node: str, prefix: str, nodes: tuple[str, ...] = NODES) -> str:
    """A room JID that `node` owns while `nodes` are alive."""
    for i in range(1000):
        room = f"{prefix}{i}@{SERVICE}"
        if rendezvous_owner(room, nodes) == node:
            return room
    raise AssertionError("no such name")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    yield from serving_cleanly(NODES, USERS)


@pytest.fixture(autouse=True)
def _keep_logs_on_failure(request: pytest.FixtureRequest, cluster: LocalCluster) -> Iterator[None]:
    yield from logs_kept_on_failure(request, cluster)


@contextlib.asynccontextmanager
async def online(cluster: LocalCluster, node: str, user: str) -> AsyncIterator[Client]:
    server = cluster[node].server
    assert server is not None
    client = await connect(server, f"{user}@localhost/{node}", USERS[user], transport="plain")
    for plugin in ("xep_0004", "xep_0045", "xep_0313"):
        client.register_plugin(plugin)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)


def queue(client: slixmpp.ClientXMPP, event: str) -> asyncio.Queue[slixmpp.Message]:
    got: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
    client.add_event_handler(event, got.put_nowait)
    return got


async def until(got: asyncio.Queue[slixmpp.Message], match, timeout: float = TIMEOUT):  # type: ignore[no-untyped-def]
    """The next item of `got` that `match`es (others are skipped)."""

    async def wait():  # type: ignore[no-untyped-def]
        while True:
            item = await got.get()
            if match(item):
                return item

    return await asyncio.wait_for(wait(), timeout)


async def create(owner: Client, room: str, nick: str, **config: object) -> None:
    muc = owner.plugin["xep_0045"]
    presence, *_ = await muc.join_muc_wait(room, nick, timeout=TIMEOUT)
    assert 201 in presence["muc"]["status_codes"]
    if config:
        form = await muc.get_room_config(room, timeout=TIMEOUT)
        for var, value in config.items():
            form.field[var]["value"] = value
    else:
        form = owner.plugin["xep_0004"].make_form(ftype="submit")
    await muc.set_room_config(room, form, timeout=TIMEOUT)


async def test_one_room_for_occupants_on_three_nodes(cluster: LocalCluster) -> None:
    room = owned_by("n1", "team")
    async with (
        online(cluster, "n1", "alice") as alice,
        online(cluster, "n2", "bob") as bob,
        online(cluster, "n3", "carol") as carol,
    ):
        await create(alice, room, "Alice")
        for client, nick in ((bob, "Bob"), (carol, "Carol")):
            presence, *_ = await client.plugin["xep_0045"].join_muc_wait(
                room, nick, timeout=TIMEOUT
            )
            assert 110 in presence["muc"]["status_codes"]
        everyone = ["Alice", "Bob", "Carol"]
        for client in (alice, bob, carol):  # Carol's arrival reaches each in its own time
            for _ in range(100):
                if sorted(client.plugin["xep_0045"].get_roster(room)) == everyone:
                    break
                await asyncio.sleep(0.05)
            assert sorted(client.plugin["xep_0045"].get_roster(room)) == everyone
        # groupchat from n3 reaches n1 and n2 (and comes back to n3), one stanza-id
        chats = {c: queue(c, "groupchat_message") for c in (alice, bob, carol)}
        carol.send_message(mto=room, mbody="hello from n3", mtype="groupchat")
        ids = set()
        for got in chats.values():
            msg = await until(got, lambda m: m["body"] == "hello from n3")
            assert msg["from"] == f"{room}/Carol"
            ids.add(msg.xml.find("{urn:xmpp:sid:0}stanza-id").get("id"))
        assert len(ids) == 1
        # the subject, set on n1, reaches n2 and n3
        subjects = {c: queue(c, "groupchat_subject") for c in (bob, carol)}
        alice.plugin["xep_0045"].set_subject(room, "Release plans")
        for got in subjects.values():
            await until(got, lambda m: m["subject"] == "Release plans")
        # a private message from n2 to the occupant on n3
        direct = queue(carol, "message")
        bob.send_message(mto=f"{room}/Carol", mbody="between nodes", mtype="chat")
        private = await until(direct, lambda m: m["body"] == "between nodes")
        assert private["from"] == f"{room}/Bob"
        # Bob (n2) made admin by the owner, kicks Carol (n3)
        await alice.plugin["xep_0045"].set_affiliation(
            room, "admin", jid="bob@localhost", timeout=TIMEOUT
        )
        leaving = queue(carol, f"muc::{room}::presence")
        await bob.plugin["xep_0045"].set_role(room, "Carol", "none", reason="out", timeout=TIMEOUT)
        gone = await until(leaving, lambda p: p["type"] == "unavailable")
        assert {110, 307} <= set(gone["muc"]["status_codes"])
        # a late joiner on n3: the history, then the room archive from the owner
        for i in range(3):
            alice.send_message(mto=room, mbody=f"line {i}", mtype="groupchat")
        await alice.plugin["xep_0199"].send_ping(room, timeout=TIMEOUT)  # after the lines
        async with online(cluster, "n3", "dave") as dave:
            _presence, subject, _occupants, history = await dave.plugin["xep_0045"].join_muc_wait(
                room, "Dave", maxstanzas=3, timeout=TIMEOUT
            )
            assert [m["body"] for m in history] == ["line 0", "line 1", "line 2"]
            assert subject["subject"] == "Release plans"
            bodies: list[str] = []
            for _ in range(50):  # the archive writes in the background: a moment
                answer = await dave.plugin["xep_0313"].retrieve(jid=room, timeout=TIMEOUT)
                stanzas = [r["mam_result"]["forwarded"]["stanza"] for r in answer["mam"]["results"]]
                bodies = [m["body"] for m in stanzas]
                if len(bodies) >= 4:
                    break
                await asyncio.sleep(0.1)
            assert bodies == ["hello from n3", "line 0", "line 1", "line 2"]
        # the service's room list, asked on n2, names the room n1 holds
        items = await bob.plugin["xep_0030"].get_items(jid=SERVICE, timeout=TIMEOUT)
        assert room in {item[0] for item in items["disco_items"]["items"]}


async def test_killing_the_owner_sends_332_and_the_persistent_room_comes_back(
    cluster: LocalCluster,
) -> None:
    kept = owned_by("n1", "kept")
    temporary = owned_by("n1", "scratch")
    async with (
        online(cluster, "n2", "erin") as erin,
        online(cluster, "n3", "bob") as bob,
    ):
        await create(
            erin,
            kept,
            "Erin",
            **{"muc#roomconfig_persistentroom": True, "muc#roomconfig_roomname": "Kept"},
        )
        await create(erin, temporary, "Erin")
        for room in (kept, temporary):
            await bob.plugin["xep_0045"].join_muc_wait(room, "Bob", timeout=TIMEOUT)
        watched = {
            (client, room): queue(client, f"muc::{room}::presence")
            for client in (erin, bob)
            for room in (kept, temporary)
        }
        cluster["n1"].kill()
        for (client, room), got in watched.items():
            nick = "Erin" if client is erin else "Bob"
            out = await until(
                got, lambda p, n=nick: p["type"] == "unavailable" and p["from"].resource == n
            )
            assert {110, 332} <= set(out["muc"]["status_codes"]), (room, nick)
        # the persistent room, on its new owner, as stored; both occupants back in
        new_owner = rendezvous_owner(kept, ("n2", "n3"))
        assert new_owner in ("n2", "n3")
        info = await bob.plugin["xep_0030"].get_info(jid=kept, timeout=TIMEOUT)
        assert ("conference", "text", None, "Kept") in info["disco_info"]["identities"]
        for client, nick in ((erin, "Erin"), (bob, "Bob")):
            presence, *_ = await client.plugin["xep_0045"].join_muc_wait(
                kept, nick, timeout=TIMEOUT
            )
            assert 201 not in presence["muc"]["status_codes"]
        chat = queue(bob, "groupchat_message")
        erin.send_message(mto=kept, mbody="we are back", mtype="groupchat")
        await until(chat, lambda m: m["body"] == "we are back")
        # the temporary room is gone: joining it makes a new one
        presence, *_ = await erin.plugin["xep_0045"].join_muc_wait(
            temporary, "Erin", timeout=TIMEOUT
        )
        assert 201 in presence["muc"]["status_codes"]


async def test_a_restarted_node_gets_its_rooms_back_live(cluster: LocalCluster) -> None:
    """After the kill above, n1's rooms are held by n2 and n3; n1 starting again
    takes them back with their occupants, history and subject: nobody is sent away."""
    room = owned_by("n1", "comeback")
    interim = rendezvous_owner(room, ("n2", "n3"))
    async with (
        online(cluster, "n2", "alice") as alice,
        online(cluster, "n3", "carol") as carol,
    ):
        await create(alice, room, "Alice")
        await carol.plugin["xep_0045"].join_muc_wait(room, "Carol", timeout=TIMEOUT)
        alice.plugin["xep_0045"].set_subject(room, "Before the move")
        alice.send_message(mto=room, mbody="before", mtype="groupchat")
        await alice.plugin["xep_0199"].send_ping(room, timeout=TIMEOUT)
        sent_away = {client: queue(client, f"muc::{room}::presence") for client in (alice, carol)}
        since = len(cluster["n1"].log_text())
        cluster["n1"].start()
        cluster["n1"].wait_for_log(f"room {room} arrived from node {interim}", since=since)
        chat = queue(carol, "groupchat_message")
        alice.send_message(mto=room, mbody="after", mtype="groupchat")
        msg = await until(chat, lambda m: m["body"] == "after")
        assert msg["from"] == f"{room}/Alice"
        async with online(cluster, "n1", "dave") as dave:
            _presence, subject, occupants, history = await dave.plugin["xep_0045"].join_muc_wait(
                room, "Dave", timeout=TIMEOUT
            )
            assert [p["from"].resource for p in occupants] == ["Alice", "Carol", "Dave"]
            assert [m["body"] for m in history] == ["before", "after"]
            assert subject["subject"] == "Before the move"
        for got in sent_away.values():
            while not got.empty():
                presence = got.get_nowait()
                assert 332 not in presence["muc"]["status_codes"], presence


async def test_stopping_the_owner_with_sigterm_hands_its_rooms_over(cluster: LocalCluster) -> None:
    """n1 (back from the test above) owns a room with occupants on n2 and n3; SIGTERM
    of n1 moves it live to its owner among n2 and n3: nobody gets 332, messages go on,
    a late joiner gets the history.  (Alice and Carol come back under the resources
    they had a moment ago: the end of those earlier sessions, heard by every node, is
    not taken for theirs when the room arrives.)"""
    room = owned_by("n1", "handedover")
    successor = rendezvous_owner(room, ("n2", "n3"))
    async with (
        online(cluster, "n2", "alice") as alice,
        online(cluster, "n3", "carol") as carol,
    ):
        await create(alice, room, "Alice")
        await carol.plugin["xep_0045"].join_muc_wait(room, "Carol", timeout=TIMEOUT)
        chat = queue(carol, "groupchat_message")
        alice.send_message(mto=room, mbody="before the stop", mtype="groupchat")
        await until(chat, lambda m: m["body"] == "before the stop")
        sent_away = {client: queue(client, f"muc::{room}::presence") for client in (alice, carol)}
        since = len(cluster[successor].log_text())
        assert await asyncio.to_thread(cluster["n1"].stop) == 0
        cluster[successor].wait_for_log(f"room {room} arrived from node n1", since=since)
        alice.send_message(mto=room, mbody="after the stop", mtype="groupchat")
        msg = await until(chat, lambda m: m["body"] == "after the stop")
        assert msg["from"] == f"{room}/Alice"
        async with online(cluster, "n2", "dave") as dave:
            _presence, _subject, occupants, history = await dave.plugin["xep_0045"].join_muc_wait(
                room, "Dave", timeout=TIMEOUT
            )
            assert [p["from"].resource for p in occupants] == ["Alice", "Carol", "Dave"]
            assert [m["body"] for m in history] == ["before the stop", "after the stop"]
        for got in sent_away.values():
            while not got.empty():
                presence = got.get_nowait()
                assert 332 not in presence["muc"]["status_codes"], presence


def test_no_node_logged_a_traceback(cluster: LocalCluster) -> None:
    for name, text in cluster.logs().items():
        assert "Traceback" not in text, f"{name}:\n{text}"
