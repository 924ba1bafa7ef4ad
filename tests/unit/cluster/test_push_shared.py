"""`RedisNotificationLimiter` on a real redis-server: one notification per
registration per interval whichever node admits the messages, the rest counted
into one deferred notification; each node on its own while Redis is away."""

from __future__ import annotations

import asyncio

from chatgate.cluster.node import ClusterNode
from chatgate.cluster.push import RedisNotificationLimiter
from chatgate.modules.push_limits import Defer, LocalNotificationLimiter, Send
from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import options, wait_for

KEY = "alice@x\0push.example\0node1"


async def _limiter(server: RedisServer, name: str, interval: float) -> RedisNotificationLimiter:
    node = ClusterNode(options(server), name=name)
    await node.start()
    return RedisNotificationLimiter(node, interval, LocalNotificationLimiter(interval, 100))


async def test_two_nodes_share_each_registrations_interval(redis_server: RedisServer) -> None:
    a = await _limiter(redis_server, "a", 0.5)
    b = await _limiter(redis_server, "b", 0.5)
    try:
        assert await a.admit(KEY, 0.0, "bob@x", "one") == Send(1)
        deferred = await b.admit(KEY, 0.0, "carol@x", "two")
        assert isinstance(deferred, Defer) and 0.2 < deferred.delay <= 0.5
        # only the node told to defer flushes; the others count theirs in
        assert await a.admit(KEY, 0.0, "dave@x", "three") is None
        assert await b.admit(KEY, 0.0, "erin@x", "four") is None
        # another registration has its own slot
        assert await b.admit(KEY + "2", 0.0, "bob@x", "x") == Send(1)
        await asyncio.sleep(deferred.delay)
        assert await b.flush(KEY, 0.0) == (3, "erin@x", "four")
        assert await a.flush(KEY, 0.0) is None  # flushed once
        # the flush started a new interval
        again = await a.admit(KEY, 0.0, "bob@x", "five")
        assert isinstance(again, Defer)
        assert await a.flush(KEY, 0.0) == (1, "bob@x", "five")
        await asyncio.sleep(0.55)
        assert await b.admit(KEY, 0.0, "bob@x", "six") == Send(1)
    finally:
        await a.node.close()
        await b.node.close()


async def test_racing_nodes_never_both_send(redis_server: RedisServer) -> None:
    nodes = [await _limiter(redis_server, f"n{i}", 5.0) for i in range(3)]
    try:
        decisions = await asyncio.gather(
            *(n.admit(KEY, 0.0, "bob@x", str(i)) for i in range(30) for n in nodes)
        )
        assert decisions.count(Send(1)) == 1
        assert sum(isinstance(d, Defer) for d in decisions) == 1
        assert decisions.count(None) == 88
    finally:
        for n in nodes:
            await n.node.close()


async def test_redis_away_each_node_limits_on_its_own_then_shares_again(
    redis_server: RedisServer,
) -> None:
    a = await _limiter(redis_server, "a", 10.0)
    try:
        redis_server.stop()
        await wait_for(lambda: not a.node.connected, timeout=5)
        assert await a.admit(KEY, 0.0, "bob@x", "one") == Send(1)
        assert await a.admit(KEY, 1.0, "bob@x", "two") == Defer(9.0)
        assert await a.flush(KEY, 10.0) == (1, "bob@x", "two")
        redis_server.start()
        await wait_for(lambda: a.node.connected, timeout=10)
        assert await a.admit(KEY, 11.0, "bob@x", "three") == Send(1)
        assert isinstance(await a.admit(KEY, 11.0, "bob@x", "four"), Defer)
    finally:
        await a.node.close()
