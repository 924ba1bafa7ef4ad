"""`ClusterCarbonsState` between real nodes on a real redis-server: which sessions
enabled carbons is known on every node, across joins, deaths and a Redis outage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from chatgate.cluster.carbons import ClusterCarbonsState
from chatgate.cluster.node import ClusterNode
from chatgate.cluster.peers import RedisPeers
from chatgate.modules.carbons import Carbons
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.sm_events import SessionMovedIn, SessionMovedOut, SessionMovingOut
from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import kill, options, wait_for


@dataclass(eq=False)
class Session:
    """What the carbons state reads of a session."""

    bare: str
    resource: str

    @property
    def full(self) -> str:
        return f"{self.bare}/{self.resource}"


def _as_session(session: Session) -> C2SSession:
    return cast("C2SSession", session)


async def _node(server: RedisServer, name: str) -> ClusterCarbonsState:
    node = ClusterNode(options(server), name=name)
    state = ClusterCarbonsState(node, RedisPeers(node))
    await node.start()
    await node.subscribed()
    await state.start()
    return state


async def test_an_enable_on_one_node_is_known_on_the_other(redis_server: RedisServer) -> None:
    a = await _node(redis_server, "a")
    b = await _node(redis_server, "b")
    try:
        await wait_for(lambda: a.peers.alive() == b.peers.alive() == {"a", "b"})
        phone, laptop = Session("alice@x", "phone"), Session("alice@x", "laptop")
        assert not b and not b.of("alice@x")
        a.enable(_as_session(phone))
        b.enable(_as_session(laptop))
        await wait_for(lambda: sorted(b.of("alice@x")) == ["alice@x/laptop", "alice@x/phone"])
        await wait_for(lambda: sorted(a.of("alice@x")) == ["alice@x/laptop", "alice@x/phone"])
        assert a.enabled(_as_session(phone)) and not a.enabled(
            _as_session(laptop)
        )  # a session's own node says
        a.disable(_as_session(phone))
        await wait_for(lambda: list(b.of("alice@x")) == ["alice@x/laptop"])
        b.disable(_as_session(laptop))
        await wait_for(lambda: not a)
        # the hashes a joining node reads hold nothing of the disabled sessions
        assert await a.node.redis.hgetall(a._key("a")) == {}
        assert await a.node.redis.hgetall(a._key("b")) == {}
    finally:
        await a.node.close()
        await b.node.close()


async def test_a_node_joining_later_learns_what_is_on_and_a_dead_nodes_entries_go(
    redis_server: RedisServer,
) -> None:
    a = await _node(redis_server, "a")
    a.enable(_as_session(Session("alice@x", "phone")))
    a.enable(_as_session(Session("bob@x", "pc")))
    a.disable(_as_session(Session("bob@x", "other")))  # never enabled: nothing changes
    b = await _node(redis_server, "b")
    try:
        # read at start from a's hash
        assert sorted(b.of("alice@x")) == ["alice@x/phone"]
        assert list(b.of("bob@x")) == ["bob@x/pc"]
        await kill(a.node)
        await wait_for(lambda: not b.of("alice@x") and not b, timeout=5)
    finally:
        await b.node.close()


async def test_a_restarted_node_clears_what_its_previous_run_left(
    redis_server: RedisServer,
) -> None:
    b = await _node(redis_server, "b")
    a = await _node(redis_server, "a")
    try:
        a.enable(_as_session(Session("alice@x", "phone")))
        await wait_for(lambda: bool(b.of("alice@x")))
        await kill(a.node)  # no goodbye, and back at once under its name
        again = await _node(redis_server, "a")
        try:
            # b saw a new run (or a death then a join): nothing of the old run stays
            await wait_for(lambda: not b.of("alice@x") and not b, timeout=5)
            assert await b.node.redis.hgetall(b._key("a")) == {}
            again.enable(_as_session(Session("alice@x", "tablet")))
            await wait_for(lambda: list(b.of("alice@x")) == ["alice@x/tablet"])
        finally:
            await again.node.close()
    finally:
        await b.node.close()


async def test_changes_during_a_redis_outage_are_known_everywhere_once_it_returns(
    redis_server: RedisServer,
) -> None:
    a = await _node(redis_server, "a")
    b = await _node(redis_server, "b")
    try:
        await wait_for(lambda: a.peers.alive() == b.peers.alive() == {"a", "b"})
        kept = Session("carol@x", "tablet")
        b.enable(_as_session(kept))
        await wait_for(lambda: bool(a.of("carol@x")))
        redis_server.stop()
        await wait_for(lambda: not a.node.connected and not b.node.connected, timeout=5)
        phone = Session("alice@x", "phone")
        a.enable(_as_session(phone))  # works here; the others hear it later
        assert list(a.of("alice@x")) == ["alice@x/phone"]
        assert list(a.of("carol@x")) == ["carol@x/tablet"]  # what was known stays
        redis_server.start()  # an empty Redis: everything is written back
        await wait_for(lambda: list(b.of("alice@x")) == ["alice@x/phone"], timeout=15)
        await wait_for(lambda: list(a.of("carol@x")) == ["carol@x/tablet"], timeout=15)
        assert await a.node.redis.hget(a._key("a"), "alice@x") == b"phone"
    finally:
        await a.node.close()
        await b.node.close()


async def test_malformed_messages_from_a_node_change_nothing(redis_server: RedisServer) -> None:
    a = await _node(redis_server, "a")
    b = await _node(redis_server, "b")
    try:
        await wait_for(lambda: a.peers.alive() == b.peers.alive() == {"a", "b"})
        for junk in (b"not json", b'{"b": "x@y"}', b'{"b": "x@y", "r": "phone"}', b"[1]"):
            a.peers.send("b", "carbons", junk)
        a.enable(_as_session(Session("alice@x", "phone")))
        await wait_for(lambda: list(b.of("alice@x")) == ["alice@x/phone"])
        assert not b.of("x@y")
    finally:
        await a.node.close()
        await b.node.close()


async def test_a_change_that_reached_not_every_node_is_sent_again(
    redis_server: RedisServer,
) -> None:
    a = await _node(redis_server, "a")
    b = await _node(redis_server, "b")
    try:
        await wait_for(lambda: a.peers.alive() == b.peers.alive() == {"a", "b"})
        sent = a.peers.broadcast
        dropped: list[bytes] = []

        def lossy(topic: str, payload: bytes) -> int:
            if not dropped:
                dropped.append(payload)  # as when this node's queue to Redis is full
                return 0
            return sent(topic, payload)

        a.peers.broadcast = lossy  # type: ignore[method-assign]
        a.enable(_as_session(Session("alice@x", "phone")))
        assert dropped
        await wait_for(lambda: list(b.of("alice@x")) == ["alice@x/phone"], timeout=3)
    finally:
        await a.node.close()
        await b.node.close()


async def test_a_session_resumed_on_another_node_keeps_carbons(redis_server: RedisServer) -> None:
    """XEP-0198 resumption across nodes (`xmpp/sm_events.py`): the old node carries
    the flag and forgets the session, the new node takes it on; every node sees the
    resource with carbons on, now on the new node."""
    a = await _node(redis_server, "a")
    b = await _node(redis_server, "b")
    on_a, on_b = Carbons(), Carbons()
    on_a.state, on_b.state = a, b
    try:
        await wait_for(lambda: a.peers.alive() == b.peers.alive() == {"a", "b"})
        old = _as_session(Session("alice@x", "phone"))
        quiet = _as_session(Session("alice@x", "desk"))
        a.enable(old)
        carry: dict[str, str] = {}
        on_a._moving_out(SessionMovingOut(old, "b", carry))
        nothing: dict[str, str] = {}
        on_a._moving_out(SessionMovingOut(quiet, "b", nothing))
        assert carry == {"carbons": "1"} and nothing == {}
        on_a._moved_out(SessionMovedOut(old, "b"))
        new = _as_session(Session("alice@x", "phone"))
        on_b._moved_in(SessionMovedIn(new, "a", carry))
        assert b.enabled(new) and not a.enabled(old)
        await wait_for(lambda: list(a.of("alice@x")) == ["alice@x/phone"] and not a.local)
        assert list(b.of("alice@x")) == ["alice@x/phone"]
        on_b._moved_in(SessionMovedIn(_as_session(Session("bob@x", "pc")), "a", {}))
        assert not b.of("bob@x")  # nothing carried: carbons stay off
    finally:
        await a.node.close()
        await b.node.close()
