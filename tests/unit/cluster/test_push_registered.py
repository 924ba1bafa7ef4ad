"""`ClusterRegisteredAccounts` on a real redis-server: an enable stored on one
node reaches every node's set, and a node that may have missed one reads every
account until it has read the set again.  The database is a set of bare JIDs
here (what `PushRepository.registered` returns); `test_push_hibernated.py` runs
the same through real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest

from chatgate.cluster.node import ClusterNode, ClusterUnavailable
from chatgate.cluster.push_registered import ClusterRegisteredAccounts
from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import options, wait_for


class Database:
    """The accounts with a registration, as the repository reads them."""

    def __init__(self) -> None:
        self.registered: set[str] = set()
        self.reads = 0
        #: the next reads take their snapshot, then wait for these, in order
        self.holds: list[asyncio.Event] = []

    async def load(self, limit: int) -> set[str] | None:
        self.reads += 1
        snapshot = set(self.registered)
        if self.holds:
            await self.holds.pop(0).wait()
        return snapshot if len(snapshot) <= limit else None


class Spawner:
    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def __call__(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def _accounts(
    server: RedisServer, name: str, db: Database, limit: int = 100
) -> ClusterRegisteredAccounts:
    node = ClusterNode(options(server), name=name)
    await node.start()
    accounts = ClusterRegisteredAccounts(node, db.load, Spawner(), limit)
    await accounts.start()
    return accounts


@pytest.fixture
async def db() -> Database:
    return Database()


@pytest.fixture
async def pair(redis_server: RedisServer, db: Database) -> AsyncIterator[tuple[Any, Any]]:
    a = await _accounts(redis_server, "a", db)
    b = await _accounts(redis_server, "b", db)
    # a reads again when it sees b join (`_joined`): done before each test begins
    await wait_for(lambda: db.reads == 3 and a._heard is None)
    try:
        yield a, b
    finally:
        for accounts in (a, b):
            await accounts.node.close()


async def enable(db: Database, accounts: ClusterRegisteredAccounts, bare: str) -> None:
    """What the module does: store, then tell."""
    db.registered.add(bare)
    await accounts.added(bare)


async def test_an_enable_on_one_node_reaches_the_others_set(
    pair: tuple[ClusterRegisteredAccounts, ClusterRegisteredAccounts], db: Database
) -> None:
    a, b = pair
    assert not a.may_have("alice@x") and not b.may_have("alice@x")
    await enable(db, b, "alice@x")
    assert b.may_have("alice@x")
    await wait_for(lambda: a.may_have("alice@x"))
    assert not a.may_have("bob@x")  # the set is still trusted: no read for bob
    assert db.reads == 3  # one per node at start, and a's when b joined


async def test_a_node_that_lost_redis_reads_every_account_until_it_read_again(
    redis_server: RedisServer,
    pair: tuple[ClusterRegisteredAccounts, ClusterRegisteredAccounts],
    db: Database,
) -> None:
    a, b = pair
    redis_server.stop()
    await wait_for(lambda: not a.node.connected and not b.node.connected)
    assert a.may_have("nobody@x")  # may have missed an enable: read

    db.registered.add("carol@x")  # an enable a could not hear of
    released = asyncio.Event()
    db.holds += [released, released]  # each node's read again, held
    redis_server.start()
    await wait_for(lambda: a.node.connected and b.node.connected, timeout=10)
    await wait_for(lambda: db.reads >= 5)
    # Connected, the set read before the loss still in hand: not trusted yet.
    assert a.may_have("nobody@x") and b.may_have("nobody@x")
    released.set()
    await wait_for(lambda: a.known is not None and "carol@x" in a.known, timeout=10)
    await wait_for(lambda: not a.may_have("nobody@x"))  # trusted again once read
    assert a.may_have("carol@x")


async def test_an_enable_the_others_missed_makes_every_node_read_again(
    pair: tuple[ClusterRegisteredAccounts, ClusterRegisteredAccounts],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the storing node could not reach Redis: node a never lost it, so only
    b's ``*`` at its reconnection makes a read the set again."""
    a, b = pair

    async def unreachable(channel: str, data: bytes) -> int:
        raise ClusterUnavailable("gone")

    monkeypatch.setattr(b.node, "publish", unreachable)
    await enable(db, b, "erin@x")
    assert b.unannounced
    monkeypatch.undo()
    await asyncio.sleep(0.2)
    assert not a.may_have("erin@x")  # a missed it and does not know yet

    await b._reconnected()  # what b's node calls once Redis is back
    await wait_for(lambda: a.may_have("erin@x"))
    assert not b.unannounced
    assert not a.may_have("nobody@x")


async def test_an_enable_heard_while_a_node_reads_is_kept(
    redis_server: RedisServer,
    pair: tuple[ClusterRegisteredAccounts, ClusterRegisteredAccounts],
    db: Database,
) -> None:
    """The read's snapshot was taken before the enable was stored."""
    a, b = pair
    released = asyncio.Event()
    db.holds.append(released)
    reading = asyncio.create_task(a.read())
    await wait_for(lambda: db.reads == 4)  # the snapshot is taken
    await enable(db, b, "frank@x")
    await wait_for(lambda: a._heard is not None and "frank@x" in a._heard)
    released.set()
    await reading
    assert a.may_have("frank@x")
    assert not a.may_have("nobody@x")


async def test_a_read_that_ends_after_a_later_one_is_dropped(
    pair: tuple[ClusterRegisteredAccounts, ClusterRegisteredAccounts], db: Database
) -> None:
    a, _ = pair
    released = asyncio.Event()
    db.holds.append(released)
    older = asyncio.create_task(a.read())  # its snapshot has no gina
    await wait_for(lambda: db.reads == 4)
    db.registered.add("gina@x")
    await a.read()  # a later read (``*`` from a node), which has her
    assert a.may_have("gina@x")
    released.set()
    await older
    assert a.may_have("gina@x")  # the older snapshot did not replace it
    assert not a.may_have("nobody@x")


async def test_past_the_limit_every_account_is_read(
    redis_server: RedisServer, db: Database
) -> None:
    a = await _accounts(redis_server, "a", db, limit=2)
    try:
        await enable(db, a, "one@x")
        await enable(db, a, "two@x")
        assert not a.may_have("three@x")
        await enable(db, a, "three@x")
        assert a.known is None and a.may_have("anyone@x")
    finally:
        await a.node.close()


async def test_a_node_joining_makes_the_others_read_again(
    redis_server: RedisServer,
    pair: tuple[ClusterRegisteredAccounts, ClusterRegisteredAccounts],
    db: Database,
) -> None:
    """An enable stored by a node of an earlier release is never published; the
    next node to join (the next one upgraded) makes every node read it."""
    a, _ = pair
    db.registered.add("hana@x")  # stored, not told
    assert not a.may_have("hana@x")
    joining = await _accounts(redis_server, "c", db)
    try:
        await wait_for(lambda: a.may_have("hana@x"), timeout=5)
        assert not a.may_have("nobody@x")
    finally:
        await joining.node.close()
