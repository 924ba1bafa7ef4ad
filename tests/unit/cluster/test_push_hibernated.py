"""Push for a session hibernated on another node (XEP-0357 with XEP-0198).

A message is routed, and its push decided, on its sender's node.  A session
waiting to be resumed on another node must count there as reaching no device,
as one on the sender's own node does, or a phone whose app the system suspended
is never woken by a contact connected elsewhere in the cluster.

Real servers in this process join one cluster over a real redis-server and share
one database; clients are real connections (`Wire`); the app server is an account
connected as a client, which gets the XEP-0357 §7 publish IQ.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.cluster.node import ClusterNode
from chatgate.cluster.options import ClusterOptions
from tests.redis_server import RedisServer
from tests.unit.modules.wire import Server, Wire, plain

from .test_subscription_requests import eventually, login

APP = "pushbot@localhost/app"
ENABLE = (
    "<iq type='set' id='e'><enable xmlns='urn:xmpp:push:0' jid='pushbot@localhost/app'"
    " node='device-1'/></iq>"
)
PUBLISH = re.compile(r"<iq [^>]*type=\"set\"[^>]*>.*?device-1", re.S)


async def start_node(tmp: Path, redis: RedisServer, name: str) -> Server:
    options = ClusterOptions(
        enabled=True, redis_url=redis.url, node=name, heartbeat_interval=0.2, node_timeout=1.0
    )
    node = ClusterNode(options)
    await node.start()
    return await Server.start(tmp, {"push": {"min_interval": 0.0}}, cluster=node)


@contextlib.asynccontextmanager
async def two_nodes(tmp: Path, redis: RedisServer, *users: str) -> AsyncIterator[list[Server]]:
    """Nodes a and b with `users` (password NAME-pw), stopped at the end; more
    nodes a test appends to the list are stopped too."""
    started = [await start_node(tmp, redis, "a")]
    started.append(await start_node(tmp, redis, "b"))
    for user in users:
        await started[0].add_user(user, f"{user}-pw")
    # Each knows the other (a heartbeat later): what a resumption across them asks.
    await eventually(lambda: all(len(s.ctx.peers.alive()) == 2 for s in started))
    try:
        yield started
    finally:
        for server in reversed(started):
            await server.stop()


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Server]]:
    async with two_nodes(tmp_path, redis_server, "alice", "bob", "pushbot") as started:
        yield started


def pushes(app: Wire) -> int:
    return len(PUBLISH.findall(app.transport.out.decode()))


async def phone_on(server: Server) -> tuple[Wire, str]:
    """alice's phone on `server`: push registered, resumption on, available."""
    phone = await login(server, "alice", "phone")
    assert 'type="result"' in await phone.send(ENABLE)
    enabled = await phone.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    found = re.search(r"id=['\"]([^'\"]+)", enabled)
    assert found is not None, enabled
    await phone.send("<presence/>")
    return phone, found.group(1)


def chat(body: str) -> str:
    return f"<message to='alice@localhost/phone' type='chat'><body>{body}</body></message>"


def remote_phone(server: Server) -> object:
    return server.ctx.router.directory.table.get("alice@localhost", {}).get("phone")


async def test_a_message_from_another_node_wakes_a_hibernated_phone(nodes: list[Server]) -> None:
    a, b = nodes
    app = await login(a, "pushbot", "app")
    bob = await login(a, "bob")
    phone, previd = await phone_on(b)
    elsewhere = a.ctx.router.directory.hibernated_elsewhere
    await eventually(lambda: remote_phone(a) is not None)

    await bob.send(chat("while you are here"))
    await eventually(lambda: "while you are here" in phone.transport.out.decode())
    assert pushes(app) == 0  # a live device got it

    phone.conn.connection_lost()  # the network is gone: hibernated on b
    await phone.settle()
    await eventually(lambda: remote_phone(a) in elsewhere)
    await bob.send(chat("while you are away"))
    await eventually(lambda: pushes(app) == 1)

    # Resumed on b: a's copy says so, and the next message wakes nobody.
    back = b.connect()
    await back.open()
    assert "<success" in await back.send(plain("alice", "alice-pw"))
    await back.open()
    resumed = await back.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>")
    assert "resumed" in resumed, resumed
    await eventually(lambda: not elsewhere)
    await bob.send(chat("back again"))
    await eventually(lambda: "back again" in back.transport.out.decode())
    assert pushes(app) == 1


async def test_a_node_joining_later_learns_which_sessions_wait(
    nodes: list[Server], tmp_path: Path, redis_server: RedisServer
) -> None:
    a, b = nodes
    app = await login(a, "pushbot", "app")
    phone, _ = await phone_on(b)
    phone.conn.connection_lost()
    await phone.settle()
    await eventually(lambda: remote_phone(a) in a.ctx.router.directory.hibernated_elsewhere)

    c = await start_node(tmp_path, redis_server, "c")
    nodes.append(c)  # stopped by the fixture
    assert remote_phone(c) in c.ctx.router.directory.hibernated_elsewhere
    bob = await login(c, "bob")
    await bob.send(chat("from the new node"))
    await eventually(lambda: pushes(app) == 1)


async def test_a_hibernated_session_that_ends_leaves_every_copy(nodes: list[Server]) -> None:
    a, b = nodes
    phone, _ = await phone_on(b)
    phone.conn.connection_lost()
    await phone.settle()
    elsewhere = a.ctx.router.directory.hibernated_elsewhere
    await eventually(lambda: remote_phone(a) in elsewhere)
    # The resumption window ends: the session is released everywhere, and the
    # hash a joining node reads no longer names it.
    b.ctx.router.directory.release(b.ctx.router.directory.local["alice@localhost"]["phone"])
    await eventually(lambda: remote_phone(a) is None and not elsewhere)
    redis = b.ctx.router.directory.node.redis
    assert await redis.hgetall(b.ctx.router.directory.node.key("hibernated", "b")) == {}
