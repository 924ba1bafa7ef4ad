"""Subscription requests between accounts on two nodes (RFC 6121 §3.1.3).

Two real servers in this process join one cluster over a real redis-server and
share one database; clients are real connections (`Wire`).  A request is
stored by the node of its sender; the contact's node delivers it to its own
sessions when it rereads the contact's roster, so a request is not lost when
the sender's node has not yet heard that the contact became available, and
never reaches a session twice.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chatgate.cluster.node import ClusterNode
from chatgate.cluster.options import ClusterOptions
from chatgate.modules.roster.service import RosterService
from tests.redis_server import RedisServer
from tests.unit.modules.wire import Server, Wire, plain

REQUEST_FROM_BOB = re.compile(r"<presence [^>]*from=\"bob@localhost\"[^>]*type=\"subscribe\"")
ANN = ("ann", "localhost")
SUBSCRIBE = "<presence type='subscribe' to='ann@localhost' id='s1'/>"
UNSUBSCRIBE = "<presence type='unsubscribe' to='ann@localhost' id='s2'/>"


async def start_node(tmp: Path, redis: RedisServer, name: str) -> Server:
    options = ClusterOptions(
        enabled=True, redis_url=redis.url, node=name, heartbeat_interval=0.2, node_timeout=1.0
    )
    node = ClusterNode(options)
    await node.start()
    return await Server.start(tmp, {}, cluster=node)


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[tuple[Server, Server]]:
    a = await start_node(tmp_path, redis_server, "a")
    b = await start_node(tmp_path, redis_server, "b")
    for user in ("ann", "bob"):
        await a.add_user(user, f"{user}-pw")
    try:
        yield a, b
    finally:
        await b.stop()
        await a.stop()


async def login(server: Server, user: str, resource: str = "r") -> Wire:
    wire = server.connect()
    bound = await wire.login_plain(user, f"{user}-pw", resource)
    assert "<jid>" in bound, bound
    return wire


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not in time")
        await asyncio.sleep(0.02)


def received(wire: Wire) -> str:
    return wire.transport.out.decode()


def requests_from_bob(wire: Wire) -> int:
    return len(REQUEST_FROM_BOB.findall(received(wire)))


@contextmanager
def held(target: Any, name: str, *, after: bool = False) -> Iterator[Held]:
    """`target.name` (an async method) waits at a gate, before its real call or
    `after` it, until the block ends; `reached` is set when a call gets there."""
    gate = Held(asyncio.Event(), asyncio.Event())
    real = getattr(target, name)

    async def call(*args: Any, **kwargs: Any) -> Any:
        if not after:
            gate.reached.set()
            await gate.opened.wait()
        result = await real(*args, **kwargs)
        if after:
            gate.reached.set()
            await gate.opened.wait()
        return result

    setattr(target, name, call)
    try:
        yield gate
    finally:
        setattr(target, name, real)
        gate.opened.set()


class Held:
    def __init__(self, reached: asyncio.Event, opened: asyncio.Event) -> None:
        self.reached = reached
        self.opened = opened


async def across(a: Server, b: Server) -> tuple[Wire, Wire]:
    """bob available on a, ann available on b, and a has heard that she is."""
    bob = await login(a, "bob")
    await bob.send("<presence/>")
    ann = await login(b, "ann")
    await ann.send("<presence/>")
    table = a.ctx.router.directory.table  # type: ignore[attr-defined]
    await eventually(lambda: table["ann@localhost"]["r"].available)
    return bob, ann


async def hibernated(server: Server) -> str:
    """ann available on `server` with resumption on, her connection lost: the id."""
    ann = await login(server, "ann", "phone")
    enabled = await ann.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    found = re.search(r"id=['\"]([^'\"]+)", enabled)
    assert found is not None, enabled
    await ann.send("<presence/>")
    ann.conn.connection_lost()
    await ann.settle()
    return found.group(1)


async def resume_on(server: Server, previd: str) -> tuple[Wire, asyncio.Future[str]]:
    """A new connection to `server` resuming ann's session `previd` (not awaited)."""
    back = server.connect()
    await back.open()
    assert "<success" in await back.send(plain("ann", "ann-pw"))
    await back.open()
    resume = f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>"
    return back, asyncio.ensure_future(back.send(resume))


async def test_a_request_reaches_a_contact_whose_availability_the_sender_node_has_not_heard(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    bob = await login(a, "bob")
    await bob.send("<presence/>")
    ann = await login(b, "ann")
    # Node a hears nothing more from Redis: ann's initial presence on b stays
    # unknown there, as while its announcement is still on the way.
    hearing = a.ctx.cluster._subscriber._transport  # type: ignore[union-attr]
    hearing.pause_reading()
    try:
        await ann.send("<presence/>")
        await bob.send(SUBSCRIBE)
        await eventually(lambda: requests_from_bob(ann) == 1)
    finally:
        hearing.resume_reading()
    await asyncio.sleep(0.3)
    assert requests_from_bob(ann) == 1, received(ann)


async def test_a_request_reaches_each_available_session_of_the_contact_once(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    bob = await login(a, "bob")
    await bob.send("<presence/>")
    ann_here = await login(a, "ann", "here")
    ann_there = await login(b, "ann", "there")
    ann_idle = await login(b, "ann", "idle")  # bound, no presence yet
    await ann_here.send("<presence/>")
    await ann_there.send("<presence/>")
    # a has heard that ann/there is available
    table = a.ctx.router.directory.table  # type: ignore[attr-defined]
    await eventually(lambda: table["ann@localhost"]["there"].available)
    await bob.send(SUBSCRIBE)
    await eventually(lambda: requests_from_bob(ann_there) == 1)
    assert requests_from_bob(ann_here) == 1
    assert requests_from_bob(ann_idle) == 0
    # the session that becomes available later gets the pending request with its roster
    await ann_idle.send("<presence/>")
    await eventually(lambda: requests_from_bob(ann_idle) == 1)
    await asyncio.sleep(0.3)
    for wire in (ann_here, ann_there, ann_idle):
        assert requests_from_bob(wire) == 1, received(wire)


async def test_a_change_during_the_first_read_of_a_roster_is_read_again(
    nodes: tuple[Server, Server],
) -> None:
    """A roster being read into memory when another node's change is announced: the
    change is not lost to the read that began before it."""
    a, b = nodes
    service: RosterService = b.module("roster").service
    with held(service.repository, "pending_in", after=True) as gate:
        load = asyncio.ensure_future(service.load(ANN))
        await gate.reached.wait()
        # Another node stores a request after b's read; b hears the announcement
        # (what `share_rosters` does with it) while its read is not yet in memory.
        await a.db.roster.add_pending_in(ANN, "bob@localhost", None)
        refresh = asyncio.ensure_future(service.refresh(ANN))
        await asyncio.sleep(0.05)
    await load
    await refresh
    roster = service.cached(ANN)
    assert roster is not None and roster.pending_in == {"bob@localhost"}


async def test_a_session_resumed_on_another_node_gets_later_requests(
    nodes: tuple[Server, Server],
) -> None:
    """XEP-0198: ann's session moves from a to b, where nothing had her roster; a
    request bob then sends on a reaches her on b."""
    a, b = nodes
    bob = await login(a, "bob")
    await bob.send("<presence/>")
    previd = await hibernated(a)
    assert b.module("roster").service.cached(ANN) is None
    back, resuming = await resume_on(b, previd)
    await resuming
    await eventually(lambda: "<resumed" in received(back))
    await bob.send(SUBSCRIBE)
    await eventually(lambda: requests_from_bob(back) == 1)
    await asyncio.sleep(0.3)
    assert requests_from_bob(back) == 1, received(back)


async def test_a_request_read_in_while_a_session_is_taken_over_reaches_it(
    nodes: tuple[Server, Server],
) -> None:
    """A request stored (by a third node) while b claims ann's resumed session:
    b's reread finds it before the session is reachable there, and the old node
    hears of it too late; b hands it to the session once it has arrived."""
    a, b = nodes
    previd = await hibernated(a)
    with held(b.ctx.router.directory, "take_over") as claim:
        back, resuming = await resume_on(b, previd)
        await claim.reached.wait()
        await a.db.roster.add_pending_in(ANN, "bob@localhost", None)
        await b.module("roster").service.refresh(ANN)  # the announcement, heard on b
    await resuming
    await eventually(lambda: "<resumed" in received(back))
    await eventually(lambda: requests_from_bob(back) == 1)
    await asyncio.sleep(0.3)
    assert requests_from_bob(back) == 1, received(back)


async def test_a_request_read_in_while_the_block_list_loads_reaches_the_session(
    nodes: tuple[Server, Server],
) -> None:
    """Initial presence waits for ann's block list; a request another node stores
    meanwhile is read into b's copy of the roster while the session is not yet
    available there: the session is sent it from that copy, once."""
    a, b = nodes
    bob = await login(a, "bob")
    await bob.send("<presence/>")
    lists = b.module("blocking").lists
    lists.blockers = None  # every account's list is read at its first presence
    service: RosterService = b.module("roster").service
    ann = await login(b, "ann")
    lists.cache.forget("ann@localhost")
    with held(lists.repository, "items"):
        presence = asyncio.ensure_future(ann.send("<presence/>"))
        await eventually(lambda: service.cached(ANN) is not None)
        await bob.send(SUBSCRIBE)
        await eventually(lambda: "bob@localhost" in service.cached(ANN).pending_in)  # type: ignore[union-attr]
    await presence
    await eventually(lambda: requests_from_bob(ann) == 1)
    await asyncio.sleep(0.3)
    assert requests_from_bob(ann) == 1, received(ann)


async def test_a_withdrawn_request_is_never_shown_after_its_withdrawal(
    nodes: tuple[Server, Server],
) -> None:
    """bob subscribes then unsubscribes at once (§3.1.3); b's reread of ann's roster
    is slow: ann on b gets the request before the withdrawal, never after it."""
    a, b = nodes
    bob, ann = await across(a, b)
    with held(b.module("roster").service.repository, "pending_in", after=True) as reread:
        await bob.send(SUBSCRIBE)
        await reread.reached.wait()  # b has read the request; the copy is not in place yet
        await bob.send(UNSUBSCRIBE)
        await asyncio.sleep(0.3)
        assert 'type="unsubscribe"' not in received(ann)
    await eventually(lambda: 'type="unsubscribe"' in received(ann))
    out = received(ann)
    assert requests_from_bob(ann) == 1, out
    assert out.index('type="subscribe"') < out.index('type="unsubscribe"'), out
    await asyncio.sleep(0.3)
    assert received(ann).count('type="unsubscribe"') == 1


async def test_a_request_withdrawn_before_any_reread_shows_neither(
    nodes: tuple[Server, Server],
) -> None:
    """bob subscribes and withdraws before b rereads ann's roster at all: b never
    showed the request, so it sends no withdrawal either."""
    a, b = nodes
    bob, ann = await across(a, b)
    with held(b.module("roster").service.repository, "items"):
        await bob.send(SUBSCRIBE)
        await bob.send(UNSUBSCRIBE)
        await asyncio.sleep(0.3)
    await asyncio.sleep(0.5)
    out = received(ann)
    assert requests_from_bob(ann) == 0, out
    assert 'type="unsubscribe"' not in out, out
