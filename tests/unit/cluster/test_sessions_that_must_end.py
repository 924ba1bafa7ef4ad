"""Which session ends, and which keeps its resource, when a change meets an
outage of Redis or a move between nodes (found by an adversarial review).

An account deleted or locked while Redis was unreachable: its sessions on
other nodes end once the cluster has resynchronised.

Deleting or locking an account closes its sessions on every node by a CLOSE
sent over Redis.  During an outage that CLOSE is refused on the changing node,
or never heard by a node that lost Redis; before the fix, such a session
outlived its account for good.  Both sides are covered: the changing node sends
what it owes after the resync, and each node checks its own sessions' accounts
after it.  A live session bound during the outage keeps its resource against
one waiting to be resumed elsewhere; a session closed while it is being handed
over to another node does not move; a queue handed over whose answer was lost
goes to offline storage.

Real servers in this process join one cluster over a real redis-server (stopped
and started by the tests) and share one database; clients are real connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from chatgate.accounts.service import REMOVED_TEXT
from chatgate.cluster import account_recheck, sm_handover
from chatgate.cluster.sm_handover import SessionHandover
from chatgate.peers import PeerUnreachable
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xmpp.sm_events import SessionMovingOut
from chatgate.xmpp.sm_handover_types import Handed
from tests.redis_server import RedisServer
from tests.unit.modules.wire import Server, Wire, plain

from .test_mirror_robustness import back, directory, online, outage
from .test_push_hibernated import two_nodes
from .test_subscription_requests import eventually

USERS = ("ivan", "kate", "leo")


@contextlib.asynccontextmanager
async def cut_off(redis: RedisServer, servers: list[Server]) -> AsyncIterator[None]:
    """Redis unreachable for every node, its data kept (a network cut): a password
    is required and every other connection is closed; on exit it goes and the
    nodes reconnect."""
    store = aioredis.Redis.from_url(redis.url)
    await store.config_set("requirepass", "cut-off")
    try:
        await store.execute_command("AUTH", "cut-off")
        await store.client_kill_filter(_type="normal", skipme=True)
        await store.client_kill_filter(_type="pubsub", skipme=True)
        await eventually(lambda: not any(s.ctx.cluster.connected for s in servers))
        yield
    finally:
        await store.config_set("requirepass", "")
        await store.aclose()
    await eventually(lambda: all(s.ctx.cluster.connected for s in servers), timeout=10)


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Server]]:
    async with two_nodes(tmp_path, redis_server, *USERS) as started:
        yield started


def ended(wire: Wire, text: str, condition: str = "<not-authorized") -> bool:
    out = wire.transport.out.decode()
    return condition in out and text in out and out.endswith("</stream:stream>")


async def resumable(server: Server, user: str, resource: str) -> tuple[Wire, str]:
    """A session with XEP-0198 resumption on, and its resumption token."""
    wire = await online(server, user, resource)
    enabled = await wire.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    token = re.search(r"id=['\"]([^'\"]+)", enabled)
    assert token is not None, enabled
    return wire, token.group(1)


async def resume_on(server: Server, user: str, token: str) -> Wire:
    """A new connection to `server` that resumed `token` (or failed to: its output)."""
    wire = server.connect()
    await wire.open()
    assert "<success" in await wire.send(plain(user, f"{user}-pw"))
    await wire.open()
    await wire.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{token}' h='0'/>")
    return wire


async def waiting_with_a_message(server: Server) -> str:
    """ivan's phone on `server`, waiting to be resumed with one message from kate it
    never acknowledged; its token."""
    phone, token = await resumable(server, "ivan", "phone")
    kate = await online(server, "kate")
    await kate.send("<message to='ivan@localhost/phone' type='chat'><body>unacked</body></message>")
    await eventually(lambda: "unacked" in phone.transport.out.decode())
    phone.conn.connection_lost()
    await phone.settle()
    return token


def reclaim_in_order(first: Server, then: Server) -> None:
    """After the outage, `then` claims its sessions again only once `first` has."""
    done = asyncio.Event()
    first_reclaims = directory(first)._reassert_and_reload
    then_reclaims = directory(then)._reassert_and_reload

    async def first_one() -> None:
        await first_reclaims()
        done.set()

    async def after() -> None:
        await done.wait()
        await then_reclaims()

    directory(first)._reassert_and_reload = first_one
    directory(then)._reassert_and_reload = after


async def test_sessions_elsewhere_get_the_close_their_node_could_not_send(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """An administrator ends every session of an account during the outage (no
    account change: only the changing node's owed close can end the other node's
    session)."""
    a, b = nodes
    here = await online(a, "ivan", "here")
    there = await online(b, "ivan", "there")
    await eventually(lambda: "there" in directory(a).table.get("ivan@localhost", {}))
    await outage(redis_server, nodes)
    text = "ended by an administrator"
    condition = StreamErrorCondition.POLICY_VIOLATION
    assert directory(a).close_sessions("ivan@localhost", condition, text)
    await here.settle()
    assert ended(here, text, "<policy-violation")  # this node's: at once
    assert not ended(there, text, "<policy-violation")
    await back(redis_server, nodes)
    await eventually(lambda: ended(there, text, "<policy-violation"), timeout=10)


async def test_an_owed_close_for_an_account_unlocked_again_is_not_sent(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """Locked, then unlocked, during the outage: the lock's close is owed, but the
    account is in good standing once Redis is back; its session elsewhere stays."""
    a, b = nodes
    there = await online(b, "kate", "there")
    await eventually(lambda: "there" in directory(a).table.get("kate@localhost", {}))
    await outage(redis_server, nodes)
    accounts = a.ctx.db.accounts
    text = "the account was locked"
    assert await accounts.set_locked("kate", "localhost", True)
    directory(a).close_sessions("kate@localhost", StreamErrorCondition.NOT_AUTHORIZED, text)
    assert await accounts.set_locked("kate", "localhost", False)
    await back(redis_server, nodes)
    await eventually(lambda: not directory(a)._owed_closes and not directory(a)._background)
    await asyncio.sleep(0.5)  # a close sent would have arrived
    await there.settle()
    assert not ended(there, text)
    assert "kate@localhost" in directory(b).local


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


async def test_a_live_session_bound_during_the_outage_wins_over_one_waiting(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """XEP-0198: a phone's session waits on a; during the outage its resumption on b
    fails (a cannot be asked) and the client binds the resource anew on b, as it
    is told to.  Once Redis is back the live session keeps the resource (the
    default policy: the newest bind wins) and the waiting one is closed."""
    a, b = nodes
    phone, _ = await resumable(a, "ivan", "phone")
    phone.conn.connection_lost()
    await phone.settle()
    await eventually(lambda: len(directory(b).hibernated_elsewhere) == 1)
    reclaim_in_order(a, b)  # the order that lost before
    async with cut_off(redis_server, nodes):  # a's claim stays in Redis
        again = await online(b, "ivan", "phone")
    await eventually(lambda: "ivan@localhost" not in directory(a).local, timeout=10)
    await again.settle()
    assert "<conflict" not in again.transport.out.decode()
    assert "phone" in directory(b).local["ivan@localhost"]
    claims = await b.ctx.cluster.redis.hgetall(b.ctx.cluster.key("res", "ivan@localhost"))
    assert list(claims) == [b"phone"] and claims[b"phone"].startswith(b"b|")


@pytest.mark.parametrize("first", ["a", "b"])
async def test_a_live_session_wins_over_one_that_began_waiting_during_the_outage(
    nodes: list[Server], redis_server: RedisServer, first: str
) -> None:
    """The waiting session's node can record that it waits only at its own resync:
    the live session's node, resynchronising first, waits for it (`_contest`)
    rather than giving up its live session."""
    a, b = nodes
    phone, _ = await resumable(a, "ivan", "phone")
    reclaim_in_order(a, b) if first == "a" else reclaim_in_order(b, a)
    async with cut_off(redis_server, nodes):
        phone.conn.connection_lost()  # begins waiting on a, during the outage
        await phone.settle()
        again = await online(b, "ivan", "phone")  # its resumption failed: bound anew
    await eventually(lambda: "ivan@localhost" not in directory(a).local, timeout=10)
    claims = await b.ctx.cluster.redis.hgetall(b.ctx.cluster.key("res", "ivan@localhost"))
    assert claims[b"phone"].startswith(b"b|")
    await again.settle()
    assert "<conflict" not in again.transport.out.decode()


async def test_a_session_closed_while_it_is_handed_over_does_not_move(
    nodes: list[Server],
) -> None:
    """A lock (or a deletion, a conflict) reaching the old node while its modules
    pack the session's state for the move ends the session there; the new node
    must not resume it."""
    a, b = nodes
    phone, token = await resumable(a, "ivan", "phone")
    phone.conn.connection_lost()
    await phone.settle()
    packing, locked = asyncio.Event(), asyncio.Event()

    async def slow_module(event: SessionMovingOut) -> None:
        packing.set()
        await locked.wait()

    a.ctx.hooks.add(SessionMovingOut, slow_module)
    resuming = asyncio.create_task(resume_on(b, "ivan", token))
    await packing.wait()
    directory(a).close_sessions("ivan@localhost", StreamErrorCondition.NOT_AUTHORIZED, "locked")
    locked.set()
    again = await resuming
    await eventually(lambda: "<failed" in again.transport.out.decode())
    assert "<resumed" not in again.transport.out.decode()
    await eventually(lambda: "ivan@localhost" not in directory(b).local)
    assert "ivan@localhost" not in directory(a).local


async def test_a_queue_whose_handover_answer_was_lost_is_sent_on(
    nodes: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old node answered step 3 (and let the session go) but the answer never
    reached the new node, which ends the session: the message the client had not
    acknowledged goes to offline storage, not nowhere."""
    a, b = nodes
    token = await waiting_with_a_message(a)
    answered = SessionHandover.done

    async def answer_lost(self: SessionHandover, node: str, token: str) -> Handed:
        await answered(self, node, token)  # a answered and let the session go
        raise PeerUnreachable("the answer was lost")

    monkeypatch.setattr(SessionHandover, "done", answer_lost)
    again = await resume_on(b, "ivan", token)
    await eventually(lambda: "<failed" in again.transport.out.decode())
    monkeypatch.undo()
    await eventually(lambda: "ivan@localhost" not in directory(b).local)
    later = await online(b, "ivan", "desk")  # offline messages come with presence
    await eventually(lambda: "unacked" in later.transport.out.decode())


async def test_a_handed_queue_is_kept_only_a_while(
    nodes: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What step 3 answered is kept for an abort that may follow, not for good."""
    monkeypatch.setattr(sm_handover, "HANDED_KEPT", 0.2)
    a, b = nodes
    token = await waiting_with_a_message(a)
    again = await resume_on(b, "ivan", token)
    assert "<resumed" in again.transport.out.decode()
    handover = a.ctx.modules["stream_management"].module.handover  # type: ignore[attr-defined]
    assert handover._handed  # kept for a moment
    await eventually(lambda: not handover._handed and handover._handed_bytes == 0)


@pytest.mark.parametrize("told", ["owed", "missed"])
async def test_a_session_of_an_account_deleted_and_registered_again_ends(
    nodes: list[Server], redis_server: RedisServer, told: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kate's account is deleted during the outage, then her name registered again:
    her old session on b must end, not live on as the new account.  `owed`: a
    sends the deletion's close after the resync; `missed`: no close was kept
    (the deletion only in the database), b finds the session older than the
    account now of its name."""
    a, b = nodes
    there = await online(b, "kate", "there")
    await eventually(lambda: "there" in directory(a).table.get("kate@localhost", {}))
    await outage(redis_server, nodes)
    assert await a.ctx.db.accounts.delete("kate", "localhost")
    if told == "owed":
        directory(a).close_sessions(
            "kate@localhost", StreamErrorCondition.NOT_AUTHORIZED, REMOVED_TEXT
        )
    monkeypatch.setattr(account_recheck, "CLOCK_MARGIN", 0.0)  # one clock here
    await asyncio.sleep(0.01)  # the new account is younger than the session
    await a.add_user("kate", "someone-else-pw")
    await back(redis_server, nodes)
    await eventually(lambda: ended(there, REMOVED_TEXT), timeout=10)


async def test_a_duplicate_live_session_loses_once_the_holder_has_resynced(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    """Both sessions live through the outage: the contest ends as soon as the
    holder's node says it has resynced, not after `CONTEST_WAIT` (300 s)."""
    a, b = nodes
    keep = await online(b, "ivan", "phone")
    reclaim_in_order(a, b)  # a's contest begins before b has resynced
    async with cut_off(redis_server, nodes):
        duplicate = await online(a, "ivan", "phone")
    await eventually(lambda: "<conflict" in duplicate.transport.out.decode(), timeout=10)
    await keep.settle()
    assert "<conflict" not in keep.transport.out.decode()
    assert "phone" in directory(b).local["ivan@localhost"]
    assert not directory(a)._contests


async def test_a_token_handed_back_and_forth_is_counted_once(nodes: list[Server]) -> None:
    a, b = nodes
    token = await waiting_with_a_message(a)
    kept = a.ctx.modules["stream_management"].module.handover  # type: ignore[attr-defined]
    for there in (b, a, b):
        wire = await resume_on(there, "ivan", token)
        assert "<resumed" in wire.transport.out.decode()
        wire.conn.connection_lost()
        await wire.settle()
    assert kept._handed_bytes == sum(len(data) for data in kept._handed[token].unacked)


async def test_a_duplicate_loses_at_once_to_a_holder_that_never_lost_redis(
    nodes: list[Server],
) -> None:
    """Only a loses Redis; b holds ivan/phone live throughout: b's claims are final
    (its heartbeat's mark moves on), so a's duplicate gets conflict within seconds,
    not after `CONTEST_WAIT`."""
    a, b = nodes
    await online(b, "ivan", "phone")
    await eventually(lambda: "phone" in directory(a).table.get("ivan@localhost", {}))
    node = a.ctx.cluster
    reconnect = node._open_connections
    cut = True

    async def only_a_cut_off() -> None:
        if cut:
            raise ConnectionError("a is cut off")
        await reconnect()

    node._open_connections = only_a_cut_off  # type: ignore[method-assign]
    node._commands.close()
    await eventually(lambda: not node.connected)
    assert b.ctx.cluster.connected
    duplicate = await online(a, "ivan", "phone")
    cut = False
    await eventually(lambda: node.connected, timeout=10)
    await eventually(lambda: "<conflict" in duplicate.transport.out.decode(), timeout=10)
    assert "phone" in directory(b).local["ivan@localhost"]
