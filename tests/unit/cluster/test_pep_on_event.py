"""`PepFanout.on_event` between real nodes on a real redis-server: the receiving
node is told of each event from another node, by owner and node (what keeps the
XEP-0398 §4 avatar hash current there), after delivering it; a malformed event
tells nothing."""

from __future__ import annotations

from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import wait_for
from tests.unit.cluster.test_pep_shared import Audience, _event, _node

METADATA = "urn:xmpp:avatar:metadata"


async def test_the_receiving_node_is_told_owner_and_node(redis_server: RedisServer) -> None:
    here, there = Audience({}), Audience({"alice@x": ["alice@x/pc"]})
    a = await _node(redis_server, "a", here)
    b = await _node(redis_server, "b", there)
    told_a: list[tuple[str, str]] = []
    told_b: list[tuple[str, str]] = []
    a.on_event = lambda owner, node: told_a.append((owner, node))
    b.on_event = lambda owner, node: told_b.append((owner, node))
    try:
        await wait_for(lambda: len(a.peers.alive()) == len(b.peers.alive()) == 2)
        a.peers.send("b", "pep", b'{"o": "alice@x", "b": "alice@x", "n": "n", "e": "<e/>"}')
        a.send("alice@x", ["alice@x"], METADATA, _event())
        await wait_for(lambda: bool(told_b))
        assert told_b == [("alice@x", METADATA)]  # the malformed one told nothing
        assert [s[1] for s in there.sent] == [["alice@x/pc"]]  # delivered as before
        assert told_a == []  # the publishing node's own module saw its publish itself
    finally:
        for f in (a, b):
            await f.peers.node.close()  # type: ignore[attr-defined]
