"""What a node's contacts missed while Redis was unreachable, and a mirror that
reads what it can.

While Redis is away, a node's presence broadcasts to contacts on other nodes are
refused.  A contact online through the outage must see what changed meanwhile
once Redis returns: a contact that logged out is unavailable, one that logged in
or changed its status shows it, and nothing stale arrives after something newer.
A snapshot entry or a change that cannot be read (another release's, or damaged)
is skipped, not the rest with it; a resync that fails part-way starts again.

Real servers in this process join one cluster over a real redis-server (stopped
and started by the tests) and share one database; clients are real connections.
"""

from __future__ import annotations

import asyncio
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


async def test_contacts_see_what_changed_elsewhere_while_redis_was_away(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    a, b = nodes
    await befriend(a, "ivan", "kate")
    await befriend(a, "ivan", "leo")
    ivan = await online(a, "ivan")
    kate = await online(b, "kate", status="at work")
    leo = await online(b, "leo")
    await eventually(lambda: any("at work" in p for p in presences(ivan, "kate@localhost/r")))
    await eventually(lambda: presences(ivan, "leo@localhost/r"))

    await outage(redis_server, nodes)
    leo.conn.connection_lost()  # leo's phone lost its network
    await leo.settle()
    await kate.send("<presence><status>gone home</status></presence>")
    tablet = await online(b, "kate", "tablet", status="on the sofa")
    assert not any("gone home" in p for p in presences(ivan, "kate@localhost/r"))
    assert not presences(ivan, "kate@localhost/tablet")

    await back(redis_server, nodes)
    await eventually(
        lambda: any('type="unavailable"' in p for p in presences(ivan, "leo@localhost/r")),
        timeout=10,
    )
    await eventually(lambda: any("gone home" in p for p in presences(ivan, "kate@localhost/r")))
    await eventually(
        lambda: any("on the sofa" in p for p in presences(ivan, "kate@localhost/tablet"))
    )
    # kate's own resources on the same node saw each other all along (no duplicate
    # from the resync), and leo is told unavailable once.
    assert sum("on the sofa" in p for p in presences(kate, "kate@localhost/tablet")) == 1
    assert sum('type="unavailable"' in p for p in presences(ivan, "leo@localhost/r")) == 1
    # What had not changed is not sent again: ivan saw kate "at work" once.
    assert sum("at work" in p for p in presences(ivan, "kate@localhost/r")) == 1
    # And the cluster works across the nodes again.
    await tablet.send("<message to='ivan@localhost/r' type='chat'><body>home</body></message>")
    await eventually(lambda: "<body>home</body>" in ivan.transport.out.decode())


async def test_a_contact_blocked_meanwhile_is_not_sent_the_missed_presence(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """What is sent after the outage is what was refused: what the blocking
    filter (XEP-0191) kept from a contact during it stays kept from it."""
    a, b = nodes
    await befriend(a, "ivan", "kate")
    ivan = await online(a, "ivan")
    kate = await online(b, "kate", status="here")
    await eventually(lambda: presences(ivan, "kate@localhost/r"))
    await kate.send(
        "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'>"
        "<item jid='ivan@localhost'/></block></iq>"
    )
    await eventually(lambda: 'type="unavailable"' in presences(ivan, "kate@localhost/r")[-1])
    await outage(redis_server, nodes)
    await kate.send("<presence><status>hidden</status></presence>")
    await back(redis_server, nodes)
    # b's resync is done when a's copy shows kate's new status.
    await eventually(
        lambda: "hidden" in directory(a).table["kate@localhost"]["r"].presence.find("status").text,
        timeout=10,
    )
    assert not any("hidden" in p for p in presences(ivan, "kate@localhost/r"))


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


async def test_a_resync_that_fails_part_way_starts_again(
    nodes: list[Server], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = nodes
    await befriend(a, "ivan", "kate")
    ivan = await online(a, "ivan")
    await online(b, "kate")
    await eventually(lambda: presences(ivan, "kate@localhost/r"))
    mirror = directory(a)
    real = mirror._read_snapshots
    failures: list[int] = []
    snapshot = directory(b)._snapshot_key("b")

    async def fails_once() -> None:
        if not failures:
            failures.append(1)
            # b has claimed kate again (its announcements are held by a's load,
            # which this failure ends): only a read of the snapshots brings her back.
            while not await a.ctx.cluster.redis.hexists(snapshot, "kate@localhost/r"):
                await asyncio.sleep(0.02)
            raise RespError("OOM command not allowed when used memory > 'maxmemory'")
        await real()

    monkeypatch.setattr(mirror, "_read_snapshots", fails_once)
    await outage(redis_server, nodes)
    await back(redis_server, nodes)
    await eventually(lambda: failures, timeout=10)
    # The first resync left the mirror empty; the second one fills it again.
    await eventually(lambda: "kate@localhost" in mirror.table, timeout=10)
    # kate had not changed: nothing was told to ivan about her.
    assert len(presences(ivan, "kate@localhost/r")) == 1
