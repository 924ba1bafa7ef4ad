"""`PepFanout` between real nodes on a real redis-server: an event published on
one node is handed to every other node's audience with the accounts that may hear
it; each node picks its own interested sessions.  The audience is a recorder here
(`Audience` itself is tested in tests/unit/modules/pep; real nodes and clients in
tests/e2e/test_cluster_sync.py)."""

from __future__ import annotations

from chatgate.cluster.node import ClusterNode
from chatgate.cluster.peers import RedisPeers
from chatgate.cluster.pep import PepFanout
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize
from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import options, wait_for

EVENT_NS = "http://jabber.org/protocol/pubsub#event"


class Audience:
    """What `PepFanout` calls on `modules.pep.notifier.Audience`."""

    def __init__(self, interested: dict[str, list[str]]) -> None:
        self.interested = interested  # bare -> this node's sessions wanting the node
        self.asked: list[tuple[list[str], str]] = []
        self.sent: list[tuple[str, list[str], str]] = []
        self.fanout = None

    def wanting(self, bares: list[str], node: str) -> list[str]:
        self.asked.append((bares, node))
        return [s for b in bares for s in self.interested.get(b, [])]

    def send_event(self, owner: str, sessions: list[str], event: Element) -> None:
        self.sent.append((owner, sessions, serialize(event)))


async def _node(server: RedisServer, name: str, audience: Audience) -> PepFanout:
    node = ClusterNode(options(server), name=name)
    fanout = PepFanout(RedisPeers(node), audience)  # type: ignore[arg-type]
    await node.start()
    await node.subscribed()
    return fanout


def _event() -> Element:
    event = Element("event", EVENT_NS)
    item = event.sub("items", attrs={"node": "http://jabber.org/protocol/tune"}).sub(
        "item", attrs={"id": "current"}
    )
    item.sub("tune", "http://jabber.org/protocol/tune").sub("title").children.append("Jump & <run>")
    return event


async def test_an_event_reaches_every_other_nodes_interested_sessions(
    redis_server: RedisServer,
) -> None:
    here = Audience({})
    there = Audience({"bob@x": ["bob@x/phone"], "alice@x": ["alice@x/pc"]})
    third = Audience({})
    a = await _node(redis_server, "a", here)
    b = await _node(redis_server, "b", there)
    c = await _node(redis_server, "c", third)
    try:
        assert here.fanout == a.send  # the module's audience hands events to it
        await wait_for(lambda: all(len(f.peers.alive()) == 3 for f in (a, b, c)))
        event = _event()
        a.send("alice@x", ["alice@x", "bob@x"], "http://jabber.org/protocol/tune", event)
        await wait_for(lambda: bool(there.sent) and bool(third.asked))
        assert there.asked == [(["alice@x", "bob@x"], "http://jabber.org/protocol/tune")]
        assert there.sent == [("alice@x", ["alice@x/pc", "bob@x/phone"], serialize(event))]
        assert third.sent == [("alice@x", [], serialize(event))]  # nobody there wants it
        assert here.asked == []  # the publishing node served its own sessions itself
    finally:
        for f in (a, b, c):
            await f.peers.node.close()  # type: ignore[attr-defined]


async def test_alone_nothing_is_sent_and_malformed_events_are_dropped(
    redis_server: RedisServer,
) -> None:
    alone = Audience({})
    a = await _node(redis_server, "a", alone)
    try:
        a.send("alice@x", ["alice@x"], "n", _event())  # no other node: no PUBLISH
        other = Audience({"alice@x": ["alice@x/pc"]})
        b = await _node(redis_server, "b", other)
        try:
            await wait_for(lambda: len(a.peers.alive()) == len(b.peers.alive()) == 2)
            for junk in (
                b"{",
                b'{"o": "alice@x", "b": "alice@x", "n": "n", "e": "<event/>"}',
                b'{"o": "alice@x", "b": ["alice@x"], "n": "n", "e": "<event>"}',
                b'{"o": "alice@x", "b": ["alice@x"], "n": "n"}',
            ):
                a.peers.send("b", "pep", junk)
            a.send("alice@x", ["alice@x"], "n", _event())
            await wait_for(lambda: bool(other.sent))
            assert [s[1] for s in other.sent] == [["alice@x/pc"]]
        finally:
            await b.peers.node.close()  # type: ignore[attr-defined]
    finally:
        await a.peers.node.close()  # type: ignore[attr-defined]
