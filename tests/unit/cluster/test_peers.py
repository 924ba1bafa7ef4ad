"""`RedisPeers` between real nodes on a real redis-server, and `LocalPeers`."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from chatgate.cluster.node import ClusterNode
from chatgate.cluster.peers import RedisPeers
from chatgate.peers import LocalPeers, PeerRefused, PeerUnreachable, rendezvous_owner
from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import kill, options, wait_for


async def _pair(server: RedisServer) -> tuple[RedisPeers, RedisPeers]:
    a = RedisPeers(ClusterNode(options(server), name="a"))
    b = RedisPeers(ClusterNode(options(server), name="b"))
    await a.node.start()
    await b.node.start()
    await a.node.subscribed()
    await b.node.subscribed()
    await wait_for(lambda: a.alive() == b.alive() == {"a", "b"})
    return a, b


async def test_messages_reach_the_topics_handler_in_order(redis_server: RedisServer) -> None:
    a, b = await _pair(redis_server)
    got: list[tuple[str, bytes]] = []
    other: list[bytes] = []
    b.on_message("muc", lambda sender, payload: got.append((sender, payload)))
    b.on_message("sm", lambda sender, payload: other.append(payload))
    try:
        for i in range(50):
            assert a.send("b", "muc", str(i).encode())
        await wait_for(lambda: len(got) == 50)
        assert got == [("a", str(i).encode()) for i in range(50)]
        assert other == []
        assert a.broadcast("sm", b"x") == 1
        await wait_for(lambda: other == [b"x"])
        assert not a.send("nobody", "muc", b"lost")  # not alive: refused at once
    finally:
        await a.node.close()
        await b.node.close()


async def test_requests_get_the_handlers_answer_or_its_refusal(redis_server: RedisServer) -> None:
    a, b = await _pair(redis_server)

    async def double(sender: str, payload: bytes) -> bytes:
        await asyncio.sleep(0)
        if payload == b"bad":
            raise ValueError("no such room")
        return sender.encode() + b":" + payload * 2

    b.on_request("echo", double)
    try:
        answers = await asyncio.gather(
            *(a.request("b", "echo", str(i).encode()) for i in range(20))
        )
        assert answers == [f"a:{i}{i}".encode() for i in range(20)]
        with pytest.raises(PeerRefused, match="no such room"):
            await a.request("b", "echo", b"bad")
        with pytest.raises(PeerRefused, match="no handler"):
            await a.request("b", "unknown-topic", b"x")
        with pytest.raises(PeerUnreachable):
            await a.request("nobody", "echo", b"x")
    finally:
        await a.node.close()
        await b.node.close()


async def test_a_node_that_dies_fails_its_pending_requests_and_leaves_membership(
    redis_server: RedisServer,
) -> None:
    a, b = await _pair(redis_server)
    changes: list[frozenset[str]] = []
    a.on_change(changes.append)
    never = asyncio.Event()

    async def hang(sender: str, payload: bytes) -> bytes:
        await never.wait()
        return b""

    b.on_request("hang", hang)
    try:
        pending = asyncio.ensure_future(a.request("b", "hang", b"", timeout=30))
        await asyncio.sleep(0.1)
        await kill(b.node)
        with pytest.raises(PeerUnreachable, match="gone"):
            await asyncio.wait_for(pending, 10)
        assert frozenset({"a"}) in changes
        assert a.owner("room@conference.localhost") == "a"
    finally:
        never.set()
        await a.node.close()


async def test_a_joining_node_is_announced_to_membership_handlers(
    redis_server: RedisServer,
) -> None:
    a = RedisPeers(ClusterNode(options(redis_server), name="a"))
    changes: list[frozenset[str]] = []
    a.on_change(changes.append)
    await a.node.start()
    b = RedisPeers(ClusterNode(options(redis_server), name="b"))
    await b.node.start()
    try:
        await wait_for(lambda: frozenset({"a", "b"}) in changes)
    finally:
        await a.node.close()
        await b.node.close()


def test_rendezvous_owner_is_stable_and_moves_only_the_departed_nodes_keys() -> None:
    nodes = ["n1", "n2", "n3"]
    keys = [f"room{i}@conference.example" for i in range(3000)]
    before = {key: rendezvous_owner(key, nodes) for key in keys}
    assert before == {key: rendezvous_owner(key, reversed(nodes)) for key in keys}
    spread = Counter(before.values())
    assert all(800 < spread[node] < 1200 for node in nodes), spread
    after = {key: rendezvous_owner(key, ["n1", "n3"]) for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    assert moved and all(before[key] == "n2" for key in moved)


async def test_local_peers_own_everything_and_reach_nobody() -> None:
    peers = LocalPeers()
    assert not peers.clustered
    assert peers.owner("anything") == peers.name
    assert peers.alive() == {peers.name}
    assert not peers.send("other", "muc", b"x")
    assert peers.broadcast("muc", b"x") == 0
    with pytest.raises(PeerUnreachable):
        await peers.request("other", "muc", b"x")
