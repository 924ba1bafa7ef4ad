"""Rooms when nodes of a cluster die or join (`modules/muc/ownership.py`): real
servers on one SQLite file and one redis-server, clients on real TCP connections.

A node "dies" as kill -9 would leave it: its cluster node stops beating and says
nothing (the survivors notice within `node_timeout`, 1 s here)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from chatgate import server as server_module
from chatgate.cluster.node import ClusterNode, ClusterUnavailable
from chatgate.context import ServerContext
from chatgate.modules.muc import module as muc_module
from chatgate.modules.muc import ownership
from chatgate.modules.muc.handover import room_state
from chatgate.modules.muc.room import History, Occupant, Room, RoomConfig
from chatgate.peers import PeerRefused, rendezvous_owner
from chatgate.server import Server
from chatgate.xml.element import Element
from tests.redis_server import RedisServer
from tests.unit.cluster.conftest import redis_server, redis_server_session  # noqa: F401
from tests.unit.cluster.test_bosh_forwarding import cluster_config

from .test_cluster_rooms import (
    MUC,
    SERVICE,
    C,
    RawClient,
    body,
    cluster,
    codes,
    condition,
    room_owned_by,
    rooms_of,
)


def silence(server: Server) -> None:
    """The node stops beating and talking, as a killed process would."""
    node = server.cluster
    assert node is not None
    node._stopping = True
    for task in node._tasks:
        task.cancel()
    node._tasks = []
    for connection in (node._commands, node._subscriber):
        if connection is not None:
            connection.close()


async def make_persistent(client: RawClient, room: str, name: str) -> None:
    client.send(
        f"<iq type='set' id='cfg' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
        "http://jabber.org/protocol/muc#roomconfig</value></field>"
        "<field var='muc#roomconfig_persistentroom'><value>1</value></field>"
        f"<field var='muc#roomconfig_roomname'><value>{name}</value></field></x></query></iq>"
    )
    await client.expect(lambda e: e.get("id") == "cfg" and e.get("type") == "result")


def shutdown_of(room: str, nick: str):  # type: ignore[no-untyped-def]
    return lambda e: (
        e.tag == C + "presence"
        and e.get("from") == f"{room}/{nick}"
        and e.get("type") == "unavailable"
    )


def shut_out(client: RawClient) -> list[ET.Element]:
    """The presences with status 332 (sent out of a room) `client` ever received."""
    return [e for e in client.received if e.tag == C + "presence" and "332" in codes(e)]


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.05)


async def test_a_dead_owners_rooms_332_then_the_persistent_one_reloads_on_the_survivor(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    async with cluster(tmp_path, redis_server) as (alpha, beta):
        persistent = room_owned_by("alpha", prefix="kept")
        temporary = room_owned_by("alpha", prefix="temp")
        survivor_room = room_owned_by("beta", prefix="stay")
        alice = await RawClient.login(beta, "alice")
        bob = await RawClient.login(alpha, "bob")
        try:
            await alice.join(persistent, "Alice")
            await make_persistent(alice, persistent, "Kept room")
            await alice.join(temporary, "Alice")
            await alice.join(survivor_room, "Alice")
            await bob.join(survivor_room, "Bob")
            assert rooms_of(alpha) == {persistent, temporary}
            silence(alpha)
            # both of the dead node's rooms: Alice is out, with 110 and 332
            for room in (persistent, temporary):
                out = await alice.expect(shutdown_of(room, "Alice"), timeout=8)
                assert {"110", "332"} <= codes(out)
            # Bob's session died with its node: he left the room beta owns
            await alice.expect(shutdown_of(survivor_room, "Bob"), timeout=8)
            # the persistent room is beta's now, as stored (not created anew)
            await wait_until(lambda: persistent in rooms_of(beta))
            assert temporary not in rooms_of(beta)
            own = await alice.join(persistent, "Alice")
            assert "201" not in codes(own)
            alice.send(
                f"<iq type='get' id='info' to='{persistent}'>"
                "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            )
            info = await alice.expect(lambda e: e.get("id") == "info")
            identity = info.find(
                "{http://jabber.org/protocol/disco#info}query/"
                "{http://jabber.org/protocol/disco#info}identity"
            )
            assert identity is not None and identity.get("name") == "Kept room"
            # the temporary one is gone: joining makes a new room
            assert "201" in codes(await alice.join(temporary, "Alice"))
        finally:
            alice.close()
            bob.close()
            alpha.cluster = None  # its node was silenced above


async def test_a_joining_node_gets_its_rooms_live_and_occupants_notice_nothing(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    both = ("alpha", "beta")
    moving = room_owned_by("beta", both, prefix="moving")
    kept = room_owned_by("beta", both, prefix="stored")
    staying = room_owned_by("alpha", both, prefix="staying")
    async with cluster(tmp_path, redis_server, ("alpha",)) as (alpha,):
        alice = await RawClient.login(alpha, "alice")
        beta = None
        try:
            await alice.join(moving, "Alice")
            await alice.join(kept, "Alice")
            await make_persistent(alice, kept, "Stored room")
            await alice.join(staying, "Alice")
            alice.send(
                f"<message to='{moving}' type='groupchat'><subject>Moved</subject></message>"
            )
            for i in range(2):
                alice.send(
                    f"<message to='{moving}' type='groupchat'><body>old {i}</body></message>"
                )
                await alice.expect(body(f"old {i}"))
            assert rooms_of(alpha) == {moving, kept, staying}
            beta = Server(cluster_config(tmp_path, redis_server, "beta", http={"enabled": False}))
            await beta.start()
            await wait_until(lambda: rooms_of(beta) == {moving, kept})  # type: ignore[arg-type]
            # alpha lets its copies go once beta's answer to the handover reaches it
            await wait_until(lambda: rooms_of(alpha) == {staying})
            # Alice (on alpha) is still in both moved rooms: her messages go to beta
            for room in (moving, kept):
                alice.send(f"<message to='{room}' type='groupchat'><body>after</body></message>")
                echo = await alice.expect(body("after"))
                assert echo.get("from") == f"{room}/Alice"
            # a joiner on beta finds her there, with the history and subject from before
            bob = await RawClient.login(beta, "bob")
            try:
                bob.send(f"<presence to='{moving}/Bob'><x xmlns='{MUC}'/></presence>")
                there = await bob.expect(lambda e: e.get("from") == f"{moving}/Alice")
                assert there.tag == C + "presence" and there.get("type") is None
                for text in ("old 0", "old 1", "after"):
                    await bob.expect(body(text))
                subject = await bob.expect(lambda e: e.find(C + "subject") is not None)
                assert subject.findtext(C + "subject") == "Moved"
                await alice.expect(lambda e: e.get("from") == f"{moving}/Bob")
            finally:
                bob.close()
            # nobody was sent away
            assert not shut_out(alice)
        finally:
            alice.close()
            if beta is not None:
                await beta.stop()


@pytest.mark.parametrize("failure", ["port taken", "redis error that passes"])
async def test_a_node_whose_start_fails_after_announce_hands_its_rooms_back_and_leaves_at_once(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    """beta announces, takes the room it owns from alpha, then its start fails (its
    c2s port is taken; or a Redis command fails once, Redis answering again): the
    failed start stops what had started (the room goes back live, the heartbeat is
    removed), as a process that exits on the error would otherwise leave the room
    to die with it (332) after `node_timeout`."""
    room = room_owned_by("beta", ("alpha", "beta"), prefix="bounced")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    announce = ClusterNode.announce

    async def announce_then_wait_for_the_room(node: ClusterNode) -> None:
        await announce(node)
        if node.name == "beta":  # the moment between announce and the listeners
            await wait_until(lambda: room in rooms_of(beta))
            if failure != "port taken":
                raise ClusterUnavailable("[cluster] a command failed (the test's)")

    monkeypatch.setattr(ClusterNode, "announce", announce_then_wait_for_the_room)
    async with cluster(tmp_path, redis_server, ("alpha",)) as (alpha,):
        alice = await RawClient.login(alpha, "alice")
        try:
            await alice.join(room, "Alice")
            alice.send(f"<message to='{room}' type='groupchat'><body>before</body></message>")
            await alice.expect(body("before"))
            config = cluster_config(tmp_path, redis_server, "beta", http={"enabled": False})
            if failure == "port taken":
                port = taken.getsockname()[1]
                listener = config.listeners[0].model_copy(update={"port": port})
                config = config.model_copy(update={"listeners": [listener]})
            beta = Server(config)
            with pytest.raises((OSError, ClusterUnavailable)):
                await beta.start()
            silence(beta)  # the process exits on the error
            keys = [f"chatgate:{kind}:beta" for kind in ("node", "joining")]
            redis = aioredis.Redis.from_url(redis_server.url)
            try:
                assert await redis.exists(*keys) == 0  # not left to expire
                assert not await redis.sismember("chatgate:nodes", "beta")
            finally:
                await redis.aclose()
            await wait_until(lambda: room in rooms_of(alpha))
            # Past node_timeout, reading all the while (nothing matches, nothing is
            # consumed): nothing more happens.
            with contextlib.suppress(AssertionError):
                await alice.expect(lambda e: False, timeout=1.5)
            assert not shut_out(alice)
            alice.send(f"<message to='{room}' type='groupchat'><body>after</body></message>")
            echo = await alice.expect(body("after"))
            assert echo.get("from") == f"{room}/Alice"
        finally:
            alice.close()
            taken.close()


async def test_a_room_the_newcomer_cannot_take_is_dropped_with_332(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    both = ("alpha", "beta")
    moving = room_owned_by("beta", both, prefix="unreadable")
    monkeypatch.setattr(ownership, "HANDOVER_DELAYS", (0.0, 0.1))
    monkeypatch.setattr(ownership, "room_state", lambda room: b"{not json")
    async with cluster(tmp_path, redis_server, ("alpha",)) as (alpha,):
        alice = await RawClient.login(alpha, "alice")
        beta = None
        try:
            await alice.join(moving, "Alice")
            beta = Server(cluster_config(tmp_path, redis_server, "beta", http={"enabled": False}))
            await beta.start()
            out = await alice.expect(shutdown_of(moving, "Alice"), timeout=10)
            assert {"110", "332"} <= codes(out)
            assert rooms_of(alpha) == set()
            await asyncio.sleep(1.2)  # beta's late subscriptions take effect
            assert "201" in codes(await alice.join(moving, "Alice"))  # anew, on beta
            assert rooms_of(beta) == {moving}
        finally:
            alice.close()
            if beta is not None:
                await beta.stop()


async def test_a_room_arriving_forgets_sessions_whose_end_was_heard_before_it(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """A session that ends while its room is on its way to a new owner: the end is
    heard by the newcomer before the room; the room arrives without it."""
    async with cluster(tmp_path, redis_server) as (alpha, beta):
        room_jid = room_owned_by("beta", prefix="arriving")
        alice = await RawClient.login(beta, "alice")
        try:
            room = Room(room_jid, RoomConfig(), history=History(10, 1 << 16))
            for nick, full in (("Alice", alice.full), ("Carol", "carol@localhost/gone")):
                occupant = Occupant(nick, full.split("/")[0], "participant")
                room.add_session(nick.lower(), occupant, full, Element("presence", "jabber:client"))
            assert alpha.ctx is not None and beta.ctx is not None
            # (they have been in the room a while: an end heard within a request's
            # transit of entering is not told from an earlier session's)
            await asyncio.sleep(0.2)
            # beta hears that Carol's session (on alpha) ended...
            assert alpha.ctx.peers.send("beta", "muc", b"Ecarol@localhost/gone")
            record = beta.ctx.modules.get("muc")
            assert record is not None
            relay = record.module.relay  # type: ignore[attr-defined]
            await wait_until(lambda: "carol@localhost/gone" in relay.ended)
            # ...then the room arrives, listing her still
            answer = await alpha.ctx.peers.request("beta", "muc-handover", room_state(room))
            assert answer == b"ok"
            gone = await alice.expect(shutdown_of(room_jid, "Carol"))
            assert "110" not in codes(gone)
            held = record.module.registry.get(room_jid)  # type: ignore[attr-defined]
            assert held is not None and set(held.by_full) == {alice.full}
            # a second copy of a room it holds is refused (the sender falls back to 332)
            with pytest.raises(PeerRefused, match="exists here already"):
                await alpha.ctx.peers.request("beta", "muc-handover", room_state(room))
        finally:
            alice.close()


async def test_a_node_stopping_cleanly_hands_its_rooms_over_and_nobody_gets_332(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """SIGTERM of a room's owner (`Server.stop`, the MUC's OnStop): its rooms go
    live to the remaining node; occupants there stay in, with history and subject."""
    async with cluster(tmp_path, redis_server) as (alpha, beta):
        temporary = room_owned_by("alpha", prefix="leaving")
        stored = room_owned_by("alpha", prefix="leavingstored")
        alice = await RawClient.login(beta, "alice")
        bob = await RawClient.login(alpha, "bob")
        try:
            await alice.join(temporary, "Alice")
            await alice.join(stored, "Alice")
            await make_persistent(alice, stored, "Stored room")
            await bob.join(temporary, "Bob")
            alice.send(
                f"<message to='{temporary}' type='groupchat'><subject>Kept</subject></message>"
            )
            alice.send(f"<message to='{temporary}' type='groupchat'><body>before</body></message>")
            await alice.expect(body("before"))
            assert rooms_of(alpha) == {temporary, stored} and rooms_of(beta) == set()
            await alpha.stop()
            # Bob's session ended with his node: he left, as any session that ends
            await alice.expect(
                lambda e: e.get("from") == f"{temporary}/Bob" and e.get("type") == "unavailable"
            )
            await wait_until(lambda: rooms_of(beta) == {temporary, stored})
            # Alice is still in both rooms: her messages reach them without joining again
            for room in (temporary, stored):
                alice.send(f"<message to='{room}' type='groupchat'><body>after</body></message>")
                echo = await alice.expect(body("after"))
                assert echo.get("from") == f"{room}/Alice"
            carol = await RawClient.login(beta, "carol")
            try:
                carol.send(f"<presence to='{temporary}/Carol'><x xmlns='{MUC}'/></presence>")
                there = await carol.expect(lambda e: e.get("from") == f"{temporary}/Alice")
                assert there.get("type") is None
                own = await carol.expect(
                    lambda e: e.get("from") == f"{temporary}/Carol" and e.tag == C + "presence"
                )
                assert "201" not in codes(own)
                for text in ("before", "after"):
                    await carol.expect(body(text))
                subject = await carol.expect(lambda e: e.find(C + "subject") is not None)
                assert subject.findtext(C + "subject") == "Kept"
            finally:
                carol.close()
            assert not shut_out(alice)
        finally:
            alice.close()
            bob.close()


async def test_a_node_stopped_during_a_redis_blip_still_hands_its_rooms_over_live(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """SIGTERM just as the owner's connection to Redis drops (back 0.5 s later):
    telling the others it leaves is tried again, as the handovers are, so the
    node that takes the rooms has counted the owner out and sends their
    occupants no 332 when it sees it gone.  (Told once before: the rooms moved,
    then their occupants were sent away.)"""
    async with cluster(tmp_path, redis_server) as (alpha, beta):
        temporary = room_owned_by("alpha", prefix="blipped")
        stored = room_owned_by("alpha", prefix="blippedstored")
        alice = await RawClient.login(beta, "alice")
        try:
            await alice.join(temporary, "Alice")
            await alice.join(stored, "Alice")
            await make_persistent(alice, stored, "Stored room")
            alice.send(f"<message to='{temporary}' type='groupchat'><body>before</body></message>")
            await alice.expect(body("before"))
            node = alpha.cluster
            assert node is not None and node._commands is not None
            node._commands._transport.close()  # type: ignore[union-attr]
            await alpha.stop()
            await wait_until(lambda: rooms_of(beta) == {temporary, stored})
            await wait_until(lambda: "alpha" not in beta.ctx.peers.alive())  # type: ignore[union-attr]
            # Read for a second (nothing matches, nothing is consumed): what beta did
            # on seeing alpha gone has reached Alice.
            with contextlib.suppress(AssertionError):
                await alice.expect(lambda e: False, timeout=1.0)
            assert not shut_out(alice)
            for room in (temporary, stored):
                alice.send(f"<message to='{room}' type='groupchat'><body>after</body></message>")
                echo = await alice.expect(body("after"))
                assert echo.get("from") == f"{room}/Alice"
        finally:
            alice.close()


async def test_a_dead_peer_does_not_hold_a_stopping_nodes_handovers_to_the_others(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """gamma dies just before alpha is stopped: telling gamma that alpha leaves
    fails, and is tried again only briefly, so alpha's room reaches beta within
    moments, not once gamma is judged gone (`node_timeout`) or after the stop's
    whole time."""
    names = ("alpha", "beta", "gamma")
    room = next(
        f"held{i}@{SERVICE}"
        for i in range(1000)
        if rendezvous_owner(f"held{i}@{SERVICE}", names) == "alpha"
        and rendezvous_owner(f"held{i}@{SERVICE}", ("beta", "gamma")) == "beta"
    )
    async with cluster(tmp_path, redis_server, names) as (alpha, beta, gamma):
        for server in (alpha, beta, gamma):
            node = server.cluster
            assert node is not None
            # gamma is judged gone only after 10 s: longer than the stop may take
            node.options = node.options.model_copy(update={"node_timeout": 10.0})
        await asyncio.sleep(0.5)  # every heartbeat now lasts 10 s
        alice = await RawClient.login(beta, "alice")
        try:
            await alice.join(room, "Alice")
            assert room in rooms_of(alpha)
            silence(gamma)
            began = asyncio.get_running_loop().time()
            stopping = asyncio.ensure_future(alpha.stop())
            await wait_until(lambda: room in rooms_of(beta), timeout=4.0)
            took = asyncio.get_running_loop().time() - began
            await stopping
            alice.send(f"<message to='{room}' type='groupchat'><body>after</body></message>")
            echo = await alice.expect(body("after"))
            assert echo.get("from") == f"{room}/Alice"
            assert not shut_out(alice), f"handed over after {took:.2f} s"
        finally:
            alice.close()


async def test_a_node_stopping_alone_does_nothing_with_its_rooms(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """The last node of a cluster stopping has nobody to hand rooms to: its stop
    work ends at once (the persistent room stays stored)."""
    async with cluster(tmp_path, redis_server, ("alpha",)) as (alpha,):
        room = room_owned_by("alpha", ("alpha",), prefix="alone")
        alice = await RawClient.login(alpha, "alice")
        try:
            await alice.join(room, "Alice")
            await make_persistent(alice, room, "Alone")
            began = asyncio.get_running_loop().time()
            await alpha.stop()
            assert asyncio.get_running_loop().time() - began < 5
        finally:
            alice.close()


def test_an_end_heard_before_a_session_entered_is_not_its_end() -> None:
    """A room handed over says how long each session has been in; the newcomer
    takes out a session whose end it heard after that, not one whose end (of an
    earlier session under the same resource) it heard before."""
    from chatgate.modules.muc.handover import restore
    from chatgate.modules.muc.relay import Ended

    room = Room("r@conference.localhost", RoomConfig(), history=History(10, 1 << 16))
    for nick in ("back", "gone"):
        occupant = Occupant(nick, f"{nick}@localhost", "participant")
        room.add_session(
            nick, occupant, f"{nick}@localhost/r", Element("presence", "jabber:client")
        )
    room.set_affiliation("back@localhost", "member")
    room.reserve("back@localhost", "Back", "back")
    now = [1000.0]
    ended = Ended(clock=lambda: now[0])
    arrived = restore(room_state(room), History(10, 1 << 16), 1 << 16)
    # the registered nick travels with the room (§7.10)
    assert arrived.nicks == {"back@localhost": "Back"} and arrived.reserved == {
        "back": "back@localhost"
    }
    entered = arrived.entered["back@localhost/r"]
    now[0] = entered - 5  # heard 5 s before the session entered: an earlier session's end
    ended.add("back@localhost/r")
    now[0] = entered + 1  # heard after it entered: its own end
    ended.add("gone@localhost/r")
    assert not ended.heard_since("back@localhost/r", arrived.entered["back@localhost/r"])
    assert ended.heard_since("gone@localhost/r", arrived.entered["gone@localhost/r"])
    assert not ended.heard_since("never@localhost/r", 0.0)


async def test_a_stopping_node_refuses_rooms_and_its_peers_count_it_out(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """Two nodes stopping at once: one that is stopping takes no room (the sender
    tries the next owner it sees); a node told "muc-leaving" owns nothing of the
    leaver's from then on, and takes its rooms back when it says it is done."""
    async with cluster(tmp_path, redis_server) as (alpha, beta):
        assert alpha.ctx is not None and beta.ctx is not None
        record = alpha.ctx.modules.get("muc")
        assert record is not None
        peers = record.module.relay.peers  # type: ignore[attr-defined]
        peers.leave("alpha")  # alpha stops
        room = Room(
            room_owned_by("alpha", prefix="refused"), RoomConfig(), history=History(1, 1024)
        )
        with pytest.raises(PeerRefused, match="stopping"):
            await beta.ctx.peers.request("alpha", "muc-handover", room_state(room))
        assert rooms_of(alpha) == set()
        # beta hears alpha leave: alpha's rooms are beta's from then on
        beta_record = beta.ctx.modules.get("muc")
        assert beta_record is not None
        beta_peers = beta_record.module.relay.peers  # type: ignore[attr-defined]
        assert beta_peers.owner(room.jid) == "alpha"
        assert await alpha.ctx.peers.request("beta", "muc-leaving", b"") == b"ok"
        assert beta_peers.owner(room.jid) == "beta"
        relay = beta_record.module.relay  # type: ignore[attr-defined]
        assert not relay.settled.is_set()  # holding stanzas for rooms to come
        assert await alpha.ctx.peers.request("beta", "muc-moved", b"") == b"ok"
        await wait_until(relay.settled.is_set)


async def test_the_332_of_a_dead_owners_room_comes_from_the_nick_the_room_kept(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """The survivor's own node writes the 332 (the room died with its owner), under
    the nick the room knew its session by: not a change the room refused."""
    async with cluster(tmp_path, redis_server) as (alpha, beta):
        room = room_owned_by("alpha", prefix="nicks")
        alice = await RawClient.login(beta, "alice")
        bob = await RawClient.login(beta, "bob")
        try:
            await both_in(room, alice, bob)
            alice.send(f"<presence to='{room}/Bob'/>")  # taken: refused
            refused = await alice.expect(
                lambda e: e.tag == C + "presence" and e.get("type") == "error"
            )
            assert condition(refused) == "conflict"
            bob.send(f"<presence to='{room}/Robert'/>")  # free: the room takes it
            await bob.expect(lambda e: e.get("from") == f"{room}/Robert" and e.get("type") is None)
            silence(alpha)
            out = await alice.expect(shutdown_of(room, "Alice"), timeout=8)
            assert {"110", "332"} <= codes(out)
            out = await bob.expect(shutdown_of(room, "Robert"), timeout=8)
            assert {"110", "332"} <= codes(out)
        finally:
            alice.close()
            bob.close()
            alpha.cluster = None  # its node was silenced above


def room_moving(prefix: str, before: tuple[str, ...], after: tuple[str, ...]) -> str:
    """A room JID whose owner among `before` is `before[0]`, and among `after` is
    `after[0]` (the nodes as each set sees them: the owner first)."""
    for i in range(1000):
        jid = f"{prefix}{i}@conference.localhost"
        if rendezvous_owner(jid, before) == before[0] and rendezvous_owner(jid, after) == after[0]:
            return jid
    raise AssertionError("no such room name")


class Flood:
    """A client sending a room numbered groupchat messages, `burst` every 10 ms."""

    def __init__(self, client: RawClient, room: str, burst: int) -> None:
        self.client = client
        self.room = room
        self.burst = burst
        self.sent = 0

    async def run(self, seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            self.client.send(
                "".join(
                    f"<message to='{self.room}' type='groupchat'>"
                    f"<body>{self.sent + i}</body></message>"
                    for i in range(self.burst)
                )
            )
            self.sent += self.burst
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def joining_mid_flood(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    flood: Flood,
) -> AsyncIterator[Server]:
    """Node gamma, started while `flood` goes on, once it holds the flooded room;
    stopped on the way out."""
    gamma = Server(cluster_config(tmp_path, redis_server, "gamma", http={"enabled": False}))
    try:
        start = asyncio.ensure_future(gamma.start())
        while not (start.done() and flood.room in rooms_of(gamma)):
            await flood.run(0.02)
        await start
        yield gamma
    finally:
        await gamma.stop()


async def in_order(observer: RawClient, room: str, taken: list[int]) -> None:
    """The observer gets every message the room took, in the order they were sent."""
    seen = [int(text) for text in await bodies_from(observer, room, len(taken))]
    overtaken = sum(a > b for a, b in itertools.pairwise(seen))
    assert seen == sorted(taken), f"{overtaken} of {len(taken)} out of order"


async def both_in(room: str, alice: RawClient, bob: RawClient) -> None:
    await alice.join(room, "Alice")
    await bob.join(room, "Bob")
    await alice.expect(lambda e: e.get("from") == f"{room}/Bob")


async def bodies_from(client: RawClient, room: str, count: int, timeout: float = 30.0) -> list[str]:
    """The bodies of the first `count` groupchat messages from `room`, in arrival order."""
    got: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        kept = []
        for el in client.stanzas:
            if (
                el.tag == C + "message"
                and el.get("type") == "groupchat"
                and (el.get("from") or "").startswith(room + "/")
            ):
                got.append(el.findtext(C + "body") or "")
                continue
            kept.append(el)
        client.stanzas = kept
        if len(got) >= count:
            return got
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"{len(got)} of {count} arrived"
        with contextlib.suppress(TimeoutError):
            chunk = await asyncio.wait_for(client.reader.read(1 << 16), left)
            assert chunk, "connection closed"
            client.feed(chunk)


async def echoes_or_refusals(
    client: RawClient, room: str, count: int, refused_at_most: float = 0.1
) -> list[int]:
    """The numbers of `count` groupchat messages the client sent: those the room
    echoed (refusals must be the flood control's wait errors, and few: a node
    sending stanzas on one at a time refuses a sender's beyond 100 waiting)."""
    refused: list[int] = []
    echoed: list[int] = []
    deadline = asyncio.get_running_loop().time() + 30
    while len(refused) + len(echoed) < count:
        kept = []
        for el in client.stanzas:
            text = el.findtext(C + "body")
            if el.tag != C + "message" or text is None:
                kept.append(el)
            elif el.get("type") == "error":
                assert condition(el) == "resource-constraint", ET.tostring(el)
                refused.append(int(text))
            elif (el.get("from") or "").startswith(room + "/"):
                echoed.append(int(text))
        client.stanzas = kept
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"{len(echoed)} echoed and {len(refused)} refused of {count}"
        if len(refused) + len(echoed) < count:
            with contextlib.suppress(TimeoutError):
                chunk = await asyncio.wait_for(client.reader.read(1 << 16), left)
                assert chunk, "connection closed"
                client.feed(chunk)
    assert sorted(refused + echoed) == list(range(count))
    assert len(refused) <= count * refused_at_most, f"{len(refused)} of {count} refused"
    return echoed


async def test_one_senders_groupchat_keeps_its_order_while_the_room_moves_to_a_joining_node(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 6120 §10.1: the stanzas beta (the old owner) still sends on to gamma are
    not overtaken by those alpha sends straight to gamma once it sees it.  Each node
    reads the heartbeats on its own, so alpha may see gamma a heartbeat after beta
    did: here its view of the owners is held back until the room has moved."""
    room = room_moving("ordered", ("beta", "alpha"), ("gamma", "alpha", "beta"))
    async with cluster(tmp_path, redis_server) as (alpha, beta):
        assert alpha.ctx is not None
        alpha_peers = alpha.ctx.peers
        sees_gamma = asyncio.Event()
        seen_owner = alpha_peers.owner
        monkeypatch.setattr(
            alpha_peers,
            "owner",
            lambda key: (
                seen_owner(key)
                if sees_gamma.is_set()
                else rendezvous_owner(key, alpha_peers.alive() - {"gamma"})
            ),
        )
        alice = await RawClient.login(alpha, "alice")
        bob = await RawClient.login(beta, "bob")  # sees the room's order: see below
        flood = Flood(alice, room, 10)
        try:
            await both_in(room, alice, bob)
            await flood.run(0.2)
            async with joining_mid_flood(tmp_path, redis_server, flood):
                await flood.run(0.3)  # beta sends these on to gamma
                sees_gamma.set()
                await flood.run(0.3)  # alpha sends these straight to gamma
                # What a busy node's lane for Alice cannot take is refused with a
                # wait error (flood control); everything else reaches the room.
                taken = await echoes_or_refusals(alice, room, flood.sent)
                # Bob's node was the old owner: what it handled reached him at once,
                # and what gamma handles comes to him on one channel, in gamma's
                # order.  So Bob sees the room's order.
                await in_order(bob, room, taken)
        finally:
            alice.close()
            bob.close()


async def test_nothing_sent_to_a_joining_node_is_lost_while_its_modules_set_up(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gamma joins while Alice floods a room that moves to it, and its start is slow
    between joining the cluster and setting its modules up (a big database to
    migrate, many rooms to load).  The others must not send gamma the room's
    stanzas before its group chat can take them: every message is echoed (or
    refused with the flood control's wait error), none silently lost."""
    room = room_moving("joining", ("beta", "alpha"), ("gamma", "alpha", "beta"))
    async with cluster(tmp_path, redis_server) as (alpha, beta):
        purge = server_module.purge_anonymous_hosts

        async def slow_purge(ctx: object) -> None:
            await asyncio.sleep(1.5)  # several heartbeats: alpha and beta look meanwhile
            await purge(ctx)  # type: ignore[arg-type]

        monkeypatch.setattr(server_module, "purge_anonymous_hosts", slow_purge)
        alice = await RawClient.login(alpha, "alice")
        bob = await RawClient.login(beta, "bob")
        flood = Flood(alice, room, 5)
        try:
            await both_in(room, alice, bob)
            await flood.run(0.2)
            async with joining_mid_flood(tmp_path, redis_server, flood):
                await flood.run(0.3)
                taken = await echoes_or_refusals(alice, room, flood.sent)
                await in_order(bob, room, taken)
        finally:
            alice.close()
            bob.close()


async def test_two_nodes_joining_together_hand_a_live_room_on_without_a_copy(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """beta and gamma start together, beta a little ahead; alpha holds a live
    persistent room that is beta's among alpha and beta, gamma's among all three.
    gamma, still starting when beta was counted in, must wait for beta's word
    too: not load the stored room while beta holds it live (both would serve it,
    and beta, refused, would send its occupants away with 332)."""
    room = room_moving("together", ("beta", "alpha"), ("gamma", "alpha", "beta"))
    purge = server_module.purge_anonymous_hosts
    start_modules = ServerContext.start_modules

    async def slow_purge(ctx: ServerContext) -> None:
        if ctx.config.cluster.node == "beta":
            await asyncio.sleep(1.0)  # beta connects first, then takes a while
        await purge(ctx)

    async def slow_start_modules(self: ServerContext) -> None:
        await start_modules(self)
        if self.config.cluster.node == "gamma":
            await asyncio.sleep(1.5)  # gamma announces after beta

    monkeypatch.setattr(server_module, "purge_anonymous_hosts", slow_purge)
    monkeypatch.setattr(ServerContext, "start_modules", slow_start_modules)
    async with cluster(tmp_path, redis_server, ("alpha",)) as (alpha,):
        alice = await RawClient.login(alpha, "alice")
        joining = [
            Server(cluster_config(tmp_path, redis_server, name, http={"enabled": False}))
            for name in ("beta", "gamma")
        ]
        beta, gamma = joining
        try:
            await alice.join(room, "Alice")
            await make_persistent(alice, room, "Live room")
            starting_beta = asyncio.ensure_future(beta.start())
            await asyncio.sleep(0.3)
            await asyncio.gather(starting_beta, gamma.start())
            deadline = asyncio.get_running_loop().time() + 10
            while room not in rooms_of(gamma) or room in rooms_of(beta):
                assert asyncio.get_running_loop().time() < deadline, "the room never moved"
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            assert room in rooms_of(gamma) and room not in rooms_of(beta) | rooms_of(alpha)
            alice.send(f"<message to='{room}' type='groupchat'><body>after</body></message>")
            echo = await alice.expect(
                lambda e: e.tag == C + "message" and e.get("from", "").startswith(room)
            )
            assert echo.get("type") == "groupchat", ET.tostring(echo)
            assert not [e for e in alice.stanzas if ownership.SHUTDOWN in codes(e)]
        finally:
            alice.close()
            for server in joining:
                await server.stop()


async def test_nodes_started_together_hold_each_persistent_room_once(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """`serve --workers 3`, or a cluster started at once: each node sees the others
    still starting and waits for their word before it loads the rooms it owns,
    so no room is loaded by two nodes."""
    rooms = sorted(f"kept{i}@conference.localhost" for i in range(9))
    async with cluster(tmp_path, redis_server, ("alpha",)) as (alpha,):
        alice = await RawClient.login(alpha, "alice")
        for room in rooms:
            await alice.join(room, "Alice")
            await make_persistent(alice, room, room)
        alice.close()
    redis_server.flush()
    servers = [
        Server(cluster_config(tmp_path, redis_server, name, http={"enabled": False}))
        for name in ("alpha", "beta", "gamma")
    ]
    try:
        await asyncio.gather(*(server.start() for server in servers))
        # Nodes whose views of each other still differ may each load a room; the
        # copy nobody is in is replaced when the room is handed to its owner.
        deadline = asyncio.get_running_loop().time() + 10
        while not settled_at_owners(servers, rooms):
            where = {s.config.cluster.node: sorted(rooms_of(s)) for s in servers}
            assert asyncio.get_running_loop().time() < deadline, where
            await asyncio.sleep(0.05)
    finally:
        for server in servers:
            await server.stop()


def settled_at_owners(servers: list[Server], rooms: list[str]) -> bool:
    """Each room held once, by its owner as every node sees it."""
    if sorted(room for server in servers for room in rooms_of(server)) != rooms:
        return False
    for server in servers:
        assert server.ctx is not None
        for other in servers:
            assert other.ctx is not None
            if any(
                other.ctx.peers.owner(room) != server.ctx.peers.name for room in rooms_of(server)
            ):
                return False
    return True


def delayed(server: Server, topic: str, seconds: float) -> None:
    """The node's handler of `topic` requests answers `seconds` later: a node that
    hears of a change later than another, or a slow hop between nodes."""
    assert server.ctx is not None
    requests = server.ctx.peers._requests  # type: ignore[attr-defined]
    handler = requests[topic]

    async def late(sender: str, payload: bytes) -> bytes:
        await asyncio.sleep(seconds)
        return await handler(sender, payload)  # type: ignore[no-any-return]

    requests[topic] = late


async def test_one_senders_groupchat_keeps_its_order_and_nothing_is_lost_when_the_owner_stops(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """beta owns the room and stops cleanly (its rooms go to gamma) while Alice, on
    alpha, floods it.  alpha hears that beta leaves a little late, so beta gets
    stanzas after it handed the room over and sends them on one at a time: the
    stanzas alpha then sends straight to gamma wait for them, and beta passes on
    every one before it goes."""
    nodes = ("alpha", "beta", "gamma")
    room = room_moving("leaving", ("beta", "alpha", "gamma"), ("gamma", "alpha"))
    async with cluster(tmp_path, redis_server, nodes) as (alpha, beta, gamma):
        delayed(alpha, ownership.LEAVING_TOPIC, 0.1)
        delayed(gamma, "muc-hop", 0.005)
        alice = await RawClient.login(alpha, "alice")
        bob = await RawClient.login(gamma, "bob")  # the new owner's node: the room's order
        flood = Flood(alice, room, 5)
        try:
            await both_in(room, alice, bob)
            await flood.run(0.2)
            stopping = asyncio.ensure_future(beta.stop())
            while not stopping.done():
                await flood.run(0.02)
            await stopping
            await flood.run(0.3)
            # the slow hops make beta refuse some when the machine is busy
            taken = await echoes_or_refusals(alice, room, flood.sent, refused_at_most=0.3)
            await in_order(bob, room, taken)
        finally:
            alice.close()
            bob.close()


async def test_a_node_stopping_while_it_holds_stanzas_for_rooms_to_come_sends_them_on_at_once(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """alpha waits for beta's rooms (beta stops; its handovers are slow) and
    holds a stanza for one of them; then alpha stops too.  It owns nothing from
    then on: the stanza goes on to gamma at once instead of waiting for rooms alpha
    will refuse, and alpha's stop does not wait for them either."""
    nodes = ("alpha", "beta", "gamma")
    room = room_moving("held", ("beta", "alpha", "gamma"), ("alpha", "gamma"))
    async with cluster(tmp_path, redis_server, nodes) as (alpha, beta, gamma):
        bob = await RawClient.login(gamma, "bob")
        try:
            await bob.join(room, "Bob")
            assert beta.ctx is not None
            beta_peers = beta.ctx.peers
            ask = beta_peers.request

            slowed: list[str] = []

            async def slow_handovers(
                node: str, topic: str, payload: bytes, timeout: float = 5.0
            ) -> bytes:
                if topic == ownership.HANDOVER_TOPIC and not slowed:
                    slowed.append(node)  # the first (to alpha) only
                    await asyncio.sleep(6.0)
                return await ask(node, topic, payload, timeout)

            beta_peers.request = slow_handovers  # type: ignore[method-assign]
            beta_stopping = asyncio.ensure_future(beta.stop())
            assert alpha.ctx is not None
            record = alpha.ctx.modules.get("muc")
            assert record is not None
            relay = record.module.relay  # type: ignore[attr-defined]
            # alpha heard beta leave: it waits for beta's rooms
            await wait_until(lambda: not relay.settled.is_set())
            bob.send(f"<message to='{room}' type='groupchat'><body>held</body></message>")
            await asyncio.sleep(0.3)  # on alpha now, waiting for the room
            started = asyncio.get_running_loop().time()
            await alpha.stop()
            assert asyncio.get_running_loop().time() - started < 3.0
            await beta_stopping
            # alpha refused the room (stopping): beta gave it to gamma, which
            # then took the stanza alpha sent on
            assert slowed == ["alpha"] and room in rooms_of(gamma)
            echo = await bob.expect(body("held"), timeout=15)
            assert echo.get("from") == f"{room}/Bob" and echo.get("type") == "groupchat"
        finally:
            bob.close()


async def test_a_stop_out_of_time_leaves_no_lane_running(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The module's stop is cancelled when its time is up (here: telling the others
    it leaves takes longer): what its lanes still hold is cancelled with it, not
    left running against a closed database and cluster."""
    monkeypatch.setattr(muc_module, "STOP_TIMEOUT", 1.0)
    async with cluster(tmp_path, redis_server) as (alpha, beta):
        delayed(beta, ownership.LEAVING_TOPIC, 3.0)
        assert alpha.ctx is not None
        record = alpha.ctx.modules.get("muc")
        assert record is not None
        relay = record.module.relay  # type: ignore[attr-defined]
        cancelled = asyncio.Event()

        async def a_long_save() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        assert relay.lanes.run("carol@localhost/r", a_long_save)
        await alpha.stop()
        await asyncio.wait_for(cancelled.wait(), 1)
        assert relay.lanes.closed
