"""The live registry's test suite (`tests/unit/streams/test_live.py`) run against
the Redis registry (`cluster/live_streams.py`), plus what only a shared registry
has: two nodes deciding at once, and Redis going away."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from chatgate.cluster.live_streams import RedisLiveStreams
from chatgate.streams.live import LiveLimits, LiveReason, LiveUnavailable
from tests.redis_server import RedisServer
from tests.unit.streams.test_live import *  # noqa: F403  (the same tests, on Redis)
from tests.unit.streams.test_live import ALICE, BOB, NODE, T0, Make

_namespaces = itertools.count()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def make(redis_client: aioredis.Redis) -> Make:  # replaces test_live.py's local one
    """A fresh registry per call: its own key prefix on the test's redis-server."""

    def fresh(limits: LiveLimits | None = None) -> RedisLiveStreams:
        return RedisLiveStreams(redis_client, f"test{next(_namespaces)}:live:", limits)

    return fresh


async def test_two_nodes_publishing_one_stream_at_once_get_one_publisher(
    redis_server: RedisServer,
) -> None:
    clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(2)]
    try:
        nodes = [RedisLiveStreams(c, "shared:live:") for c in clients]
        verdicts = await asyncio.gather(
            *(
                nodes[i % 2].try_publish("live/x", f"user{i}@example.org", str(i), NODE, T0)
                for i in range(40)
            )
        )
        assert sum(v.accepted for v in verdicts) == 1
        assert {v.reason for v in verdicts if not v.accepted} == {LiveReason.BUSY}
        plays = await asyncio.gather(
            *(nodes[i % 2].play_started("live/x", None, f"v{i}", NODE, T0) for i in range(40))
        )
        assert sorted(p.viewers for p in plays) == list(range(1, 41))  # each counted once
        (row,) = await nodes[1].live()
        assert row.viewers == 40
        await asyncio.gather(
            *(nodes[i % 2].play_done("live/x", f"v{i}", NODE) for i in range(40)),
            *(nodes[i % 2].play_done("live/x", f"v{i}", NODE) for i in range(40)),  # twice
        )
        assert await nodes[0].counts() == (1, 0)
    finally:
        for client in clients:
            await client.aclose()


async def test_a_revocation_on_one_node_ends_renewals_on_another(
    redis_client: aioredis.Redis, redis_server: RedisServer
) -> None:
    other = aioredis.Redis.from_url(redis_server.url)
    try:
        a = RedisLiveStreams(redis_client, "shared:live:")
        b = RedisLiveStreams(other, "shared:live:")
        await a.try_publish("live/alice", ALICE, "1", NODE, T0, credential="key-a")
        assert [s.client_id for s in await b.revoke(T0 + 1, credential="key-a")] == ["1"]
        renewal = await a.try_publish("live/alice", ALICE, "1", NODE, T0 + 2, renewal=True)
        assert renewal.reason is LiveReason.ENDED
        assert (await a.try_publish("live/alice", BOB, "2", NODE, T0 + 3)).accepted
    finally:
        await other.aclose()


async def test_redis_unreachable_raises_never_decides(
    make: Make, redis_server: RedisServer
) -> None:
    live = make()
    await live.try_publish("live/a", ALICE, "1", NODE, T0)
    redis_server.stop()
    with pytest.raises(LiveUnavailable):
        await live.try_publish("live/a", BOB, "2", NODE, T0)
    with pytest.raises(LiveUnavailable):
        await live.play_started("live/a", None, "3", NODE, T0)
    with pytest.raises(LiveUnavailable):
        await live.live()
