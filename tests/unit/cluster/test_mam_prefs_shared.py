"""The archive's preferences cache across nodes: new preferences stored on one
node are forgotten by the others' caches at once (real nodes on redis-server)."""

from __future__ import annotations

from chatgate.cluster.node import ClusterNode
from chatgate.cluster.peers import RedisPeers
from chatgate.modules.mam.policy import ArchivePrefs
from chatgate.modules.mam.service import LocalPrefsCache, share_prefs_changes
from chatgate.peers import LocalPeers
from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import options, wait_for


async def test_preferences_stored_on_one_node_are_forgotten_on_the_others(
    redis_server: RedisServer,
) -> None:
    nodes = [RedisPeers(ClusterNode(options(redis_server), name=n)) for n in ("a", "b", "c")]
    caches = [LocalPrefsCache(100) for _ in nodes]
    told = [share_prefs_changes(peers, cache) for peers, cache in zip(nodes, caches, strict=True)]
    for peers in nodes:
        await peers.node.start()
    try:
        for peers in nodes:
            await peers.node.subscribed()
        await wait_for(lambda: all(len(p.alive()) == 3 for p in nodes))
        old = ArchivePrefs("always")
        for cache in caches:
            cache.put("alice@localhost", old)
            cache.put("bob@localhost", old)
        caches[0].put("alice@localhost", ArchivePrefs("never"))  # a stored them
        told[0]("alice@localhost")
        await wait_for(lambda: caches[1].get("alice@localhost") is None)
        await wait_for(lambda: caches[2].get("alice@localhost") is None)
        assert caches[0].get("alice@localhost") == ArchivePrefs("never")  # its own stays
        assert all(cache.get("bob@localhost") == old for cache in caches)  # others untouched
    finally:
        for peers in nodes:
            await peers.node.close()


def test_one_process_tells_nobody_and_keeps_its_entry() -> None:
    cache = LocalPrefsCache(10)
    cache.put("alice@localhost", ArchivePrefs("roster"))
    tell = share_prefs_changes(LocalPeers(), cache)
    assert tell("alice@localhost") == 0
    assert cache.get("alice@localhost") == ArchivePrefs("roster")
