"""XEP-0198 resumption across nodes (`cluster/sm_handover.py`, `xmpp/sm_takeover.py`,
`ClusterSessionDirectory.take_over`): two nodes over a real redis-server, each with
its real session directory, router and `RedisPeers`; the old connection is a
stand-in holding a real `ManagedStream`."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

import pytest

from chatgate.cluster.forwarding import FrameKind
from chatgate.cluster.peers import RedisPeers
from chatgate.cluster.sm_handover import SessionHandover
from chatgate.hooks import Hooks
from chatgate.jid import JID
from chatgate.peers import PeerUnreachable
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.sm_events import MAX_CARRY, SessionMovedOut, SessionMovingOut
from chatgate.xmpp.sm_handover_types import Refusal, Taken
from chatgate.xmpp.sm_queue import QueueLimits
from chatgate.xmpp.sm_resumption import Ended, LocalResumptionTable, SmPolicy
from chatgate.xmpp.sm_stream import ManagedStream
from chatgate.xmpp.sm_takeover import _Early
from tests.redis_server import RedisServer
from tests.unit.cluster.test_directory import Node, chat, eventually, kill, make_node

BARE = "alice@example.net"
FULL = f"{BARE}/phone"
TOKEN = "token-1"


@dataclass
class Ctx:
    """What the handover uses of the server context."""

    router: Any
    hooks: Hooks
    closed: list[C2SSession] = field(default_factory=list)
    tasks: list[asyncio.Future[Any]] = field(default_factory=list)

    def spawn(self, coro: Awaitable[None]) -> None:
        self.tasks.append(asyncio.ensure_future(coro))

    def session_closed(self, session: C2SSession) -> None:
        self.closed.append(session)


@dataclass
class Side:
    node: Node
    ctx: Ctx
    table: LocalResumptionTable
    handover: SessionHandover
    policy: SmPolicy


class OldConnection:
    """The connection A's session was on (`SmConnection`'s part `detach` uses)."""

    def __init__(self, session: C2SSession, sm: ManagedStream) -> None:
        self.session: C2SSession | None = session
        self.sm: ManagedStream | None = sm
        self.csi = None
        self.handed_over = False

    def hand_over(self) -> None:
        self.handed_over = True
        self.session = None
        self.sm = None


async def side(server: RedisServer, name: str) -> Side:
    node = await make_node(server, name)
    peers = RedisPeers(node.node)
    await node.node.subscribed()
    table = LocalResumptionTable()
    ctx = Ctx(node.router, node.hooks)
    handover = SessionHandover(ctx, peers, table)  # type: ignore[arg-type]
    policy = SmPolicy(300, 300, QueueLimits(50, 100_000), 5, 2.0, table, handover)
    return Side(node, ctx, table, handover, policy)


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[Side, Side]]:
    a = await side(redis_server, "a")
    b = await side(redis_server, "b")
    await eventually(lambda: a.handover.peers.alive() == b.handover.peers.alive() == {"a", "b"})
    try:
        yield a, b
    finally:
        for s in (a, b):
            if s.node.node._tasks:
                await s.node.node.close()


async def hibernated(a: Side, *bodies: str) -> tuple[C2SSession, OldConnection]:
    """A stream-managed session of alice on A whose connection dropped, with
    `bodies` sent to it (unacknowledged), available with priority 5."""
    session = await a.node.bind(BARE, "phone")
    a.node.directory.mark_available(session, 5, Element("presence", "jabber:client"))
    session.directed.add("carol@example.net/desk")
    sm = ManagedStream(a.policy, TOKEN, 300, lambda: None)
    sm.queue.handled()
    session.write = sm.write
    for body in bodies:
        sm.write(f"<message><body>{body}</body></message>".encode())
    conn = OldConnection(session, sm)
    a.table.add(TOKEN, BARE, conn)
    return session, conn


def session_on(b: Side, written: list[bytes]) -> C2SSession:
    return C2SSession(
        username="alice",
        domain="example.net",
        resource="phone",
        stream_id="new",
        write=written.append,
        close=lambda condition, text: None,
        transport="tcp",
    )


async def test_a_session_moves_with_its_state_and_what_it_was_sent_meanwhile(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    await hibernated(a, "m0", "m1", "m2")
    taken = await b.handover.take("a", TOKEN, BARE, 1)
    assert isinstance(taken, Taken)
    assert (taken.full, taken.inbound, taken.acked) == (FULL, 1, 1)
    assert (taken.available, taken.priority, taken.interested) == (True, 5, False)
    assert taken.directed == ("carol@example.net/desk",)
    assert a.table.find(TOKEN, BARE) == Ended(1)  # nobody else can take it now
    # Between the steps a message to the full JID, sent from B, queues on A.
    b.node.router.deliver_to_full(JID.parse(FULL), chat(FULL, "m3"))
    written: list[bytes] = []
    new = session_on(b, written)
    presence = Element("presence", "jabber:client")
    moved = await b.node.directory.take_over(
        new, "a", taken.sid, available=True, priority=5, presence=presence, interested=False
    )
    assert moved
    await asyncio.sleep(0.1)
    handed = await b.handover.done("a", TOKEN)
    assert [u.split(b"<body>")[1][:2] for u in handed.unacked] == [b"m1", b"m2", b"m3"]
    # A let it go without ending it: no SessionClosed, nothing stored offline.
    assert a.ctx.closed == [] and a.node.stored == []
    assert BARE not in a.node.directory.local
    assert b.node.directory.local[BARE]["phone"] is new
    # From now on A delivers to B, whose session is available to the bare JID too.
    a.node.router.deliver_to_full(JID.parse(FULL), chat(FULL, "m4"))
    a.node.router.deliver_message_to_bare(chat(BARE, "m5"), JID.parse(BARE))
    await eventually(lambda: len(written) == 2)
    assert [w.split(b"<body>")[1][:2] for w in written] == [b"m4", b"m5"]
    assert a.handover.locate(TOKEN, BARE) == "b"
    assert a.handover.locate(TOKEN, "mallory@example.net") is None


async def test_a_message_in_flight_to_a_after_it_let_go_is_sent_on_to_b(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    await hibernated(a)
    taken = await b.handover.take("a", TOKEN, BARE, None)
    assert isinstance(taken, Taken)
    written: list[bytes] = []
    new = session_on(b, written)
    assert await b.node.directory.take_over(
        new, "a", taken.sid, available=False, priority=0, presence=None, interested=True
    )
    await b.handover.done("a", TOKEN)
    # A frame for the full JID that A no longer holds (sent before its sender knew).
    a.node.directory._frames(_frame(FULL, chat(FULL, "late")))
    iq = Element("iq", "jabber:client", {"type": "get", "id": "q1", "to": FULL})
    a.node.directory._frames(_frame(FULL, iq))  # an IQ as well: it has an answerer
    await eventually(lambda: len(written) == 2)
    assert b"late" in written[0] and b"q1" in written[1]
    assert a.node.stored == []


def _frame(full: str, stanza: Element) -> bytes:
    """One forwarded frame as a node publishes it (kind, target, payload)."""
    target = full.encode()
    payload = serialize(stanza).encode()
    return struct.pack(">BHI", FrameKind.STANZA, len(target), len(payload)) + target + payload


async def test_another_account_or_an_unknown_token_is_refused_and_nothing_moves(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    _, conn = await hibernated(a, "m0")
    assert await b.handover.take("a", TOKEN, "mallory@example.net", 0) == Refusal()
    assert await b.handover.take("a", "no-such-token", BARE, 0) == Refusal()
    assert not conn.handed_over
    assert a.table.find(TOKEN, BARE) is conn


async def test_an_h_past_what_was_sent_is_refused_and_the_session_stays(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    _, conn = await hibernated(a, "m0", "m1")
    answer = await b.handover.take("a", TOKEN, BARE, 5)
    assert answer == Refusal(too_high=(5, 2))
    assert not conn.handed_over
    assert a.table.find(TOKEN, BARE) is conn


async def test_of_two_concurrent_takes_exactly_one_wins(pair: tuple[Side, Side]) -> None:
    a, b = pair
    await hibernated(a, "m0")
    answers = await asyncio.gather(
        b.handover.take("a", TOKEN, BARE, 0), b.handover.take("a", TOKEN, BARE, 0)
    )
    assert sorted(type(x).__name__ for x in answers) == ["Refusal", "Taken"]


async def test_an_abandoned_handover_ends_the_session_on_a_as_its_timeout_would(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    session, _ = await hibernated(a, "m0")
    taken = await b.handover.take("a", TOKEN, BARE, 0)
    assert isinstance(taken, Taken)
    b.handover.abort("a", TOKEN)
    await eventually(lambda: a.ctx.closed == [session])
    assert BARE not in a.node.directory.local
    await eventually(lambda: a.node.stored == [(BARE, "m0")])  # offline, not lost
    with pytest.raises(Exception, match="no longer holds"):
        await b.handover.done("a", TOKEN)


async def test_a_new_binding_of_the_resource_during_the_handover_ends_it(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    session, _ = await hibernated(a, "m0")
    taken = await b.handover.take("a", TOKEN, BARE, 0)
    assert isinstance(taken, Taken)
    session.close(StreamErrorCondition.CONFLICT, "replaced")
    assert a.ctx.closed == [session]
    # A's release reaches Redis (within `command_write_interval`) before B asks.
    resources = a.node.directory._res_key(BARE)

    async def released() -> None:
        while await a.node.node.redis.hexists(resources, session.resource):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(released(), 5)
    written: list[bytes] = []
    moved = await b.node.directory.take_over(
        session_on(b, written),
        "a",
        taken.sid,
        available=True,
        priority=0,
        presence=None,
        interested=False,
    )
    assert not moved  # A no longer holds it under that sid: nothing changes on B
    assert BARE not in b.node.directory.local


async def test_a_dead_node_or_redis_away_fails_the_take(
    pair: tuple[Side, Side], redis_server: RedisServer
) -> None:
    a, b = pair
    await hibernated(a, "m0")
    await kill(a.node)
    with pytest.raises(PeerUnreachable):
        await b.handover.take("a", TOKEN, BARE, 0)
    redis_server.stop()
    with pytest.raises(PeerUnreachable):
        await b.handover.take("a", TOKEN, BARE, 0)


def test_what_arrives_during_the_handover_is_kept_in_order_within_bounds() -> None:
    early = _Early(QueueLimits(2, 1000))
    early.write(b"<message>1</message>")
    early.write(b"<presence/>")
    assert early.items == [b"<message>1</message>", b"<presence/>"] and not early.over
    early.write(b"<presence/>")  # over: the session will end; presence is not kept
    early.write(b"<message>2</message>")  # messages are, up to twice the bound
    early.write(b"<message>3</message>")
    early.write(b"<message>4</message>")  # past twice the bound: dropped
    assert early.over
    assert early.items == [
        b"<message>1</message>",
        b"<presence/>",
        b"<message>2</message>",
        b"<message>3</message>",
    ]
    big = _Early(QueueLimits(100, 1024))
    for _ in range(10):
        big.write(b"<message>" + b"x" * 300 + b"</message>")
    assert big.over and sum(map(len, big.items)) <= 2 * 1024


async def test_modules_carry_their_state_and_forget_it_without_side_effects(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    await hibernated(a)
    heard: list[object] = []

    def moving(event: SessionMovingOut) -> None:
        assert a.node.directory.is_bound(event.session)  # still bound: state readable
        event.carry["carbons"] = "on"
        heard.append(("moving", event.node))

    a.node.hooks.add(SessionMovingOut, moving)
    a.node.hooks.add(SessionMovedOut, lambda event: heard.append(("moved", event.node)))
    taken = await b.handover.take("a", TOKEN, BARE, 0)
    assert isinstance(taken, Taken)
    assert await b.node.directory.take_over(
        session_on(b, []),
        "a",
        taken.sid,
        available=False,
        priority=0,
        presence=None,
        interested=False,
    )
    handed = await b.handover.done("a", TOKEN)
    assert handed.carry == {"carbons": "on"}
    assert heard == [("moving", "b"), ("moved", "b")]
    assert a.ctx.closed == []  # no SessionClosed on A


async def test_state_too_big_to_carry_is_not_carried(pair: tuple[Side, Side]) -> None:
    a, b = pair
    await hibernated(a)

    def moving(event: SessionMovingOut) -> None:
        event.carry["big"] = "x" * MAX_CARRY

    a.node.hooks.add(SessionMovingOut, moving)
    taken = await b.handover.take("a", TOKEN, BARE, 0)
    assert isinstance(taken, Taken)
    assert await b.node.directory.take_over(
        session_on(b, []),
        "a",
        taken.sid,
        available=False,
        priority=0,
        presence=None,
        interested=False,
    )
    handed = await b.handover.done("a", TOKEN)
    assert handed.carry == {}
    assert len(handed.unacked) == 0
