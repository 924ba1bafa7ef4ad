"""A room occupant whose stream is resumed on another node (XEP-0198 across the
cluster), and a session whose list of rooms overflowed: when the session ends,
every room it was in hears so.

Before the fix, the rooms went unmentioned in the move: the new node knew of no
room to tell, the room kept the occupant (a ghost that still got the room's
messages, under a full JID a later session may reuse).

Real servers in this process join one cluster over a real redis-server and share
one database; clients are real connections (`Wire`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.peers import rendezvous_owner
from tests.redis_server import RedisServer
from tests.unit.cluster.conftest import redis_server, redis_server_session  # noqa: F401
from tests.unit.cluster.test_push_hibernated import two_nodes
from tests.unit.cluster.test_sessions_that_must_end import resumable, resume_on
from tests.unit.cluster.test_subscription_requests import eventually, login
from tests.unit.modules.wire import Server, Wire

from .support import MUC, SERVICE, instant


def room_of(owner: str, prefix: str = "room") -> str:
    for i in range(1000):
        jid = f"{prefix}{i}@{SERVICE}"
        if rendezvous_owner(jid, ("a", "b")) == owner:
            return jid
    raise AssertionError("no such room name")


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Server]]:  # noqa: F811
    async with two_nodes(tmp_path, redis_server, "alice", "bob") as started:
        yield started


async def enter(wire: Wire, room: str, nick: str) -> None:
    got = await wire.send(f"<presence to='{room}/{nick}'><x xmlns='{MUC}'/></presence>")
    if "201" in got:
        await wire.send(instant(room))
    await eventually(lambda: f'from="{room}/{nick}"' in wire.transport.out.decode())


def saw_leave(wire: Wire, room: str, nick: str) -> bool:
    out = wire.transport.out.decode()
    return bool(re.search(rf'<presence [^>]*from="{re.escape(room)}/{nick}"[^>]*unavailable', out))


async def test_an_occupant_resumed_on_another_node_leaves_its_rooms_when_it_ends(
    nodes: list[Server],
) -> None:
    a, b = nodes
    room = room_of("a")
    bob = await login(a, "bob")
    await enter(bob, room, "Bob")
    alice, token = await resumable(a, "alice", "phone")
    await enter(alice, room, "Alice")
    await eventually(lambda: 'from="' + room + '/Alice"' in bob.transport.out.decode())

    alice.conn.connection_lost()  # hibernated on a
    await alice.settle()
    back = await resume_on(b, "alice", token)
    assert "<resumed" in back.transport.out.decode()
    assert not saw_leave(bob, room, "Alice")  # still in the room, now from b

    back.conn.close_stream()  # the resumed session ends, on b
    await back.settle()
    await eventually(lambda: saw_leave(bob, room, "Alice"))


async def test_a_session_in_more_rooms_than_it_keeps_leaves_every_one(
    nodes: list[Server],
) -> None:
    """The list of a session's rooms is bounded; one pushed out of it must still
    hear the session end."""
    a, b = nodes
    relay = b.ctx.modules["muc"].module.relay  # type: ignore[attr-defined]
    relay.memberships.per_session = 1
    # the room that stays listed is b's own: nothing else would tell a
    first, second = room_of("a", "first"), room_of("b", "second")
    bob = await login(a, "bob")
    await enter(bob, first, "Bob")
    alice = await login(b, "alice")
    await enter(alice, first, "Alice")
    await enter(alice, second, "Alice")  # pushes `first` out of b's list
    alice.conn.close_stream()
    await alice.settle()
    await eventually(lambda: saw_leave(bob, first, "Alice"))
