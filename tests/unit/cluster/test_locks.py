"""Account locks across two nodes over a real redis-server."""

from __future__ import annotations

import asyncio

from chatgate.cluster.locks import ClusterAccountLocks
from chatgate.cluster.node import ClusterNode
from chatgate.cluster.options import ClusterOptions
from chatgate.modules.roster.locks import LocalAccountLocks
from tests.redis_server import RedisServer


async def nodes(server: RedisServer) -> tuple[ClusterNode, ClusterNode]:
    opts = ClusterOptions(enabled=True, redis_url=server.url)
    a, b = ClusterNode(opts, name="a"), ClusterNode(opts, name="b")
    await a.start()
    await b.start()
    return a, b


async def test_changes_of_one_account_take_turns_across_nodes(redis_server: RedisServer) -> None:
    a, b = await nodes(redis_server)
    try:
        locks = [ClusterAccountLocks(LocalAccountLocks(), n) for n in (a, b)]
        inside = 0
        most = 0
        order: list[str] = []

        async def change(i: int) -> None:
            nonlocal inside, most
            async with locks[i % 2].hold("alice@example.net", "bob@example.net"):
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.01)  # a storage round trip
                order.append(f"{i}")
                inside -= 1

        await asyncio.gather(*(change(i) for i in range(10)))
        assert most == 1
        assert len(order) == 10
        # Nothing is left held.
        assert await a.redis.keys(a.key("lock", "*")) == []
    finally:
        await a.close()
        await b.close()


async def test_other_accounts_do_not_wait(redis_server: RedisServer) -> None:
    a, b = await nodes(redis_server)
    try:
        la = ClusterAccountLocks(LocalAccountLocks(), a)
        lb = ClusterAccountLocks(LocalAccountLocks(), b)
        async with la.hold("alice@example.net"):
            await asyncio.wait_for(_enter(lb, "carol@example.net"), 1)
    finally:
        await a.close()
        await b.close()


async def _enter(locks: ClusterAccountLocks, name: str) -> None:
    async with locks.hold(name):
        pass


async def test_without_redis_the_local_lock_still_holds(redis_server: RedisServer) -> None:
    a, b = await nodes(redis_server)
    try:
        locks = ClusterAccountLocks(LocalAccountLocks(), a)
        redis_server.stop()
        inside = 0
        most = 0

        async def change() -> None:
            nonlocal inside, most
            async with locks.hold("alice@example.net"):
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(change(), change(), change())
        assert most == 1
    finally:
        redis_server.start()
        await a.close()
        await b.close()


async def test_a_lock_left_by_a_dead_node_expires(redis_server: RedisServer) -> None:
    a, b = await nodes(redis_server)
    try:
        await a.redis.set(a.key("lock", "alice@example.net"), "dead", px=200)
        locks = ClusterAccountLocks(LocalAccountLocks(), b)
        await asyncio.wait_for(_enter(locks, "alice@example.net"), 2)
    finally:
        await a.close()
        await b.close()
