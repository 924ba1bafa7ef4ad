"""Presence changes a contact on another node missed while Redis was unreachable.

While Redis is away, a node's presence broadcasts to contacts' sessions on other
nodes are refused.  Once the cluster has resynchronised, each contact online
through the outage is sent what the sender shows *then* (a logout: unavailable;
a new status or resource: its presence), never a stale one, only to sessions
that are available, and only where the contact still may see it (subscription,
XEP-0191 blocks made during the outage too).

Real servers in this process join one cluster over a real redis-server (stopped
and started by the tests) and share one database; clients are real connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatgate.cluster import directory as cluster_directory
from chatgate.cluster.resp import RespError
from tests.redis_server import RedisServer
from tests.unit.modules.test_blocking import befriend, block
from tests.unit.modules.wire import Server, Wire

from .test_mirror_robustness import back, directory, online, outage, presences
from .test_push_hibernated import two_nodes
from .test_subscription_requests import eventually

USERS = ("ivan", "kate", "leo")


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Server]]:
    async with two_nodes(tmp_path, redis_server, *USERS) as started:
        yield started


def unavailable(wire: object, full: str) -> bool:
    seen = presences(wire, full)  # type: ignore[arg-type]
    return bool(seen) and 'type="unavailable"' in seen[-1]


async def contacts(a: Server, b: Server, status: str) -> tuple[Wire, Wire]:
    """ivan on a and kate on b, subscribed to each other, ivan seeing kate."""
    await befriend(a, "ivan", "kate")
    ivan = await online(a, "ivan")
    kate = await online(b, "kate", status=status)
    await eventually(lambda: presences(ivan, "kate@localhost/r"))
    return ivan, kate


async def kate_shows_after_the_outage(
    redis: RedisServer, nodes: list[Server], ivan: Wire, text: str
) -> bool:
    """Redis back, b done telling what it noted (or refused to), and a moment for
    anything sent: whether ivan was shown kate's presence with `text`."""
    await back(redis, nodes)
    await eventually(lambda: not directory(nodes[1])._missed, timeout=10)
    await asyncio.sleep(0.5)
    return any(text in p for p in presences(ivan, "kate@localhost/r"))


def available_in(server: Server, bare: str, resource: str) -> bool:
    session = directory(server).table.get(bare, {}).get(resource)
    return session is not None and session.available


def copied_status(server: Server, bare: str, resource: str) -> str:
    """The status `server`'s copy shows for a session of another node ('' if none)."""
    session = directory(server).table.get(bare, {}).get(resource)
    presence = getattr(session, "presence", None)
    status = presence.find("status") if presence is not None else None
    return (status.text or "") if status is not None else ""


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
    await eventually(lambda: unavailable(ivan, "leo@localhost/r"), timeout=10)
    await eventually(lambda: any("gone home" in p for p in presences(ivan, "kate@localhost/r")))
    await eventually(
        lambda: any("on the sofa" in p for p in presences(ivan, "kate@localhost/tablet"))
    )
    await asyncio.sleep(0.3)
    # Each once; kate's resources on one node saw each other all along; what had
    # not changed is not sent again.
    assert sum('type="unavailable"' in p for p in presences(ivan, "leo@localhost/r")) == 1
    assert sum("gone home" in p for p in presences(ivan, "kate@localhost/r")) == 1
    assert sum("on the sofa" in p for p in presences(kate, "kate@localhost/tablet")) == 1
    assert sum("at work" in p for p in presences(ivan, "kate@localhost/r")) == 1
    await tablet.send("<message to='ivan@localhost/r' type='chat'><body>home</body></message>")
    await eventually(lambda: "<body>home</body>" in ivan.transport.out.decode())


async def test_a_sender_who_left_before_the_recipient_came_back_shows_unavailable(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """kate logs in during the outage, and out after b has resynchronised but
    before a has claimed ivan again: ivan must end up seeing her unavailable,
    not the presence she had when it was refused."""
    a, b = nodes
    await befriend(a, "ivan", "kate")
    ivan = await online(a, "ivan")
    gate = asyncio.Event()
    mirror = directory(a)
    real = mirror._reassert_and_reload

    async def held_back() -> None:
        await gate.wait()
        await real()

    mirror._reassert_and_reload = held_back
    await eventually(lambda: available_in(b, "ivan@localhost", "r"))  # b knows him
    await outage(redis_server, nodes)
    kate = await online(b, "kate", status="online during the outage")
    assert "ivan@localhost/r" in directory(b)._missed
    await back(redis_server, nodes)
    await eventually(lambda: directory(b)._missed_open, timeout=10)  # b resynced
    assert "ivan@localhost/r" in directory(b)._missed  # ivan not claimed again yet
    await kate.send("<presence type='unavailable'/>")
    gate.set()
    await eventually(lambda: "ivan@localhost/r" not in directory(b)._missed, timeout=10)
    await eventually(lambda: unavailable(ivan, "kate@localhost/r"))
    assert not any("during the outage" in p for p in presences(ivan, "kate@localhost/r"))


async def test_a_block_made_during_the_outage_holds(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    a, b = nodes
    ivan, kate = await contacts(a, b, "before")
    await outage(redis_server, nodes)
    await kate.send("<presence><status>secret</status></presence>")
    await ivan.send(block("kate@localhost"))
    assert not await kate_shows_after_the_outage(redis_server, nodes, ivan, "secret")


async def test_a_block_made_before_the_outage_holds(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    a, b = nodes
    await befriend(a, "ivan", "kate")
    ivan = await online(a, "ivan")
    kate = await online(b, "kate", status="here")
    await eventually(lambda: presences(ivan, "kate@localhost/r"))
    await kate.send(block("ivan@localhost"))
    await eventually(lambda: unavailable(ivan, "kate@localhost/r"))
    await outage(redis_server, nodes)
    await kate.send("<presence><status>hidden</status></presence>")
    await back(redis_server, nodes)
    await eventually(lambda: "hidden" in copied_status(a, "kate@localhost", "r"), timeout=10)
    await asyncio.sleep(0.3)
    assert not any("hidden" in p for p in presences(ivan, "kate@localhost/r"))


async def test_a_recipient_that_went_unavailable_meanwhile_is_not_written_to(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """RFC 6121 §4.4.2: broadcasts go to available resources only."""
    a, b = nodes
    await befriend(a, "ivan", "kate")
    ivan = await online(a, "ivan")
    kate = await online(b, "kate")
    await eventually(lambda: presences(kate, "ivan@localhost/r"))
    await outage(redis_server, nodes)
    await ivan.send("<presence><status>new</status></presence>")
    await kate.send("<presence type='unavailable'/>")  # still connected
    await back(redis_server, nodes)

    # a (where ivan's change was refused) has resynchronised and knows kate unavailable
    def settled() -> bool:
        copy = directory(a).table.get("kate@localhost", {}).get("r")
        return directory(a)._missed_open and copy is not None and not copy.available

    await eventually(settled, timeout=10)
    await asyncio.sleep(0.5)
    assert not any("new" in p for p in presences(kate, "ivan@localhost/r"))
    # ... and she gets it once she is available again (her probe answers it).
    await kate.send("<presence/>")
    await eventually(lambda: any("new" in p for p in presences(kate, "ivan@localhost/r")))


async def test_what_is_noted_is_bounded_and_forgotten(
    nodes: list[Server],
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = nodes
    monkeypatch.setattr(cluster_directory, "MISSED_PAIRS", 1)
    monkeypatch.setattr(cluster_directory, "MISSED_TTL", 0.3)
    await befriend(a, "ivan", "kate")
    await befriend(a, "leo", "kate")
    ivan = await online(a, "ivan")
    leo = await online(a, "leo")
    kate = await online(b, "kate")
    await eventually(lambda: presences(kate, "ivan@localhost/r"))
    await eventually(lambda: presences(kate, "leo@localhost/r"))
    with caplog.at_level(logging.INFO):
        await outage(redis_server, nodes)
        await kate.send("<presence><status>one</status></presence>")
        assert directory(b)._missed_pairs == 1
        assert any("over 1 presence changes" in r.getMessage() for r in caplog.records)
        # ivan and leo leave for good: nothing noted for them is ever told
        ivan.conn.connection_lost()
        leo.conn.connection_lost()
        await back(redis_server, nodes)
        await eventually(lambda: not directory(b)._missed and directory(b)._missed_open, 10)
        assert directory(b)._missed_pairs == 0
    assert any("not told" in r.getMessage() for r in caplog.records)


# The second review's cases (each failed on 82aef67).


def blocklists(server: Server) -> Any:
    return server.module("blocking").lists


async def test_a_block_made_during_the_outage_holds_when_the_list_was_cached(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """ivan's list is in b's memory (he blocked leo before): b must read it again
    before telling him what he missed."""
    a, b = nodes
    await befriend(a, "ivan", "kate")
    ivan = await online(a, "ivan")
    await ivan.send(block("leo@localhost"))
    await eventually(lambda: blocklists(b).cache.get("ivan@localhost"))
    kate = await online(b, "kate", status="before")
    await eventually(lambda: presences(ivan, "kate@localhost/r"))
    await outage(redis_server, nodes)
    await kate.send("<presence><status>secret</status></presence>")
    await ivan.send(block("kate@localhost"))
    assert not await kate_shows_after_the_outage(redis_server, nodes, ivan, "secret")


async def test_a_directed_presence_recipient_is_not_sent_the_broadcast_status(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """kate, no contact of ivan's, sent him a directed presence during the outage:
    her broadcast status is for her subscribers only."""
    a, b = nodes
    ivan = await online(a, "ivan")
    kate = await online(b, "kate", status="at the doctor")
    await eventually(lambda: "ivan@localhost" in directory(b).table)
    await outage(redis_server, nodes)
    await kate.send("<presence to='ivan@localhost/r'><status>hi ivan</status></presence>")
    assert "ivan@localhost/r" in directory(b)._missed
    assert not await kate_shows_after_the_outage(redis_server, nodes, ivan, "at the doctor")


async def test_a_node_whose_resync_failed_tells_nothing_from_its_stale_copy(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """a's resync is refused at its first write (Redis out of memory) and b's comes
    later: a must not tell kate, who went unavailable during the outage, from its
    pre-outage copy; it tells once its retry has read the copy again."""
    a, b = nodes
    await befriend(a, "ivan", "kate")
    ivan = await online(a, "ivan")
    kate = await online(b, "kate")
    await eventually(lambda: presences(kate, "ivan@localhost/r"))
    node = a.ctx.cluster
    real_run = node.run_script
    refused: list[int] = []

    async def out_of_memory_once(script: Any, keys: Any, args: Any) -> Any:
        if script is cluster_directory._SCRIPTS["clear"] and not refused:
            refused.append(1)
            raise RespError("OOM command not allowed when used memory > 'maxmemory'")
        return await real_run(script, keys, args)

    node.run_script = out_of_memory_once  # type: ignore[method-assign]
    gate = asyncio.Event()
    real_b = directory(b)._reassert_and_reload

    async def b_later() -> None:
        await gate.wait()
        await real_b()

    directory(b)._reassert_and_reload = b_later
    await outage(redis_server, nodes)
    await ivan.send("<presence><status>new</status></presence>")
    await kate.send("<presence type='unavailable'/>")  # still connected
    assert "kate@localhost/r" in directory(a)._missed
    await back(redis_server, nodes)
    await eventually(lambda: refused, timeout=10)
    await asyncio.sleep(0.5)
    gate.set()
    await eventually(lambda: directory(a)._missed_open, timeout=10)
    await asyncio.sleep(0.5)
    assert not any("new" in p for p in presences(kate, "ivan@localhost/r"))


async def test_what_is_sent_is_never_older_than_a_broadcast_made_meanwhile(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """The telling waits on a database read (ivan's block list); kate's newer
    status is broadcast meanwhile: ivan must end on it."""
    a, b = nodes
    ivan, kate = await contacts(a, b, "before")
    repository = blocklists(b).repository
    real_items = repository.items
    entered = asyncio.Event()
    gate = asyncio.Event()

    async def slow_items(owner: Any) -> Any:
        if owner == ("ivan", "localhost"):
            entered.set()
            await gate.wait()  # a slow database read
        return await real_items(owner)

    repository.items = slow_items
    await outage(redis_server, nodes)
    await kate.send("<presence><status>during</status></presence>")
    await ivan.send(block("leo@localhost"))  # ivan becomes a blocker; b not told
    await back(redis_server, nodes)
    try:
        await asyncio.wait_for(entered.wait(), 10)
        # kate's newer status: held by the blocking stage until ivan's list is read
        newer = asyncio.ensure_future(kate.send("<presence><status>newest</status></presence>"))
        await asyncio.sleep(0.3)
    finally:
        gate.set()
    await newer
    await eventually(lambda: any("newest" in p for p in presences(ivan, "kate@localhost/r")))
    await asyncio.sleep(0.5)
    last = presences(ivan, "kate@localhost/r")[-1]
    assert "newest" in last, f"ivan's last view of kate: {last}"


async def test_a_subscription_cancelled_during_the_outage_holds(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """ivan removes kate from his roster during the outage: kate's node reads her
    roster again before telling, so ivan is no longer sent her status."""
    a, b = nodes
    ivan, kate = await contacts(a, b, "before")
    await outage(redis_server, nodes)
    await kate.send("<presence><status>secret</status></presence>")
    await ivan.send(
        "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'>"
        "<item jid='kate@localhost' subscription='remove'/></query></iq>"
    )
    assert not await kate_shows_after_the_outage(redis_server, nodes, ivan, "secret")


async def test_a_change_made_while_redis_drops_again_during_the_resync_is_told(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """Redis is lost again while b runs its resynchronisation: b counts as
    disconnected at once, so kate's change is noted, not written to the dead
    connection, and ivan gets it after Redis is back for good."""
    a, b = nodes
    ivan, kate = await contacts(a, b, "before")
    gate = asyncio.Event()
    real = directory(b)._reassert_and_reload
    calls: list[int] = []

    async def held_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            await gate.wait()
        await real()

    directory(b)._reassert_and_reload = held_once
    await outage(redis_server, nodes)
    await back(redis_server, nodes)
    await eventually(lambda: calls, timeout=10)
    redis_server.stop()  # lost again while b's resync is held
    await eventually(lambda: not b.ctx.cluster.connected)
    await kate.send("<presence><status>changed</status></presence>")
    assert "ivan@localhost/r" in directory(b)._missed
    gate.set()
    redis_server.start()
    await eventually(
        lambda: any("changed" in p for p in presences(ivan, "kate@localhost/r")), timeout=15
    )
