"""A node's copy of the other nodes' sessions reads what it can.

A snapshot entry or a change that cannot be read (another release's form, or
damaged) is skipped, not the rest with it, and the scripts that clear and
release entries get past it too; a resync that fails part-way is tried again
while Redis stays reachable, rather than leaving the copy half read until the
next outage.

Real servers in this process join one cluster over a real redis-server (stopped
and started by the tests) and share one database; clients are real connections.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatgate.cluster import directory as cluster_directory
from chatgate.cluster.resp import RespError
from tests.redis_server import RedisServer
from tests.unit.modules.test_blocking import befriend
from tests.unit.modules.wire import Server, Wire

from .test_push_hibernated import start_node, two_nodes
from .test_subscription_requests import eventually, login

USERS = ("ivan", "kate", "leo")


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Server]]:
    async with two_nodes(tmp_path, redis_server, *USERS) as started:
        yield started


def directory(server: Server) -> Any:
    return server.ctx.router.directory


async def online(server: Server, user: str, resource: str = "r", status: str = "") -> Wire:
    """A client as an IM client starts: roster, then presence."""
    wire = await login(server, user, resource)
    await wire.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
    body = f"<status>{status}</status>" if status else ""
    await wire.send(f"<presence>{body}</presence>")
    return wire


def presences(wire: Wire, full: str) -> list[str]:
    """The presence stanzas `wire` got from `full`, in order."""
    text = wire.transport.out.decode()
    return [
        p
        for p in re.findall(r"<presence\b[^>]*?(?:/>|>.*?</presence>)", text, re.S)
        if f'from="{full}"' in p
    ]


async def outage(redis: RedisServer, servers: list[Server]) -> None:
    redis.stop()
    await eventually(lambda: not any(s.ctx.cluster.connected for s in servers))


async def back(redis: RedisServer, servers: list[Server]) -> None:
    redis.start()
    await eventually(lambda: all(s.ctx.cluster.connected for s in servers), timeout=10)


async def test_unreadable_entries_and_changes_are_skipped_not_the_rest(
    tmp_path: Path, nodes: list[Server], redis_server: RedisServer
) -> None:
    a, b = nodes
    await login(b, "kate")
    snapshot = directory(b)._snapshot_key("b")
    redis = b.ctx.cluster.redis
    # A damaged entry, and one of a later release (a sixth field).
    await redis.hset(snapshot, "mallory@localhost/x", "{not json")
    await redis.hset(snapshot, "no-resource", json.dumps(["b-m2", True, 0, None, False]))
    await redis.hset(snapshot, "nick@localhost/r", json.dumps(["b-n1", True, 3, None, False, 9]))
    c = await start_node(tmp_path, redis_server, "c")
    nodes.append(c)
    table = directory(c).table
    assert "kate@localhost" in table
    assert table["nick@localhost"]["r"].priority == 3
    assert "mallory@localhost" not in table
    # A change that cannot be read does not stop the ones after it on the channel.
    channel = directory(a)._events_prefix + "a"
    good = json.dumps(["b", "C", "b-o1", "olga@localhost", "r", 0, None])
    await redis.publish(channel, "garbage\n" + json.dumps(["b", "C"]) + "\n" + good)
    await eventually(lambda: "olga@localhost" in directory(a).table)
    assert "no-resource" not in directory(c).table
    # When b dies, a survivor clears its run's entries (the script reads what it
    # can); the unreadable ones go when b starts again under its name.
    cluster = a.ctx.cluster
    clear = cluster_directory._SCRIPTS["clear"]
    boot = directory(b).node.boot_id
    assert await cluster.run_script(clear, [snapshot], [cluster.prefix, "b", boot]) == 1
    assert await redis.hget(cluster.key("res", "kate@localhost"), "r") is None
    left = sorted(await redis.hkeys(snapshot))
    assert left == [b"mallory@localhost/x", b"nick@localhost/r", b"no-resource"]
    await cluster.run_script(clear, [snapshot], [cluster.prefix, "b", ""])
    assert await redis.hkeys(snapshot) == []


def failing(server: Server, times: int) -> list[float]:
    """`server`'s snapshot reads fail `times` times (Redis answering an error, as
    when it is out of memory), each waiting first until b has claimed kate again:
    b's announcements are held by the load the failure ends, so only a read of
    the snapshots brings her back.  Returns when each failure happened."""
    mirror = directory(server)
    real = mirror._read_snapshots
    failures: list[float] = []
    redis = server.ctx.cluster.redis

    async def read() -> None:
        if len(failures) < times:
            while not await redis.hexists(b"chatgate:sessions:b", "kate@localhost/r"):
                await asyncio.sleep(0.02)
            failures.append(asyncio.get_running_loop().time())
            raise RespError("OOM command not allowed when used memory > 'maxmemory'")
        await real()

    mirror._read_snapshots = read
    return failures


async def test_a_resync_that_fails_part_way_is_tried_again(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    a, b = nodes
    await befriend(a, "ivan", "kate")
    ivan = await online(a, "ivan")
    await online(b, "kate")
    await eventually(lambda: presences(ivan, "kate@localhost/r"))
    assert directory(b)._snapshot_key("b") == "chatgate:sessions:b"
    failures = failing(a, 1)
    await outage(redis_server, nodes)
    await back(redis_server, nodes)
    await eventually(lambda: failures, timeout=10)
    # The failed resync left the copy without kate; the retry reads her again.
    await eventually(lambda: "kate@localhost" in directory(a).table, timeout=10)
    assert a.ctx.cluster.connected
    # kate had not changed: ivan was told nothing about her.
    assert len(presences(ivan, "kate@localhost/r")) == 1


async def test_a_resync_that_keeps_failing_backs_off_and_the_node_stays_connected(
    nodes: list[Server], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis refusing the resync again and again must not turn into an outage of
    the node's own making: cross-node delivery goes on, and the retries and
    their warnings thin out."""
    a, b = nodes
    kate = await login(b, "kate")
    failures = failing(a, 4)
    await outage(redis_server, nodes)
    await back(redis_server, nodes)
    connected: list[bool] = []
    deadline = asyncio.get_running_loop().time() + 15
    while len(failures) < 4:
        assert asyncio.get_running_loop().time() < deadline, failures
        connected.append(a.ctx.cluster.connected)
        await asyncio.sleep(0.05)
    assert all(connected)
    gaps = [later - earlier for earlier, later in itertools.pairwise(failures)]
    assert gaps[-1] > 1.5 * gaps[0], gaps  # 0.5 s, then 1 s, then 2 s
    await eventually(lambda: "kate@localhost" in directory(a).table, timeout=10)
    warnings = [r for r in caplog.records if "resynchronisation failed" in r.getMessage()]
    assert 1 <= len(warnings) < 4  # one per 10 s, the others counted in it
    ivan = await login(a, "ivan")
    await ivan.send("<message to='kate@localhost/r' type='chat'><body>still here</body></message>")
    await eventually(lambda: "still here" in kate.transport.out.decode())


async def test_a_release_gets_past_an_unreadable_entry_of_its_own(
    nodes: list[Server],
) -> None:
    a, b = nodes
    kate = await login(b, "kate")
    await eventually(lambda: "kate@localhost" in directory(a).table)
    snapshot = directory(b)._snapshot_key("b")
    await b.ctx.cluster.redis.hset(snapshot, "kate@localhost/r", "{damaged")
    kate.conn.connection_lost()
    await kate.settle()
    # The release is still announced (a drops kate) and the damaged entry is gone.
    await eventually(lambda: "kate@localhost" not in directory(a).table)
    assert not await b.ctx.cluster.redis.hexists(snapshot, "kate@localhost/r")


async def test_a_snapshot_entry_keeps_the_presence_when_interest_follows_it(
    nodes: list[Server], tmp_path: Path, redis_server: RedisServer
) -> None:
    """A client that sends its presence before asking for its roster: the entry
    written for the interest must keep the presence, or a node that reads the
    snapshots (a join, a resync) shows the session available with none."""
    b = nodes[1]
    kate = await login(b, "kate")
    await kate.send("<presence><status>first</status></presence>")
    await kate.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
    snapshot = directory(b)._snapshot_key("b")
    redis = b.ctx.cluster.redis

    async def entry() -> list[Any]:
        raw = await redis.hget(snapshot, "kate@localhost/r")
        return json.loads(raw) if raw else []

    for _ in range(100):
        state = await entry()
        if state and state[4]:  # interested: the I entry is written
            break
        await asyncio.sleep(0.02)
    assert state[1] is True and state[4] is True, state
    assert state[3] is not None and "first" in state[3], state
    c = await start_node(tmp_path, redis_server, "c")
    nodes.append(c)
    copy = directory(c).table["kate@localhost"]["r"]
    assert copy.available and copy.presence is not None
    assert copy.presence.find("status").text == "first"
