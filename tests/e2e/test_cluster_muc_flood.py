"""A room's owner stopped with SIGTERM while a client floods the room: three `chatgate
serve` processes (`cluster_harness.py`), slixmpp clients on two other nodes.

Alice (on n1) sends numbered groupchat messages, ten every 10 ms, to a room n2
owns; n2 is stopped mid-flood and hands the room to n3.  Every message gets an
echo or an error (the flood control's wait), and Bob (on n3, the new owner) sees
every message the room took, in the order Alice sent them (RFC 6120 §10.1).
On the code before the fix (git dec58cb), 6 runs in 9 lost 1-5 messages without
a word, or put one out of order.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator

import pytest
import slixmpp

from chatgate.peers import rendezvous_owner

from .cluster_harness import LocalCluster, logs_kept_on_failure, serving_cleanly
from .conftest import connect
from .test_cluster_muc import create

NODES = ("n1", "n2", "n3")
USERS = {"alice": "alice-secret-1", "bob": "bob-secret-1"}


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    yield from serving_cleanly(NODES, USERS)


@pytest.fixture(autouse=True)
def _keep_logs_on_failure(request: pytest.FixtureRequest, cluster: LocalCluster) -> Iterator[None]:
    yield from logs_kept_on_failure(request, cluster)


def numbered(events: list[int]) -> Callable[[slixmpp.Message], None]:
    """A handler keeping the numbers of numbered messages."""

    def keep(message: slixmpp.Message) -> None:
        if message["body"].isdigit():
            events.append(int(message["body"]))

    return keep


async def test_a_flooded_room_moves_on_sigterm_without_loss_or_reordering(
    cluster: LocalCluster,
) -> None:
    room = next(
        jid
        for i in range(1000)
        if rendezvous_owner(jid := f"flood{i}@conference.localhost", NODES) == "n2"
        and rendezvous_owner(jid, ("n1", "n3")) == "n3"
    )
    alice_node, bob_node = cluster["n1"].server, cluster["n3"].server
    assert alice_node is not None and bob_node is not None
    alice = await connect(alice_node, "alice@localhost/a", USERS["alice"], transport="plain")
    bob = await connect(bob_node, "bob@localhost/b", USERS["bob"], transport="plain")
    try:
        for client in (alice, bob):
            client.register_plugin("xep_0004")
            client.register_plugin("xep_0045")
        await create(alice, room, "Alice")
        await bob.plugin["xep_0045"].join_muc_wait(room, "Bob", timeout=10)
        seen: list[int] = []
        echoed: list[int] = []
        refused: list[tuple[int, str, str]] = []
        bob.add_event_handler("groupchat_message", numbered(seen))
        alice.add_event_handler("groupchat_message", numbered(echoed))
        alice.add_event_handler(
            "message_error",
            lambda m: refused.append((int(m["body"]), m["error"]["condition"], m["error"]["text"])),
        )
        sent = 0

        async def flood(seconds: float) -> None:
            nonlocal sent
            end = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < end:
                for _ in range(10):
                    alice.send_message(mto=room, mbody=str(sent), mtype="groupchat")
                    sent += 1
                await asyncio.sleep(0.01)

        await flood(0.5)
        stopping = asyncio.ensure_future(asyncio.to_thread(cluster["n2"].stop))
        while not stopping.done():
            await flood(0.05)
        assert await stopping == 0
        await flood(0.5)
        deadline = asyncio.get_running_loop().time() + 15
        while len(echoed) + len(refused) < sent or len(seen) < len(echoed):
            assert asyncio.get_running_loop().time() < deadline, (
                f"{sent} sent, {len(echoed)} echoed, {len(refused)} refused, {len(seen)} seen"
            )
            await asyncio.sleep(0.1)
        # only the flood control's wait: never "cannot be reached" during the move
        assert {(c, t) for _, c, t in refused} <= {("resource-constraint", "too many stanzas")}
        assert sorted(echoed + [n for n, _, _ in refused]) == list(range(sent))
        overtaken = sum(a > b for a, b in itertools.pairwise(seen))
        assert seen == sorted(echoed), f"{overtaken} of {len(seen)} out of order"
        assert "handed over to node n3" in cluster["n2"].log_text()
    finally:
        for client in (alice, bob):
            client.disconnect()
        await asyncio.sleep(0.5)
