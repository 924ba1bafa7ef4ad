"""An account deleted or locked while Redis was unreachable: its sessions on
other nodes end once the cluster has resynchronised.

Deleting or locking an account closes its sessions on every node by a CLOSE
sent over Redis.  During an outage that CLOSE is refused on the changing node,
or never heard by a node that lost Redis; before the fix, such a session
outlived its account for good.  Both sides are covered: the changing node sends
what it owes after the resync, and each node checks its own sessions' accounts
after it.

Real servers in this process join one cluster over a real redis-server (stopped
and started by the tests) and share one database; clients are real connections.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.vocabulary.errors import StreamErrorCondition
from tests.redis_server import RedisServer
from tests.unit.modules.wire import Server, Wire

from .test_mirror_robustness import back, directory, online, outage
from .test_push_hibernated import two_nodes
from .test_subscription_requests import eventually

USERS = ("ivan", "kate", "leo")


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Server]]:
    async with two_nodes(tmp_path, redis_server, *USERS) as started:
        yield started


def ended(wire: Wire, text: str) -> bool:
    out = wire.transport.out.decode()
    return "<not-authorized" in out and text in out and out.endswith("</stream:stream>")


async def test_sessions_elsewhere_get_the_close_their_node_could_not_send(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """The account stays valid here (the closing is all that is tested): only the
    changing node's owed close can end the other node's session."""
    a, b = nodes
    here = await online(a, "ivan", "here")
    there = await online(b, "ivan", "there")
    await eventually(lambda: "there" in directory(a).table.get("ivan@localhost", {}))
    await outage(redis_server, nodes)
    text = "the account was locked"
    assert directory(a).close_sessions("ivan@localhost", StreamErrorCondition.NOT_AUTHORIZED, text)
    await here.settle()
    assert ended(here, text)  # this node's: at once
    assert not ended(there, text)
    await back(redis_server, nodes)
    await eventually(lambda: ended(there, text), timeout=10)


async def test_a_node_that_missed_a_deletion_or_a_lock_ends_those_sessions(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """The CLOSEs were never heard (the changes are made in the database only, as
    a node that lost Redis sees them): the sessions' own node ends them."""
    a, b = nodes
    ivan = await online(b, "ivan")
    leo = await online(b, "leo")
    kate = await online(b, "kate")
    await outage(redis_server, nodes)
    accounts = a.ctx.db.accounts
    assert await accounts.delete("ivan", "localhost")
    assert await accounts.set_locked("leo", "localhost", True)
    await back(redis_server, nodes)
    await eventually(lambda: ended(ivan, "the account was removed"), timeout=10)
    await eventually(lambda: ended(leo, "the account was locked"), timeout=10)
    assert not kate.transport.out.decode().endswith("</stream:stream>")
    assert "kate@localhost" in directory(b).local
