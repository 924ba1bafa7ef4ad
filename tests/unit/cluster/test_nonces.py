"""Digest nonce counts, local and in Redis: the same rules (each nc taken once per
nonce, a bounded table never reopens a replay), and in Redis one count for every
node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from chatgate.cluster.node import ClusterNode
from chatgate.cluster.nonces import RedisNonceCounts
from chatgate.cluster.options import ClusterOptions
from chatgate.http.auth.nonces import LocalNonceCounts, NonceCounts, NonceUse
from tests.redis_server import RedisServer

Make = Callable[..., NonceCounts]


def cluster_options(server: RedisServer) -> ClusterOptions:
    return ClusterOptions.model_validate(
        {"enabled": True, "redis_url": server.url, "heartbeat_interval": 0.1, "node_timeout": 0.5}
    )


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[list[ClusterNode]]:
    started = [ClusterNode(cluster_options(redis_server), name=n) for n in ("a", "b")]
    for node in started:
        await node.start()
    yield started
    for node in started:
        await node.close()


@pytest.fixture(params=["local", "redis"])
def make(request: pytest.FixtureRequest) -> Make:
    if request.param == "local":
        return lambda lifetime, max_entries=65536: LocalNonceCounts(lifetime, max_entries)
    nodes: list[ClusterNode] = request.getfixturevalue("nodes")
    return lambda lifetime, max_entries=65536: RedisNonceCounts(nodes[0], lifetime, max_entries)


async def test_counts_must_rise(make: Make) -> None:
    counts = make(300)
    assert await counts.advance("n", 100, 1, 100) is NonceUse.FRESH
    assert await counts.advance("n", 100, 1, 101) is NonceUse.REPLAYED
    assert await counts.advance("n", 100, 3, 102) is NonceUse.FRESH
    assert await counts.advance("n", 100, 2, 103) is NonceUse.REPLAYED
    assert await counts.advance("other", 100, 1, 103) is NonceUse.FRESH


async def test_evicted_nonces_are_forgotten_not_reopened(make: Make) -> None:
    counts = make(300, 2)
    assert await counts.advance("a", 10, 1, 20) is NonceUse.FRESH
    assert await counts.advance("b", 11, 1, 20) is NonceUse.FRESH
    assert await counts.advance("c", 12, 1, 20) is NonceUse.FRESH  # pushes "a" out
    assert await counts.advance("a", 10, 1, 21) is NonceUse.FORGOTTEN
    assert await counts.advance("a", 10, 2, 21) is NonceUse.FORGOTTEN
    assert await counts.advance("d", 13, 1, 21) is NonceUse.FRESH  # issued after the floor


async def test_entries_past_the_lifetime_are_dropped(nodes: list[ClusterNode]) -> None:
    counts = RedisNonceCounts(nodes[0], lifetime=10)
    await counts.advance("a", 0, 1, 0)
    await counts.advance("b", 5, 1, 5)
    await counts.advance("c", 20, 1, 20)
    assert await counts.size() == 1


async def test_a_count_taken_on_one_node_is_refused_on_another(nodes: list[ClusterNode]) -> None:
    a, b = (RedisNonceCounts(node, lifetime=300) for node in nodes)
    assert await a.advance("n", 100, 1, 100) is NonceUse.FRESH
    assert await b.advance("n", 100, 1, 101) is NonceUse.REPLAYED
    assert await b.advance("n", 100, 2, 101) is NonceUse.FRESH
    assert await a.advance("n", 100, 2, 102) is NonceUse.REPLAYED


async def test_concurrent_uses_of_one_count_on_two_nodes_take_it_once(
    nodes: list[ClusterNode],
) -> None:
    a, b = (RedisNonceCounts(node, lifetime=300) for node in nodes)
    uses = await asyncio.gather(
        *(counts.advance("n", 100, nc, 100) for nc in range(1, 21) for counts in (a, b))
    )
    pairs = list(zip(uses[::2], uses[1::2], strict=True))
    assert all(pair.count(NonceUse.FRESH) <= 1 for pair in pairs)  # each nc taken once
    assert uses.count(NonceUse.REPLAYED) >= 20  # at least the second use of each nc


async def test_redis_unreachable_answers_forgotten_never_fresh(
    nodes: list[ClusterNode], redis_server: RedisServer
) -> None:
    counts = RedisNonceCounts(nodes[0], lifetime=300)
    redis_server.stop()
    assert await counts.advance("n", 100, 1, 100) is NonceUse.FORGOTTEN
