"""Rooms when nodes of a cluster die or join (`modules/muc/ownership.py`): real
servers on one SQLite file and one redis-server, clients on real TCP connections.

A node "dies" as kill -9 would leave it: its cluster node stops beating and says
nothing (the survivors notice within `node_timeout`, 1 s here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from chatgate.server import Server
from tests.redis_server import RedisServer
from tests.unit.cluster.conftest import redis_server, redis_server_session  # noqa: F401
from tests.unit.cluster.test_bosh_forwarding import cluster_config

from .test_cluster_rooms import (
    MUC,
    C,
    RawClient,
    cluster,
    codes,
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
            assert persistent in rooms_of(beta)
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


async def test_a_joining_node_takes_its_rooms_occupants_are_told_and_rejoin(
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
            assert rooms_of(alpha) == {moving, kept, staying}
            beta = Server(cluster_config(tmp_path, redis_server, "beta", http={"enabled": False}))
            await beta.start()
            for room in (moving, kept):
                out = await alice.expect(shutdown_of(room, "Alice"), timeout=8)
                assert {"110", "332"} <= codes(out)
            assert rooms_of(alpha) == {staying}
            assert kept in rooms_of(beta)  # loaded from the database by its new owner
            await asyncio.sleep(1.2)  # beta's late subscriptions take effect
            # rejoining goes to beta: the stored room as it was, the temporary anew
            assert "201" not in codes(await alice.join(kept, "Alice"))
            assert "201" in codes(await alice.join(moving, "Alice"))
            assert rooms_of(beta) == {moving, kept}
            # the room that stayed never noticed
            alice.send(f"<message to='{staying}' type='groupchat'><body>same</body></message>")
            await alice.expect(lambda e: e.findtext(C + "body") == "same")
            alice.send(f"<presence to='{staying}/Alice'><x xmlns='{MUC}'/></presence>")
            again = await alice.expect(lambda e: e.get("from") == f"{staying}/Alice")
            assert "201" not in codes(again)
        finally:
            alice.close()
            if beta is not None:
                await beta.stop()
