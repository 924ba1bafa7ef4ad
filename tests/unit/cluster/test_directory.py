"""The cluster session directory: two nodes over a real redis-server, sessions as
the connection driver makes them, the real router delivering over each node's table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from chatgate.cluster.directory import _SCRIPTS, ClusterSessionDirectory, RemoteSession
from chatgate.cluster.node import ClusterNode
from chatgate.cluster.options import ClusterOptions
from chatgate.config import ResourceConflict
from chatgate.hooks import Hooks
from chatgate.jid import JID
from chatgate.vocabulary.errors import StanzaErrorCondition, StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.directory import ClaimRefused
from chatgate.xmpp.events import RemoteSessionLost
from chatgate.xmpp.router import MessageUndeliverable, Router
from chatgate.xmpp.session import C2SSession
from tests.redis_server import RedisServer


@dataclass
class Peer:
    """What one client received and whether its stream was closed."""

    written: list[bytes] = field(default_factory=list)
    closed: list[StreamErrorCondition | None] = field(default_factory=list)


@dataclass
class Node:
    node: ClusterNode
    directory: ClusterSessionDirectory
    router: Router
    hooks: Hooks
    peers: dict[str, Peer] = field(default_factory=dict)
    stored: list[tuple[str, str]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def factory(self, bare: str) -> Callable[[str], C2SSession]:
        user, _, domain = bare.partition("@")

        def make(resource: str) -> C2SSession:
            peer = self.peers.setdefault(f"{bare}/{resource}", Peer())
            return C2SSession(
                username=user,
                domain=domain,
                resource=resource,
                stream_id="s",
                write=peer.written.append,
                close=lambda condition, text: peer.closed.append(condition),
                transport="tcp",
            )

        return make

    async def bind(self, bare: str, resource: str | None) -> C2SSession:
        claimed = self.directory.claim(self.factory(bare), resource)
        if not isinstance(claimed, tuple):  # "reject", "randomize", Redis away
            claimed = await claimed
        session, replaced = claimed
        if replaced is not None:
            replaced.close(StreamErrorCondition.CONFLICT, "")
        return session


def options(server: RedisServer) -> ClusterOptions:
    return ClusterOptions(
        enabled=True, redis_url=server.url, heartbeat_interval=0.1, node_timeout=0.5
    )


async def make_node(
    server: RedisServer,
    name: str,
    conflict: ResourceConflict = ResourceConflict.NEWEST_WINS,
    max_resources: int = 5,
) -> Node:
    cluster = ClusterNode(options(server), name=name)
    await cluster.start()
    hooks = Hooks()
    directory = ClusterSessionDirectory(cluster, hooks, conflict, max_resources)

    async def exists(local: str, domain: str) -> bool:
        return True

    router = Router(frozenset({"example.net"}), hooks, exists, directory)
    node = Node(cluster, directory, router, hooks)
    directory.reroute = lambda stanza, to: router.deliver_message_to_bare(stanza, to)

    async def store(event: MessageUndeliverable) -> bool:
        found = event.stanza.find("body")
        node.stored.append((event.recipient, found.text if found is not None else ""))
        return True

    async def lost(event: RemoteSessionLost) -> None:
        if event.available:
            node.lost.append(event.full)

    hooks.add(MessageUndeliverable, store)
    hooks.add(RemoteSessionLost, lost)
    await directory.start()
    cluster.on_close(directory.close)
    await cluster.subscribed()
    return node


@pytest.fixture
async def two(redis_server: RedisServer) -> AsyncIterator[tuple[Node, Node]]:
    a = await make_node(redis_server, "a")
    b = await make_node(redis_server, "b")
    try:
        yield a, b
    finally:
        for n in (a, b):
            if n.node._tasks:
                await n.node.close()


async def kill(node: Node) -> None:
    """As kill -9: the node stops at once, says nothing, and its heartbeat expires."""
    cluster = node.node
    cluster._stopping = True
    for task in cluster._tasks:
        task.cancel()
    cluster._tasks = []
    await node.directory.close()
    for connection in (cluster._commands, cluster._subscriber):
        if connection is not None:
            connection.close()
    await cluster.redis.aclose()


async def eventually(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not in time")
        await asyncio.sleep(0.02)


def chat(to: str, body: str) -> Element:
    message = Element(
        "message", "jabber:client", {"to": to, "type": "chat", "from": "x@example.net/r"}
    )
    message.append(Element("body", "jabber:client", {}, [body]))
    return message


async def test_a_session_claimed_on_one_node_is_delivered_to_from_the_other(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    session = await a.bind("alice@example.net", "phone")
    a.directory.mark_available(session, 5, Element("presence", "jabber:client"))
    await eventually(lambda: "alice@example.net" in b.directory.table)
    stand_in = b.directory.table["alice@example.net"]["phone"]
    assert isinstance(stand_in, RemoteSession) and stand_in.node == "a"
    await eventually(lambda: stand_in.available and stand_in.priority == 5)
    # A bare-JID chat on node b goes to the highest-priority resource, on node a.
    b.router.deliver_message_to_bare(
        chat("alice@example.net", "hello"), JID.parse("alice@example.net")
    )
    await eventually(lambda: a.peers["alice@example.net/phone"].written)
    assert b"hello" in a.peers["alice@example.net/phone"].written[0]
    assert b.directory.bound_anywhere("alice@example.net")
    assert not b.directory.bound_here("alice@example.net")


async def test_many_stanzas_cross_in_order_in_few_publishes(two: tuple[Node, Node]) -> None:
    a, b = two
    await a.bind("alice@example.net", "phone")
    await eventually(lambda: "alice@example.net" in b.directory.table)
    for i in range(500):
        assert b.router.deliver_to_full(
            JID.parse("alice@example.net/phone"), chat("alice@example.net/phone", str(i))
        )
    peer = a.peers["alice@example.net/phone"]
    await eventually(lambda: len(peer.written) == 500)
    bodies = [w.split(b"<body>")[1].split(b"</body>")[0] for w in peer.written]
    assert bodies == [str(i).encode() for i in range(500)]


async def test_newest_wins_across_nodes_closes_the_old_session_with_conflict(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    await a.bind("alice@example.net", "desk")
    await eventually(lambda: "alice@example.net" in b.directory.table)
    await b.bind("alice@example.net", "desk")
    await eventually(
        lambda: a.peers["alice@example.net/desk"].closed == [StreamErrorCondition.CONFLICT]
    )


async def test_reject_and_max_resources_hold_across_nodes(redis_server: RedisServer) -> None:
    a = await make_node(redis_server, "a", ResourceConflict.REJECT_NEW, max_resources=2)
    b = await make_node(redis_server, "b", ResourceConflict.REJECT_NEW, max_resources=2)
    try:
        await a.bind("bob@example.net", "one")
        with pytest.raises(ClaimRefused) as refused:
            await b.bind("bob@example.net", "one")
        assert refused.value.condition is StanzaErrorCondition.CONFLICT
        await b.bind("bob@example.net", "two")
        with pytest.raises(ClaimRefused) as refused:
            await a.bind("bob@example.net", "three")
        assert refused.value.condition is StanzaErrorCondition.RESOURCE_CONSTRAINT
        # A server-chosen resource never collides.
        session = await b.bind("carol@example.net", None)
        assert session.resource
    finally:
        await a.node.close()
        await b.node.close()


async def test_a_released_session_leaves_the_other_nodes_table(two: tuple[Node, Node]) -> None:
    a, b = two
    session = await a.bind("alice@example.net", "phone")
    await eventually(lambda: "alice@example.net" in b.directory.table)
    assert a.directory.release(session) is None  # gone here at once; Redis told at once
    await eventually(lambda: "alice@example.net" not in b.directory.table)
    # The resource is free again, on any node.
    await b.bind("alice@example.net", "phone")


async def test_a_resource_of_any_characters_is_mirrored_and_released_whole(
    two: tuple[Node, Node],
) -> None:
    """The claim and release scripts write their events with Redis's cjson (which
    writes '/' as '\\/' and non-ASCII as raw UTF-8): the other node must read back
    the very resource, deliver to it, and drop it on release."""
    a, b = two
    resource = 'ph"one/\\ é漢 😀'
    session = await a.bind("alice@example.net", resource)
    await eventually(lambda: resource in b.directory.table.get("alice@example.net", {}))
    stand_in = b.directory.table["alice@example.net"][resource]
    assert isinstance(stand_in, RemoteSession) and stand_in.sid == a.directory.sid_of(session)
    full = f"alice@example.net/{resource}"
    assert b.router.deliver_to_full(JID.parse(full), chat(full, "reached"))
    await eventually(lambda: any(b"reached" in w for w in a.peers[full].written))
    a.directory.release(session)
    await eventually(lambda: "alice@example.net" not in b.directory.table)


async def test_claims_and_releases_go_on_after_redis_forgets_its_scripts(
    two: tuple[Node, Node],
) -> None:
    """SCRIPT FLUSH (or a Redis restarted with the nodes connected): a claim and a
    release answered NOSCRIPT are sent again with the scripts' source."""
    a, b = two
    await a.node.redis.script_flush()
    session = await a.bind("alice@example.net", "phone")
    await eventually(lambda: "alice@example.net" in b.directory.table)
    await a.node.redis.script_flush()
    a.directory.release(session)
    await eventually(lambda: "alice@example.net" not in b.directory.table)
    assert not await a.node.redis.exists(a.directory._res_key("alice@example.net"))


async def test_a_dead_node_leaves_the_directory_and_its_contacts_are_told(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    session = await a.bind("alice@example.net", "phone")
    a.directory.mark_available(session, 0, Element("presence", "jabber:client"))
    await eventually(lambda: "alice@example.net" in b.directory.table)
    await eventually(lambda: b.directory.table["alice@example.net"]["phone"].available)
    await kill(a)
    await eventually(lambda: b.lost == ["alice@example.net/phone"], timeout=5)
    assert "alice@example.net" not in b.directory.table
    # Its resource is free in Redis too: a new login anywhere takes it.
    await b.bind("alice@example.net", "phone")
    # A message for alice is stored offline here (her new session sent no presence),
    # not forwarded to the dead node.
    pending = b.router.deliver_message_to_bare(
        chat("alice@example.net", "here"), JID.parse("alice@example.net")
    )
    assert pending is not None
    await pending
    assert b.stored == [("alice@example.net", "here")]


async def test_a_message_for_a_node_that_does_not_listen_is_stored_here(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    await a.bind("alice@example.net", "phone")
    await eventually(lambda: "alice@example.net" in b.directory.table)
    # a dies (and is not yet judged so): PUBLISH reaches nobody.
    await kill(a)
    b.router.deliver_to_full(
        JID.parse("alice@example.net/phone"), chat("alice@example.net/phone", "later")
    )
    await eventually(lambda: b.stored == [("alice@example.net", "later")])
    # Its sessions leave when its heartbeat expires, and their contacts are told.
    await eventually(lambda: "alice@example.net" not in b.directory.table)


async def test_a_message_whose_session_left_is_routed_again_once(two: tuple[Node, Node]) -> None:
    a, b = two
    phone = await a.bind("alice@example.net", "phone")
    await eventually(lambda: "alice@example.net" in b.directory.table)
    # a drops the session without telling b yet (the release crosses later).
    a.directory._drop_local(phone)
    b.router.deliver_to_full(
        JID.parse("alice@example.net/phone"), chat("alice@example.net/phone", "missed")
    )
    await eventually(lambda: a.stored == [("alice@example.net", "missed")])


async def test_a_message_refused_while_redis_is_away_is_answered_to_its_sender(
    two: tuple[Node, Node], redis_server: RedisServer
) -> None:
    a, b = two
    await a.bind("alice@example.net", "phone")
    sender = await b.bind("bob@example.net", "desk")
    await eventually(lambda: "alice@example.net" in b.directory.table)
    redis_server.stop()
    await eventually(lambda: not b.node.connected)
    message = chat("alice@example.net/phone", "not now")
    message.attrs["id"] = "m1"
    b.router.route(sender, message)
    peer = b.peers["bob@example.net/desk"]
    await eventually(lambda: peer.written)
    answer = peer.written[-1]
    assert b'type="error"' in answer and b"resource-constraint" in answer
    assert b'id="m1"' in answer and b'type="wait"' in answer
    # Presence is not answered (nobody waits for it), and nothing reached alice.
    b.router.deliver_to_full(
        JID.parse("alice@example.net/phone"), Element("presence", "jabber:client")
    )
    assert len(peer.written) == 1
    assert a.peers["alice@example.net/phone"].written == []
    assert b.directory.forwarder.refused == 2


async def test_the_session_that_replaced_ours_is_reachable_once_ours_has_gone(
    two: tuple[Node, Node],
) -> None:
    a, b = two
    old = await a.bind("alice@example.net", "desk")
    await eventually(lambda: "alice@example.net" in b.directory.table)
    await b.bind("alice@example.net", "desk")  # newest wins: a is told to close it
    await eventually(lambda: a.peers["alice@example.net/desk"].closed)
    # a's session is still in a's table until it is released there ...
    assert a.directory.table["alice@example.net"]["desk"] is old
    pending = a.directory.release(old)
    if pending is not None:
        await pending
    # ... and then b's session, not nothing, is what a delivers to.
    stand_in = a.directory.table["alice@example.net"]["desk"]
    assert isinstance(stand_in, RemoteSession) and stand_in.node == "b"
    a.router.deliver_to_full(
        JID.parse("alice@example.net/desk"), chat("alice@example.net/desk", "to the new one")
    )
    new_peer = b.peers["alice@example.net/desk"]
    await eventually(lambda: any(b"to the new one" in w for w in new_peer.written))


async def test_a_newer_claim_heard_before_our_claims_answer_is_reachable_once_ours_has_gone(
    two: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis runs a's claim, then b's; a reads b's event (its subscription) before
    its own claim's answer (its command connection).  b's session is the newest and
    must be what a delivers to once a's session is closed (RFC 6120 §7.7.2.2):
    the race over three nodes in tests/e2e/test_cluster_attacks.py lost it, so a
    message from a's node to the full JID went nowhere."""
    a, b = two
    real = a.node.call
    answered = asyncio.Event()
    read = asyncio.Event()
    held: list[asyncio.Task[None]] = []

    def answer_read_late(command: bytes, on_reply: Callable[[Any], None], **kw: Any) -> None:
        if _SCRIPTS["claim"].sha.encode() not in command:
            real(command, on_reply, **kw)
            return

        def hold(answer: Any) -> None:
            async def later() -> None:
                answered.set()
                await read.wait()  # what b's claim publishes is read first
                on_reply(answer)

            held.append(asyncio.create_task(later()))

        real(command, hold, **kw)

    monkeypatch.setattr(a.node, "call", answer_read_late)
    binding = asyncio.create_task(a.bind("alice@example.net", "desk"))
    await asyncio.wait_for(answered.wait(), 5)
    await b.bind("alice@example.net", "desk")  # after a's claim in Redis: replaces it
    await eventually(
        lambda: isinstance(
            a.directory.table.get("alice@example.net", {}).get("desk"), RemoteSession
        )
    )
    read.set()
    old = await binding
    # b told a to close its session (by its sid, perhaps before a's answer) ...
    await eventually(
        lambda: a.peers["alice@example.net/desk"].closed == [StreamErrorCondition.CONFLICT]
    )
    assert a.directory.table["alice@example.net"]["desk"] is old
    assert b.peers["alice@example.net/desk"].closed == []
    a.directory.release(old)  # ... which the connection driver releases
    # b's session, not nothing, is what a delivers to.
    stand_in = a.directory.table["alice@example.net"]["desk"]
    assert isinstance(stand_in, RemoteSession) and stand_in.node == "b"
    delivered = a.router.deliver_to_full(
        JID.parse("alice@example.net/desk"), chat("alice@example.net/desk", "to the newest")
    )
    assert delivered
    new_peer = b.peers["alice@example.net/desk"]
    await eventually(lambda: any(b"to the newest" in w for w in new_peer.written))
    assert a.stored == []


async def test_a_login_while_redis_is_away_is_decided_here_and_claimed_on_its_return(
    two: tuple[Node, Node], redis_server: RedisServer
) -> None:
    a, b = two
    redis_server.stop()
    await eventually(lambda: not a.node.connected)
    first = await a.bind("alice@example.net", "phone")
    second = await a.bind("alice@example.net", "phone")  # newest wins, decided here
    assert a.peers["alice@example.net/phone"].closed == [StreamErrorCondition.CONFLICT]
    assert a.directory.is_bound(second) and not a.directory.is_bound(first)
    redis_server.start()
    # Back: a claims its session again and announces it; b (whose mirror Redis lost
    # with everything else) learns it, and delivers to it.
    await eventually(lambda: "alice@example.net" in b.directory.table, timeout=10)
    b.router.deliver_to_full(
        JID.parse("alice@example.net/phone"), chat("alice@example.net/phone", "welcome back")
    )
    await eventually(
        lambda: any(b"welcome back" in w for w in a.peers["alice@example.net/phone"].written)
    )
    held = await a.node.redis.hgetall(a.node.key("res", "alice@example.net"))
    assert list(held) == [b"phone"] and held[b"phone"].startswith(b"a|")


async def _events_heard(server: RedisServer, pattern: str, during: Callable[[], object]) -> list:
    """The messages published on channels matching `pattern` while `during` runs."""
    import redis.asyncio as aioredis

    listener = aioredis.from_url(server.url)
    pubsub = listener.pubsub()
    await pubsub.psubscribe(pattern)
    await pubsub.get_message(timeout=1)  # the subscription's confirmation
    result = during()
    if asyncio.iscoroutine(result):
        await result
    await asyncio.sleep(0.2)
    heard = []
    while (message := await pubsub.get_message(timeout=0.1)) is not None:
        heard.append((message["channel"].decode(), message["data"]))
    await pubsub.aclose()
    await listener.aclose()
    return heard


async def test_a_node_alone_publishes_no_session_events(redis_server: RedisServer) -> None:
    a = await make_node(redis_server, "alone")
    try:
        prefix = a.node.key("events", "")

        async def logins() -> None:
            for n in range(5):
                session = await a.bind(f"u{n}@example.net", "r")
                a.directory.mark_available(session, 0, Element("presence", "jabber:client"))
                a.directory.release(session)

        # Any events channel at all (an earlier version had one shared by every node).
        assert await _events_heard(redis_server, a.node.key("events") + "*", logins) == []
        assert prefix.startswith(a.node.key("events"))
    finally:
        await a.node.close()


async def test_each_change_reaches_every_other_node_and_never_its_own(
    redis_server: RedisServer,
) -> None:
    a = await make_node(redis_server, "a")
    b = await make_node(redis_server, "b")
    c = await make_node(redis_server, "c")
    try:
        prefix = a.node.key("events", "")

        async def login() -> None:
            await a.bind("alice@example.net", "phone")

        heard = await _events_heard(redis_server, a.node.key("events") + "*", login)
        assert sorted(channel for channel, _ in heard) == [prefix + "b", prefix + "c"]
        for other in (b, c):
            await eventually(lambda o=other: "alice@example.net" in o.directory.table)
        assert "alice@example.net" in a.directory.local
    finally:
        for n in (a, b, c):
            await n.node.close()


async def test_a_node_joining_sees_sessions_bound_before_and_while_it_joins(
    redis_server: RedisServer,
) -> None:
    a = await make_node(redis_server, "a")
    try:
        await a.bind("before@example.net", "r")
        joining = asyncio.ensure_future(make_node(redis_server, "b"))
        during = []
        while not joining.done():
            during.append(await a.bind(f"d{len(during)}@example.net", "r"))
            await asyncio.sleep(0.005)
        b = joining.result()
        after = await a.bind("after@example.net", "r")
        expected = {"before@example.net", "after@example.net"} | {s.bare for s in during}
        await eventually(lambda: expected <= set(b.directory.table))
        assert after.bare in b.directory.table
        await b.node.close()
    finally:
        await a.node.close()
