"""Races of `RoomOwnership` while nodes join, start and stop (found in review):
the real ownership, relay and service of each node, the nodes' peers in memory
(each node's view of the others set by the test), so that one handover can be
held at a chosen moment.  The same paths against real servers and Redis are in
`test_cluster_nodes.py`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from chatgate.modules.muc import ownership
from chatgate.modules.muc.handover import room_state
from chatgate.modules.muc.leaving import LeavingAwarePeers
from chatgate.modules.muc.options import MucOptions
from chatgate.modules.muc.ownership import RoomOwnership
from chatgate.modules.muc.registry import LocalRoomRegistry
from chatgate.modules.muc.relay import RoomRelay
from chatgate.modules.muc.room import Occupant, Room, RoomConfig
from chatgate.modules.muc.service import MucService
from chatgate.peers import PeerRefused, rendezvous_owner
from chatgate.xml.element import Element

DOMAIN = "conference.localhost"


class Router:
    def __init__(self) -> None:
        self.presences: list[tuple[list[str], str]] = []

    def presence_to(self, jids: Any, xml: str) -> None:
        self.presences.append((list(jids), xml))

    def deliver_to_full(self, full: Any, stanza: Any) -> bool:
        return True

    def message_to(self, fulls: Any, xml: str) -> list[str]:
        return []


class Store:
    async def save(self, record: Any) -> None: ...

    async def exists(self, jid: str) -> bool:
        return False

    async def delete(self, jid: str) -> None: ...


class Repo:
    def __init__(self) -> None:
        self.records: list[Any] = []

    async def load(self, domain: str) -> list[Any]:
        return list(self.records)


Hook = Callable[[str, str, str, bytes], Awaitable[None]]


class Net:
    def __init__(self) -> None:
        self.nodes: dict[str, FakePeers] = {}
        self.log: list[tuple[str, str, str]] = []  # (from, to, topic) as handled
        self.hook: Hook | None = None

    def hold(self, matches: Callable[[str, str, str], bool]) -> asyncio.Event:
        """Hold each request that `matches` (from, to, topic) until the returned
        event is set."""
        gate = asyncio.Event()

        async def hook(frm: str, to: str, topic: str, payload: bytes) -> None:
            if matches(frm, to, topic):
                await gate.wait()

        self.hook = hook
        return gate


class FakePeers:
    def __init__(self, net: Net, name: str, view: set[str]) -> None:
        self.net = net
        self.name = name
        self.view = set(view) | {name}
        self.starting: set[str] = set()
        self.forced: dict[str, str] = {}
        self.requests: dict[str, Any] = {}
        self.changes: list[Any] = []
        net.nodes[name] = self

    clustered = True
    counted_in = True

    def alive(self) -> frozenset[str]:
        return frozenset(self.view)

    def owner(self, key: str) -> str:
        return self.forced.get(key) or rendezvous_owner(key, self.alive())

    def joining(self) -> frozenset[str]:
        return frozenset(self.starting)

    def on_message(self, topic: str, handler: Any) -> None: ...

    def on_request(self, topic: str, handler: Any) -> None:
        self.requests[topic] = handler

    def on_change(self, handler: Any) -> None:
        self.changes.append(handler)

    def send(self, node: str, topic: str, payload: bytes) -> bool:
        return True

    def broadcast(self, topic: str, payload: bytes) -> int:
        return 0

    async def request(self, node: str, topic: str, payload: bytes, timeout: float = 5.0) -> bytes:
        if self.net.hook is not None:
            await self.net.hook(self.name, node, topic, payload)
        handler = self.net.nodes[node].requests.get(topic)
        if handler is None:
            raise PeerRefused("no handler")
        try:
            answer = await handler(self.name, payload)
        except Exception as exc:
            raise PeerRefused(str(exc)) from None
        self.net.log.append((self.name, node, topic))
        return answer


class Node:
    def __init__(self, net: Net, name: str, view: set[str]) -> None:
        self.peers = FakePeers(net, name, view)
        self.router = Router()
        self.registry = LocalRoomRegistry()
        self.svc = MucService(self.router, MucOptions(), self.registry, Store())  # type: ignore[arg-type]
        lp = LeavingAwarePeers(self.peers)
        self.relay = RoomRelay(self.svc, lp, max_stanza_bytes=65536)
        self.repo = Repo()
        self.own = RoomOwnership(self.svc, self.relay, self.repo, [DOMAIN], lp)  # type: ignore[arg-type]


def live_room(svc: MucService, jid: str, who: str = "alice@localhost/r") -> Room:
    room = Room(jid, RoomConfig(persistent=True), history=svc.new_history())
    room.locked = False
    presence = Element("presence", "jabber:client", {"from": who})
    room.add_session("alice", Occupant("Alice", who.split("/")[0], "participant"), who, presence)
    return room


def idle_room(svc: MucService, jid: str) -> Room:
    room = Room(jid, RoomConfig(persistent=True), history=svc.new_history())
    room.locked = False
    return room


async def test_a_live_room_arriving_where_its_idle_copy_is_being_handed_over_reaches_its_owner() -> (
    None
):
    """J holds an idle copy (loaded from storage) and is handing it to O; meanwhile
    K, whose view lacks O, hands J the live room.  The live room replaces the
    copy, waits for the copy's handover, then goes on to O, where it replaces
    the copy in turn: Alice's room ends on its owner, and J keeps nothing (the
    copy's handover must not remove the live room by its name)."""
    net = Net()
    j = Node(net, "J", {"O", "K"})
    o = Node(net, "O", {"J", "K"})
    k = Node(net, "K", {"J"})
    jid = f"r1@{DOMAIN}"
    j.peers.forced[jid] = "O"
    o.peers.forced[jid] = "O"
    j.registry.add(idle_room(j.svc, jid))
    # R0's handover in flight until the gate opens
    gate = net.hold(lambda frm, to, topic: (frm, to, topic) == ("J", "O", ownership.HANDOVER_TOPIC))
    first = asyncio.ensure_future(j.own._hand_over_room(j.registry.get(jid)))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    live = live_room(k.svc, jid)
    assert await j.own._received("K", room_state(live)) == b"ok"
    assert j.registry.get(jid) is not None and j.registry.get(jid).occupants  # type: ignore[union-attr]
    await asyncio.sleep(0.01)
    gate.set()
    await first
    await asyncio.sleep(0.05)
    on_j = j.registry.get(jid)
    on_o = o.registry.get(jid)
    assert on_j is None
    assert on_o is not None and list(on_o.occupants) == ["alice"]


async def test_a_second_pass_says_moved_only_after_the_room_the_first_pass_hands_over() -> None:
    """Two passes over A's rooms (K, then J joined): the J pass finds the room the K
    pass is handing over (to J, its owner by then) and waits for it, so J hears
    "moved" after the room arrived, never before (it would stop waiting and load
    the stored room beside the live one)."""
    net = Net()
    a = Node(net, "A", {"J", "K"})
    jn = Node(net, "J", {"A", "K"})
    Node(net, "K", {"A", "J"})
    jid = f"r2@{DOMAIN}"
    a.peers.forced[jid] = "J"
    jn.peers.forced[jid] = "J"
    a.registry.add(live_room(a.svc, jid))
    gate = net.hold(lambda frm, to, topic: topic == ownership.HANDOVER_TOPIC)
    p1 = asyncio.ensure_future(a.own._hand_over(frozenset({"K"})))
    await asyncio.sleep(0.01)
    p2 = asyncio.ensure_future(a.own._hand_over(frozenset({"J"})))
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(p1, p2)
    order = [t for (f, to, t) in net.log if f == "A" and to == "J"]
    assert jn.registry.get(jid) is not None
    assert order.index(ownership.HANDOVER_TOPIC) < order.index(ownership.MOVED_TOPIC)


async def test_a_stop_waits_for_a_room_a_join_pass_is_still_handing_over() -> None:
    """A join pass is handing a room over (its first attempt refused, retrying) when
    the node stops: the stop waits for that handover instead of dropping the room
    with 332."""
    net = Net()
    a = Node(net, "A", {"J", "B"})
    nodes = {"J": Node(net, "J", {"A", "B"}), "B": Node(net, "B", {"A", "J"})}
    jid = f"r3@{DOMAIN}"
    a.peers.forced[jid] = "J"
    a.registry.add(live_room(a.svc, jid))
    refused = []

    async def hook(frm: str, to: str, topic: str, payload: bytes) -> None:
        if topic == ownership.HANDOVER_TOPIC and not refused:
            refused.append(1)
            raise PeerRefused("too many requests")

    net.hook = hook
    a.relay.settled.set()
    pass_ = asyncio.ensure_future(a.own._hand_over(frozenset({"J"})))
    await asyncio.sleep(0.01)
    await a.own.stop()
    await pass_
    kicked = [xml for _, xml in a.router.presences if "332" in xml]
    assert not kicked, "the room was dropped with 332 instead of handed over"
    held = [name for name in ("J", "B") if nodes[name].registry.get(jid) is not None]
    assert len(held) == 1, held


async def test_a_node_that_dies_while_starting_is_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """J starts while K is starting too, so J waits for K's word; K dies before it
    is counted in (no membership change says so): J stops waiting for it at its
    next look, not after the whole `HANDOVER_WAIT`."""
    monkeypatch.setattr(ownership, "HANDOVER_WAIT", 5.0)
    monkeypatch.setattr(ownership, "EXPECTING_LOOK", 0.1, raising=False)
    net = Net()
    j = Node(net, "J", {"A"})
    Node(net, "A", {"J"})
    j.peers.starting = {"K"}
    began = asyncio.get_running_loop().time()
    await j.own.start()
    await asyncio.sleep(0.05)
    # A says moved; K dies while still joining: nobody counts it anymore
    j.peers.starting = set()
    await j.own._moved("A", b"")
    await asyncio.wait_for(j.relay.settled.wait(), 5)
    took = asyncio.get_running_loop().time() - began
    assert took < 1.0, f"stanzas held {took:.2f} s for a node that is gone"
