"""Every node's copy of which sessions wait to be resumed stays true through the
directory's hard cases: a bind replacing a hibernated session, a resumption onto
another node, a Redis outage during a resumption, a join during a storm of
changes (past the bound on held changes), and a node judged gone while another
joins.  A stale copy either pushes to a live phone or keeps memory forever.

Real servers in this process over a real redis-server and one shared database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatgate.cluster import directory as cluster_directory
from chatgate.cluster.node import ClusterNode
from tests.redis_server import RedisServer
from tests.unit.modules.wire import Server, Wire, plain

from .test_mirror_load import options
from .test_push_hibernated import chat, phone_on, pushes, remote_phone, start_node, two_nodes
from .test_subscription_requests import eventually, login

USERS = ("alice", "bob", "pushbot", "ann")


def directory(server: Server) -> Any:
    return server.ctx.router.directory


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Server]]:
    async with two_nodes(tmp_path, redis_server, *USERS) as started:
        yield started


async def asleep_on(server: Server) -> str:
    """alice's phone on `server`, its connection lost: the resumption id."""
    phone, previd = await phone_on(server)
    phone.conn.connection_lost()
    await phone.settle()
    return previd


async def resume(server: Server, previd: str) -> Wire:
    back = server.connect()
    await back.open()
    assert "<success" in await back.send(plain("alice", "alice-pw"))
    await back.open()
    answer = await back.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>")
    assert "resumed" in answer, answer
    return back


async def test_a_bind_replacing_a_hibernated_session_forgets_it(nodes: list[Server]) -> None:
    a, b = nodes
    await asleep_on(b)
    old = directory(b).local["alice@localhost"]["phone"]
    await eventually(lambda: remote_phone(a) in directory(a).hibernated_elsewhere)
    await login(b, "alice", "phone")  # a new bind of the resource, same node
    assert directory(b).local["alice@localhost"]["phone"] is not old
    assert old not in directory(b)._asleep
    await eventually(lambda: not directory(a).hibernated_elsewhere)
    # b removes the hash entry once its claim is answered, after a heard the claim.
    redis, key = directory(b).node.redis, directory(b).node.key("hibernated", "b")
    for _ in range(100):
        if not await redis.hgetall(key):
            break
        await asyncio.sleep(0.02)
    assert await redis.hgetall(key) == {}


async def test_a_resumption_onto_another_node_leaves_its_set(nodes: list[Server]) -> None:
    a, b = nodes
    previd = await asleep_on(b)
    await eventually(lambda: remote_phone(a) in directory(a).hibernated_elsewhere)
    await resume(a, previd)
    assert remote_phone(a) is directory(a).local["alice@localhost"]["phone"]
    assert not directory(a).hibernated_elsewhere


async def test_a_resumption_during_a_redis_cut_is_announced_after_it(
    nodes: list[Server],
) -> None:
    """b cannot reach Redis while the phone resumes there: its W is lost, and the
    resync that follows states it, or a would push what the live phone got."""
    a, b = nodes
    app = await login(a, "pushbot", "app")
    bob = await login(a, "bob")
    previd = await asleep_on(b)
    await eventually(lambda: remote_phone(a) in directory(a).hibernated_elsewhere)
    node = directory(b).node
    commands, node._commands = node._commands, None  # b's commands fail
    try:
        back = await resume(b, previd)
    finally:
        node._commands = commands
    assert remote_phone(a) in directory(a).hibernated_elsewhere  # not heard yet
    await directory(b)._resync()  # what b does when Redis is reachable again
    await eventually(lambda: not directory(a).hibernated_elsewhere)
    await bob.send(chat("you are live"))
    await eventually(lambda: "you are live" in back.transport.out.decode())
    await asyncio.sleep(0.3)
    assert pushes(app) == 0


async def test_an_unavailable_presence_during_a_redis_cut_is_announced_after_it(
    nodes: list[Server],
) -> None:
    a, b = nodes
    ann = await login(b, "ann")
    await ann.send("<presence/>")
    await eventually(lambda: "ann@localhost" in directory(a).table)
    copy = directory(a).table["ann@localhost"]
    await eventually(lambda: copy["r"].available)
    node = directory(b).node
    commands, node._commands = node._commands, None
    try:
        await ann.send("<presence type='unavailable'/>")
    finally:
        node._commands = commands
    await directory(b)._resync()
    await eventually(lambda: not directory(a).table["ann@localhost"]["r"].available)


class PausedAfter:
    """`target.hgetall` pauses once, after its `n`th call returned."""

    def __init__(self, target: Any, n: int) -> None:
        self.reached, self.opened = asyncio.Event(), asyncio.Event()
        real = target.hgetall
        calls = 0

        async def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            result = await real(*args, **kwargs)
            calls += 1
            if calls == n:
                self.reached.set()
                await self.opened.wait()
            return result

        target.hgetall = call


async def join_paused(
    tmp: Path, redis: RedisServer, name: str
) -> tuple[asyncio.Future[Server], ClusterNode, PausedAfter]:
    """Node `name` starting, paused once it has read node a's snapshot and hash."""
    node = ClusterNode(options(redis, name))
    await node.start()
    pause = PausedAfter(node.redis, 2)
    starting = asyncio.ensure_future(
        Server.start(tmp, {"push": {"min_interval": 0.0}}, cluster=node)
    )
    await asyncio.wait_for(pause.reached.wait(), 5)
    return starting, node, pause


async def storm(server: Server, changes: int = 8) -> None:
    """Presence changes enough to pass a small bound on held changes."""
    ann = await login(server, "ann", "storm")
    for n in range(changes):
        await ann.send(f"<presence><status>{n}</status></presence>")


@pytest.fixture
async def alone(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Server]:
    server = await start_node(tmp_path, redis_server, "a")
    for user in USERS:
        await server.add_user(user, f"{user}-pw")
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def small_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_directory, "MAX_HELD_EVENT_BYTES", 400)


@pytest.mark.usefixtures("small_bound")
async def test_a_resumption_dropped_past_the_bound_is_read_again(
    alone: Server, tmp_path: Path, redis_server: RedisServer
) -> None:
    previd = await asleep_on(alone)
    starting, _, pause = await join_paused(tmp_path, redis_server, "c")
    await storm(alone)
    await resume(alone, previd)  # its W is past the bound
    await asyncio.sleep(0.3)
    pause.opened.set()
    joined = await asyncio.wait_for(starting, 10)
    try:
        assert remote_phone(joined) is not None
        assert not directory(joined).hibernated_elsewhere
    finally:
        await joined.stop()


@pytest.mark.usefixtures("small_bound")
async def test_a_release_dropped_past_the_bound_is_read_again(
    alone: Server, tmp_path: Path, redis_server: RedisServer
) -> None:
    alice = await login(alone, "alice", "pc")
    await alice.send("<presence/>")
    starting, _, pause = await join_paused(tmp_path, redis_server, "c")
    await storm(alone)
    alice.conn.connection_lost()  # its R is past the bound
    await alice.settle()
    await asyncio.sleep(0.3)
    pause.opened.set()
    joined = await asyncio.wait_for(starting, 10)
    try:
        assert "pc" not in directory(joined).table.get("alice@localhost", {})
    finally:
        await joined.stop()


async def test_a_node_judged_gone_during_a_join_stays_gone(
    alone: Server, tmp_path: Path, redis_server: RedisServer
) -> None:
    starting, node, pause = await join_paused(tmp_path, redis_server, "c")
    ann = await login(alone, "ann")
    await ann.send("<presence/>")  # its C and A events are held by c
    await asyncio.sleep(0.3)
    await judge_gone(node, alone)
    pause.opened.set()
    joined = await asyncio.wait_for(starting, 10)
    try:
        assert "ann@localhost" not in directory(joined).table
    finally:
        await joined.stop()


async def judge_gone(node: ClusterNode, gone: Server) -> None:
    """What `node`'s heartbeat task does when `gone`'s heartbeat expires."""
    node.departed["a"] = directory(gone).node.boot_id.encode()
    for callback in node._gone:
        result = callback("a")
        if result is not None:
            await result


async def test_a_session_claimed_after_a_node_is_judged_gone_is_kept_by_a_joiner(
    alone: Server, tmp_path: Path, redis_server: RedisServer
) -> None:
    """a judged gone while c joins, then alive after all (a late heartbeat): a
    session a binds afterwards stays in c's mirror, as on a node not loading."""
    starting, node, pause = await join_paused(tmp_path, redis_server, "c")
    await judge_gone(node, alone)
    ann = await login(alone, "ann")
    await ann.send("<presence/>")
    await asyncio.sleep(0.3)  # its C event is held by c
    pause.opened.set()
    joined = await asyncio.wait_for(starting, 10)
    try:
        assert "ann@localhost" in directory(joined).table
    finally:
        await joined.stop()


async def test_a_session_released_during_the_resync_stays_released(
    nodes: list[Server],
) -> None:
    """ann leaves while b asserts her claim again after an outage: b must not
    announce her or write her snapshot entry after her release."""
    a, b = nodes
    ann = await login(b, "ann")
    await eventually(lambda: "ann@localhost" in directory(a).table)
    node = directory(b).node
    real = node.run_script

    async def run_script(script: Any, keys: Any, args: Any) -> Any:
        if script is not cluster_directory._SCRIPTS["reassert"]:
            return await real(script, keys, args)
        answer = asyncio.ensure_future(real(script, keys, args))
        await asyncio.sleep(0)  # the reassert is on its way
        ann.conn.connection_lost()  # released meanwhile
        return await answer

    node.run_script = run_script  # type: ignore[method-assign]
    try:
        await directory(b)._resync()
    finally:
        node.run_script = real  # type: ignore[method-assign]
    await asyncio.sleep(0.5)
    assert "ann@localhost" not in directory(a).table
    assert await node.redis.hgetall(node.key("sessions", "b")) == {}
