"""The nodes as the MUC sees them: the cluster's live nodes minus those that said
they are stopping (`RoomOwnership.stop`).

A node stopping cleanly (SIGTERM) hands its rooms over before it leaves the
cluster.  For that its rooms need owners at once, while its heartbeat still says
it lives: every node's MUC, and the stopping node's own, counts it out from the
moment it says ``"muc-leaving"`` -- rooms then go, by rendezvous hashing over the
others, where they will stay once it is gone, and stanzas already go to the new
owners (which hold those for rooms not yet arrived).  When the node is really
gone, membership changes show no difference: its rooms moved already.

Everything but the node set is the cluster's `Peers`, unchanged.
"""

from __future__ import annotations

import inspect

from chatgate.peers import (
    MembershipHandler,
    MessageHandler,
    Peers,
    RequestHandler,
    rendezvous_owner,
)


class LeavingAwarePeers:
    """`Peers` without the nodes in `leaving` (see the module docstring)."""

    def __init__(self, peers: Peers) -> None:
        self.inner = peers
        #: nodes that said they are stopping and are still seen alive
        self.leaving: set[str] = set()

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def clustered(self) -> bool:
        return self.inner.clustered

    @property
    def counted_in(self) -> bool:
        return self.inner.counted_in

    def alive(self) -> frozenset[str]:
        alive = self.inner.alive()
        return alive - self.leaving if self.leaving else alive

    def owner(self, key: str) -> str:
        if not self.leaving:
            return self.inner.owner(key)
        return rendezvous_owner(key, self.alive())

    def joining(self) -> frozenset[str]:
        return self.inner.joining()

    def leave(self, node: str) -> None:
        """`node` (this one, or another) is stopping: it owns nothing from now on."""
        if node in self.inner.alive():
            self.leaving.add(node)

    def on_message(self, topic: str, handler: MessageHandler) -> None:
        self.inner.on_message(topic, handler)

    def on_request(self, topic: str, handler: RequestHandler) -> None:
        self.inner.on_request(topic, handler)

    def on_change(self, handler: MembershipHandler) -> None:
        async def changed(alive: frozenset[str]) -> None:
            # a stopping node that is gone now is forgotten (it may come back)
            self.leaving &= alive
            result = handler(alive - self.leaving)
            if inspect.isawaitable(result):
                await result

        self.inner.on_change(changed)

    def send(self, node: str, topic: str, payload: bytes) -> bool:
        return self.inner.send(node, topic, payload)

    def broadcast(self, topic: str, payload: bytes) -> int:
        return self.inner.broadcast(topic, payload)

    async def request(self, node: str, topic: str, payload: bytes, timeout: float = 5.0) -> bytes:
        return await self.inner.request(node, topic, payload, timeout)
