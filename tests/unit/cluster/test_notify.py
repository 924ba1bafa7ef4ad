"""Credential changes reach every node: two nodes, each with its own database
connection and credential provider, on one SQLite file and one real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatgate.accounts import AccountService, LocalCredentialsChanged
from chatgate.auth.internal import (
    ACCOUNT_LOCKED,
    AWAITING_APPROVAL,
    InternalProvider,
    stamp_path,
)
from chatgate.auth.provider import NO_SUCH_KEYS
from chatgate.cluster.node import ClusterNode
from chatgate.cluster.notify import (
    ClusterCredentialsChanged,
    CommandLineCredentialsChanged,
    CredentialsFeed,
    CredentialsNotAnnounced,
    cluster_notifier,
)
from chatgate.storage.database import Database
from tests.redis_server import RedisServer
from tests.unit.accounts.conftest import RULES
from tests.unit.cluster.test_node import options, wait_for

DOMAIN = "example.org"


@dataclass
class Node:
    """One server process of the cluster: its database connection, its provider, its
    account service and its data directory."""

    db: Database
    provider: InternalProvider
    data_dir: Path
    node: ClusterNode | None = None
    feed: CredentialsFeed | None = None

    def local(self) -> LocalCredentialsChanged:
        return LocalCredentialsChanged(self.data_dir, self.provider_of, announce_new_names=False)

    def provider_of(self, domain: str) -> InternalProvider | None:
        return self.provider if domain == DOMAIN else None

    def service(self) -> AccountService:
        if self.node is None:
            return AccountService(self.db, RULES, self.local())
        return AccountService(self.db, RULES, cluster_notifier(self.node, self.local()))

    async def join(self, server: RedisServer, name: str) -> None:
        self.node = ClusterNode(options(server), name=name)
        self.feed = CredentialsFeed(
            self.node, self.data_dir, self.provider_of, lambda: [self.provider]
        )
        await self.node.start()

    async def close(self) -> None:
        await self.provider.close()
        if self.node is not None:
            await self.node.close()
        await self.db.close()


async def make_node(db_url: str, data_dir: Path) -> Node:
    db = await Database.open(db_url)
    provider = InternalProvider(db.accounts, cache_size=100, data_dir=data_dir)
    await provider.track_pending(db.pending_registrations)
    node = Node(db, provider, data_dir)
    await provider.warm()
    assert provider.complete  # the case where a new name is answered from memory
    return node


@pytest.fixture
async def two(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    a = await make_node(db_url, tmp_path / "a")
    b = await make_node(db_url, tmp_path / "b")  # another machine: its own data directory
    yield a, b
    await a.close()
    await b.close()


async def test_without_the_cluster_a_new_account_is_unknown_to_the_other_node(
    two: tuple[Node, Node],
) -> None:
    """The problem (issue 14): B's complete cache answers "no such user"."""
    a, b = two
    await a.service().create("alice", DOMAIN, "correct horse")
    assert await a.provider.verify_password("alice", DOMAIN, "correct horse")
    assert b.provider.cached_scram_keys("alice", DOMAIN, "sha256") is NO_SUCH_KEYS
    assert not await b.provider.verify_password("alice", DOMAIN, "correct horse")


async def test_every_change_on_one_node_reaches_the_other(
    two: tuple[Node, Node], redis_server: RedisServer
) -> None:
    a, b = two
    await a.join(redis_server, "a")
    await b.join(redis_server, "b")
    assert b.feed is not None
    service = a.service()
    assert isinstance(service._changed, ClusterCredentialsChanged)

    async def told(count: int) -> None:
        await wait_for(lambda: b.feed is not None and b.feed.applied >= count)

    await service.create("alice", DOMAIN, "correct horse")
    await told(1)
    assert b.provider.complete
    assert await b.provider.verify_password("alice", DOMAIN, "correct horse")
    assert b.provider.cached_scram_keys("alice", DOMAIN, "sha256") not in (None, NO_SUCH_KEYS)

    assert not stamp_path(b.data_dir).exists()  # a new name drops no cache wholesale
    await service.change_password("alice", DOMAIN, "battery staple")
    await told(2)
    # node b's own stamp moved: its password memos and stream-key owners forget too
    assert stamp_path(b.data_dir).exists()
    assert not await b.provider.verify_password("alice", DOMAIN, "correct horse")
    assert await b.provider.verify_password("alice", DOMAIN, "battery staple")

    await service.lock("alice", DOMAIN)
    await told(3)
    assert await b.provider.verify_password_or_held("alice", DOMAIN, "battery staple") == (
        False,
        ACCOUNT_LOCKED,
    )
    await service.unlock("alice", DOMAIN)
    await told(4)
    assert await b.provider.verify_password("alice", DOMAIN, "battery staple")

    await service.hold("newbie", DOMAIN, "newbie-pw-1")
    await told(5)
    assert b.provider.pending == 1
    assert await b.provider.verify_password_or_held("newbie", DOMAIN, "newbie-pw-1") == (
        False,
        AWAITING_APPROVAL,
    )
    await b.service().approve("newbie", DOMAIN)  # the other way round
    await wait_for(lambda: a.feed is not None and a.feed.applied >= 1)
    assert a.provider.pending == 0
    assert await a.provider.verify_password("newbie", DOMAIN, "newbie-pw-1")

    await service.delete("alice", DOMAIN)
    await told(6)
    assert not await b.provider.verify_password("alice", DOMAIN, "battery staple")
    assert await b.provider.scram_keys("alice", DOMAIN, "sha256") is None


async def test_the_command_line_publishes_to_every_node(
    two: tuple[Node, Node], redis_server: RedisServer, db_url: str, tmp_path: Path
) -> None:
    a, b = two
    await a.join(redis_server, "a")
    await b.join(redis_server, "b")
    cli_db = await Database.open(db_url)
    try:
        notifier = CommandLineCredentialsChanged(
            options(redis_server), LocalCredentialsChanged(tmp_path / "cli")
        )
        cli = AccountService(cli_db, RULES, notifier)
        await cli.create("carol", DOMAIN, "correct horse")
        await wait_for(lambda: b.feed is not None and a.feed is not None and b.feed.applied == 1)
        assert await a.provider.verify_password("carol", DOMAIN, "correct horse")
        assert await b.provider.verify_password("carol", DOMAIN, "correct horse")
        await cli.change_password("carol", DOMAIN, "battery staple")
        await wait_for(lambda: b.feed is not None and b.feed.applied == 2)
        assert not await b.provider.verify_password("carol", DOMAIN, "correct horse")

        redis_server.stop()
        with pytest.raises(CredentialsNotAnnounced, match="stored, but"):
            await cli.delete("carol", DOMAIN)
    finally:
        await cli_db.close()


async def test_a_change_not_published_is_made_up_for_when_redis_returns(
    two: tuple[Node, Node], redis_server: RedisServer
) -> None:
    a, b = two
    await a.join(redis_server, "a")
    await b.join(redis_server, "b")
    assert a.node is not None and b.node is not None
    await a.service().create("dave", DOMAIN, "correct horse")
    await wait_for(lambda: b.feed is not None and b.feed.applied == 1)
    assert await b.provider.verify_password("dave", DOMAIN, "correct horse")  # cached on b

    redis_server.stop()
    await wait_for(lambda: not a.node.connected)  # type: ignore[union-attr]
    await a.service().change_password("dave", DOMAIN, "battery staple")  # stored, not told
    assert a.feed is not None and a.feed.unannounced
    redis_server.start()
    await wait_for(lambda: a.node.connected and b.node.connected, timeout=10.0)  # type: ignore[union-attr]
    await wait_for(lambda: not a.feed.unannounced)  # type: ignore[union-attr]
    assert not await b.provider.verify_password("dave", DOMAIN, "correct horse")
    assert await b.provider.verify_password("dave", DOMAIN, "battery staple")
