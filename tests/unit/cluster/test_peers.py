"""`RedisPeers` between real nodes on a real redis-server, and `LocalPeers`."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from chatgate.cluster import early as early_module
from chatgate.cluster.node import ClusterNode
from chatgate.cluster.peers import RedisPeers
from chatgate.peers import LocalPeers, PeerRefused, PeerUnreachable, rendezvous_owner
from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import kill, options, wait_for


async def _pair(server: RedisServer, *, b_ready: bool = True) -> tuple[RedisPeers, RedisPeers]:
    """Nodes a and b, started (`ready`, as at the end of `Server.start`; b only
    when `b_ready`: else it is still setting its modules up)."""
    a = RedisPeers(ClusterNode(options(server), name="a"))
    b = RedisPeers(ClusterNode(options(server), name="b"))
    await a.node.start()
    await b.node.start()
    await a.node.subscribed()
    await b.node.subscribed()
    await wait_for(lambda: a.alive() == b.alive() == {"a", "b"})
    a.ready()
    if b_ready:
        b.ready()
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


async def test_a_starting_node_keeps_messages_until_their_handler_registers(
    redis_server: RedisServer,
) -> None:
    """The others count b in from its first heartbeat; its modules register their
    handlers later.  What came meanwhile goes to the handler when it registers,
    in order and before what comes after; what no handler took by `ready` is
    dropped then, and from then on a topic nobody handles drops at once."""
    a, b = await _pair(redis_server, b_ready=False)
    got: list[bytes] = []
    try:
        for i in range(30):
            assert a.send("b", "muc", str(i).encode())
        assert a.send("b", "nobody-handles", b"x")
        await wait_for(lambda: b._early.bytes == sum(len(str(i)) for i in range(30)) + 1)
        b.on_message("muc", lambda sender, payload: got.append(payload))
        for i in range(30, 40):  # may arrive before the kept ones are handed over
            assert a.send("b", "muc", str(i).encode())
        await wait_for(lambda: len(got) == 40)
        assert got == [str(i).encode() for i in range(40)]
        assert b._early.bytes == len(b"x")
        b.ready()
        assert b._early.bytes == 0 and not b._early.waiting((False, "nobody-handles"))
        assert a.send("b", "also-nobody", b"y")
        assert a.send("b", "muc", b"40")
        await wait_for(lambda: len(got) == 41)
        assert b._early.bytes == 0
    finally:
        await a.node.close()
        await b.node.close()


async def test_what_is_kept_for_a_registered_handler_reaches_it_even_at_ready(
    redis_server: RedisServer,
) -> None:
    """`ready` in the same loop turn as the registration: the kept messages go to
    the handler, not dropped as if nobody handled them."""
    a, b = await _pair(redis_server, b_ready=False)
    got: list[bytes] = []
    try:
        assert a.send("b", "muc", b"early")
        await wait_for(lambda: b._early.waiting((False, "muc")))
        b.on_message("muc", lambda sender, payload: got.append(payload))
        b.ready()
        assert got == [b"early"]
    finally:
        await a.node.close()
        await b.node.close()


async def test_a_starting_node_keeps_a_bounded_number_of_bytes(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(early_module, "MAX_BYTES", 1000)
    a, b = await _pair(redis_server, b_ready=False)
    got: list[bytes] = []
    try:
        for i in range(30):
            assert a.send("b", "muc", b"%03d" % i + b"." * 97)  # 100 bytes each
        assert a.send("b", "ping", b"done")
        pings: list[bytes] = []
        b.on_message("ping", lambda sender, payload: pings.append(payload))
        await wait_for(lambda: pings == [b"done"])
        assert b._early.bytes == 1000
        b.on_message("muc", lambda sender, payload: got.append(payload[:3]))
        await wait_for(lambda: len(got) == 10)
        await asyncio.sleep(0.05)
        assert got == [b"%03d" % i for i in range(10)]  # the first ten; the rest dropped
        assert b._early.bytes == 0
        monkeypatch.setattr(early_module, "MAX_BYTES", 0)
        with pytest.raises(PeerUnreachable, match="starting"):  # no room left: refused
            await a.request("b", "echo", b"x")
    finally:
        await a.node.close()
        await b.node.close()


async def test_a_request_a_starting_node_cannot_answer_yet_waits_a_moment_then_is_unreachable(
    redis_server: RedisServer,
) -> None:
    """A request for a handler still to come is kept a second at most: answered if
    the handler registers meanwhile, else refused as "starting", which the asker
    takes as unreachable (it tries again: a hop of a group chat stanza, a room's
    handover); once started, a topic nobody handles is a refusal."""
    a, b = await _pair(redis_server, b_ready=False)

    async def echo(sender: str, payload: bytes) -> bytes:
        return payload

    try:
        began = asyncio.get_running_loop().time()
        with pytest.raises(PeerUnreachable, match="starting"):
            await a.request("b", "echo", b"x")
        waited = asyncio.get_running_loop().time() - began
        assert early_module.REQUEST_SECONDS <= waited < early_module.REQUEST_SECONDS + 1
        asked = asyncio.ensure_future(a.request("b", "echo", b"y"))
        await wait_for(lambda: b._early.waiting((True, "echo")))
        b.on_request("echo", echo)
        assert await asked == b"y"
        asked = asyncio.ensure_future(a.request("b", "late", b"z"))
        await wait_for(lambda: b._early.waiting((True, "late")))
        b.ready()
        with pytest.raises(PeerRefused, match="no handler"):
            await asked
        with pytest.raises(PeerRefused, match="no handler"):
            await a.request("b", "unknown-topic", b"x")
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
