"""`BlocklistSync` between real nodes on a real redis-server: a block made on one
node reaches the others before the user's IQ is answered, a joining node hears
the recent changes, and a node resynchronises after Redis returns.  The
blocklists themselves (`modules/blocking.py`) are stood in for by a recorder:
what they do with a change is tested in tests/unit/modules/test_blocking.py and,
across real nodes, in tests/e2e/test_cluster_sync.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import pytest

from chatgate.cluster import blocking as sync_module
from chatgate.cluster.blocking import BlocklistSync
from chatgate.cluster.node import ClusterNode
from chatgate.cluster.peers import RedisPeers
from chatgate.modules.blocking import Blocklists, LocalBlocklistCache
from chatgate.storage.database import Database
from chatgate.storage.repositories.blocking import BlocklistRepository
from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import options, wait_for


class Lists:
    """What `BlocklistSync` calls on `modules.blocking.Blocklists`."""

    def __init__(self) -> None:
        self.learnt: list[tuple[str, frozenset[str]]] = []
        self.blockers: set[str] | None = set()
        self.resyncs = 0
        self.share: Callable[[str, frozenset[str]], Awaitable[None]] | None = None

    def learned(self, bare: str, items: frozenset[str]) -> None:
        self.learnt.append((bare, items))

    async def resync(self) -> None:
        self.resyncs += 1


async def _node(server: RedisServer, name: str) -> tuple[BlocklistSync, Lists]:
    node = ClusterNode(options(server), name=name)
    lists = Lists()
    sync = BlocklistSync(node, RedisPeers(node), lists)
    await node.start()
    await node.subscribed()
    return sync, lists


async def test_a_change_reaches_the_other_nodes_before_the_share_returns(
    redis_server: RedisServer,
) -> None:
    a, _ = await _node(redis_server, "a")
    b, b_lists = await _node(redis_server, "b")
    c, c_lists = await _node(redis_server, "c")
    try:
        await wait_for(lambda: all(len(s.peers.alive()) == 3 for s in (a, b, c)))
        b_lists.learnt.clear()
        c_lists.learnt.clear()
        assert a.lists.share is not None
        await a.lists.share("alice@x", frozenset({"bob@x", "evil.example"}))
        # Redis has handed the message on; a turn or two of each loop applies it
        await wait_for(lambda: b_lists.learnt and c_lists.learnt, timeout=1)
        assert b_lists.learnt == [("alice@x", frozenset({"bob@x", "evil.example"}))]
        assert c_lists.learnt == b_lists.learnt
        await a.lists.share("alice@x", frozenset())
        await wait_for(lambda: len(b_lists.learnt) == 2, timeout=1)
        assert b_lists.learnt[-1] == ("alice@x", frozenset())
    finally:
        for s in (a, b, c):
            await s.node.close()


async def test_a_joining_node_hears_the_recent_changes_or_distrusts_its_set(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = await _node(redis_server, "a")
    try:
        await a.share("alice@x", frozenset({"bob@x"}))
        await a.share("carol@x", frozenset({"dave@x"}))
        b, b_lists = await _node(redis_server, "b")
        try:
            await wait_for(lambda: len(b_lists.learnt) == 2, timeout=5)
            assert sorted(b_lists.learnt) == [
                ("alice@x", frozenset({"bob@x"})),
                ("carol@x", frozenset({"dave@x"})),
            ]
        finally:
            await b.node.close()
        monkeypatch.setattr(sync_module, "MAX_RECENT", 3)
        for i in range(5):
            await a.share(f"u{i}@x", frozenset({"bob@x"}))
        c, c_lists = await _node(redis_server, "c")
        try:
            await wait_for(lambda: c_lists.blockers is None, timeout=5)
        finally:
            await c.node.close()
    finally:
        await a.node.close()


async def test_redis_away_the_share_answers_and_the_return_resynchronises(
    redis_server: RedisServer,
) -> None:
    a, a_lists = await _node(redis_server, "a")
    try:
        redis_server.stop()
        await wait_for(lambda: not a.node.connected, timeout=5)
        await asyncio.wait_for(a.share("alice@x", frozenset({"bob@x"})), 5)
        assert a_lists.resyncs == 0
        redis_server.start()
        await wait_for(lambda: a_lists.resyncs == 1, timeout=10)
    finally:
        await a.node.close()


async def test_malformed_messages_are_dropped(redis_server: RedisServer) -> None:
    a, _ = await _node(redis_server, "a")
    b, b_lists = await _node(redis_server, "b")
    try:
        await wait_for(lambda: len(a.peers.alive()) == len(b.peers.alive()) == 2)
        b_lists.learnt.clear()
        for junk in (b"{", b'{"b": "x@y"}', b'{"b": "x@y", "i": "bob"}', b'{"recent": 3}'):
            a.peers.send("b", "blocking", junk)
        await a.share("alice@x", frozenset({"bob@x"}))
        await wait_for(lambda: bool(b_lists.learnt), timeout=2)
        assert b_lists.learnt == [("alice@x", frozenset({"bob@x"}))]
    finally:
        await a.node.close()
        await b.node.close()


# -- with the module's real blocklists, over one database ---------------------------------


class Ctx:
    """What `Blocklists` uses of the server's context: spawning, and which accounts
    have a session on this node."""

    def __init__(self, bound: set[str]) -> None:
        self.bound = bound
        self.tasks: set[asyncio.Future[None]] = set()
        directory = SimpleNamespace(bound_here=lambda bare: bare in self.bound)
        self.router = SimpleNamespace(directory=directory, route=lambda origin, stanza: None)

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def _real(
    server: RedisServer, name: str, repository: BlocklistRepository, bound: set[str]
) -> tuple[BlocklistSync, Blocklists]:
    node = ClusterNode(options(server), name=name)
    lists = Blocklists(
        Ctx(bound),  # type: ignore[arg-type]
        repository,
        LocalBlocklistCache(100, 1 << 20),
    )
    sync = BlocklistSync(node, RedisPeers(node), lists)
    await node.start()
    await node.subscribed()
    await lists.learn_blockers()
    return sync, lists


async def _block(lists: Blocklists, owner: tuple[str, str], jids: list[str]) -> None:
    """What `BlockingCommands.set` does around the database write."""
    await lists.repository.block(owner, jids, 100)
    current = frozenset(await lists.repository.items(owner))
    bare = f"{owner[0]}@{owner[1]}"
    lists.changed(bare, current)
    assert lists.share is not None
    await lists.share(bare, current)


async def test_real_blocklists_apply_a_block_made_on_another_node_at_once(
    redis_server: RedisServer, db: Database
) -> None:
    await db.accounts.create("alice", "x", {})
    repository = BlocklistRepository(db.engine)
    # alice is online on b (her empty list pinned there); c has never read it
    a, a_lists = await _real(redis_server, "a", repository, {"alice@x"})
    b, b_lists = await _real(redis_server, "b", repository, {"alice@x"})
    c, c_lists = await _real(redis_server, "c", repository, set())
    try:
        assert await b_lists.get_or_load("alice@x") == frozenset()
        assert c_lists.get("alice@x") == frozenset()  # not a blocker: no read
        await wait_for(lambda: all(len(s.peers.alive()) == 3 for s in (a, b, c)))
        await _block(a_lists, ("alice", "x"), ["bob@x"])
        await wait_for(lambda: b_lists.get("alice@x") == frozenset({"bob@x"}), timeout=1)
        await wait_for(lambda: c_lists.get("alice@x") == frozenset({"bob@x"}), timeout=1)
        assert c_lists.blockers is not None and "alice@x" in c_lists.blockers
        # c keeps it in memory for the presence filter, which cannot wait
        assert c_lists.cache.get("alice@x") == frozenset({"bob@x"}) and c_lists.cache.blocking == 1

        # Redis away: a change on a is not seen on b; when it returns, b reads again.
        redis_server.stop()
        await wait_for(lambda: not b.node.connected and not a.node.connected, timeout=5)
        await _block(a_lists, ("alice", "x"), ["mallory@x"])
        await asyncio.sleep(0.2)
        assert b_lists.get("alice@x") == frozenset({"bob@x"})  # what it knew keeps applying
        redis_server.start()
        await wait_for(
            lambda: b_lists.get("alice@x") == frozenset({"bob@x", "mallory@x"}), timeout=15
        )
        await wait_for(
            lambda: c_lists.get("alice@x") == frozenset({"bob@x", "mallory@x"}), timeout=15
        )
    finally:
        for s in (a, b, c):
            await s.node.close()


async def test_a_change_that_reached_not_every_node_is_sent_again(
    redis_server: RedisServer,
) -> None:
    a, _ = await _node(redis_server, "a")
    b, b_lists = await _node(redis_server, "b")
    try:
        await wait_for(lambda: len(a.peers.alive()) == len(b.peers.alive()) == 2)
        b_lists.learnt.clear()
        sent = a.peers.broadcast
        dropped: list[bytes] = []

        def lossy(topic: str, payload: bytes) -> int:
            if not dropped:
                dropped.append(payload)  # as when this node's queue to Redis is full
                return 0
            return sent(topic, payload)

        a.peers.broadcast = lossy  # type: ignore[method-assign]
        await a.share("alice@x", frozenset({"bob@x"}))
        assert dropped and not b_lists.learnt
        await wait_for(lambda: b_lists.learnt == [("alice@x", frozenset({"bob@x"}))], timeout=3)
    finally:
        await a.node.close()
        await b.node.close()
