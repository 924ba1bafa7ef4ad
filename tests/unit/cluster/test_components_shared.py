"""Component claims and relayed stanzas across two nodes over a real redis-server."""

from __future__ import annotations

import asyncio

from chatgate.cluster.node import ClusterNode
from chatgate.cluster.options import ClusterOptions
from chatgate.cluster.peers import RedisPeers
from chatgate.components.cluster import ComponentRelay, RedisComponentLocator
from tests.redis_server import RedisServer


async def nodes(server: RedisServer) -> tuple[ClusterNode, ClusterNode]:
    opts = ClusterOptions(
        enabled=True, redis_url=server.url, heartbeat_interval=0.2, node_timeout=1.0
    )
    a, b = ClusterNode(opts, name="a"), ClusterNode(opts, name="b")
    await a.start()
    await b.start()
    return a, b


async def test_one_node_holds_a_component_until_it_releases_it(redis_server: RedisServer) -> None:
    a, b = await nodes(redis_server)
    on_a, on_b = RedisComponentLocator(a), RedisComponentLocator(b)
    try:
        assert await on_a.claim("gw.example.org", "a")
        assert not await on_b.claim("gw.example.org", "b")
        assert await on_b.holder("gw.example.org") == "a"
        await on_b.release("gw.example.org", "b")  # not b's: nothing happens
        assert await on_a.holder("gw.example.org") == "a"
        await on_a.release("gw.example.org", "a")
        assert await on_b.holder("gw.example.org") is None
        assert await on_b.claim("gw.example.org", "b")
    finally:
        await a.close()
        await b.close()


async def test_a_claim_lives_while_renewed_and_expires_when_its_node_stops_renewing(
    redis_server: RedisServer,
) -> None:
    a, b = await nodes(redis_server)
    on_a, on_b = RedisComponentLocator(a), RedisComponentLocator(b)
    try:
        assert await on_a.claim("gw.example.org", "a")
        on_a.start()
        await asyncio.sleep(1.6)  # longer than node_timeout: kept alive by renewal
        assert await on_b.holder("gw.example.org") == "a"
        assert on_a._renewal is not None
        on_a._renewal.cancel()  # as a node that died: no release, no renewal
        await asyncio.sleep(1.3)
        assert await on_b.holder("gw.example.org") is None
        assert await on_b.claim("gw.example.org", "b")
    finally:
        await a.close()
        await b.close()


async def test_stanzas_reach_the_node_holding_the_component(redis_server: RedisServer) -> None:
    a, b = await nodes(redis_server)
    got: list[tuple[str, bytes]] = []

    def here(domain: str, data: bytes) -> bool:
        got.append((domain, data))
        return True

    on_a, on_b = RedisComponentLocator(a), RedisComponentLocator(b)
    peers_a, peers_b = RedisPeers(a), RedisPeers(b)
    relay_a = ComponentRelay(peers_a, on_a, here)
    relay_b = ComponentRelay(peers_b, on_b, lambda d, s: False)
    try:
        await relay_a.start()
        await relay_b.start()
        await a.subscribed()
        await b.subscribed()
        for _ in range(100):  # each node sees the other's heartbeat
            if "a" in b.others:
                break
            await asyncio.sleep(0.05)
        stanza = b"<message to='x@gw.example.org'><body>one\ntwo</body></message>"
        # Nobody holds it: not sent.
        assert not await relay_b.forward("gw.example.org", stanza)
        assert await on_a.claim("gw.example.org", "a")
        assert await relay_b.forward("gw.example.org", stanza)
        # The holder itself never forwards to itself.
        assert not await relay_a.forward("gw.example.org", stanza)
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.02)
        assert got == [("gw.example.org", stanza)]
        await on_a.stop()  # releases what it holds
        assert await on_b.holder("gw.example.org") is None
    finally:
        await a.close()
        await b.close()
