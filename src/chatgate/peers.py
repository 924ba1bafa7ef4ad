"""Talking to the other nodes of a cluster: the seam features use to span nodes.

A feature whose state lives on one node (a group chat room, a hibernated stream,
a connected component) needs three things from the cluster: which nodes are
alive, a way to send a node a message, and a way to ask a node something and
await its answer.  `Peers` is that seam.  `LocalPeers` is the one-process
implementation (this node is the only one: every key is ours, there is nobody
to send to); `chatgate.cluster.peers.RedisPeers` is the cluster's, over the
nodes' Redis channels.

Messages are bytes under a *topic* (a short name the feature owns, such as
``"muc"``), so one feature's traffic never reaches another's handler.  Ordering:
messages from one node to another on one topic arrive in the order sent; there
is no ordering against stanzas forwarded by the session directory.

Ownership: `owner(key)` names the live node responsible for `key` by rendezvous
(highest random weight) hashing, so every node computes the same answer from the
same membership without asking anyone, and when a node goes only its keys move.
A feature that keeps state per key reacts to `on_change` (a node joined or left)
by handing over or reloading what moved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

#: a message from another node: (sender node, payload)
MessageHandler = Callable[[str, bytes], None]
#: a request from another node: (sender node, payload) -> the answer's payload
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
#: the live nodes after a change (this one included)
MembershipHandler = Callable[[frozenset[str]], Awaitable[None] | None]


class PeerUnreachable(Exception):
    """The node asked is not alive, Redis is away, or it did not answer in time."""


class PeerRefused(Exception):
    """The node asked answered with an error (its handler raised, or no handler)."""


class Peers(Protocol):
    """The nodes of this deployment, as a feature sees them."""

    @property
    def name(self) -> str:
        """This node's name."""
        ...

    @property
    def clustered(self) -> bool:
        """Whether other nodes may exist (False: `LocalPeers`)."""
        ...

    @property
    def counted_in(self) -> bool:
        """Whether the other nodes count this node in.  A node still starting is not
        (nothing of theirs was handed to it, so it has nothing to hand back), nor
        one that gave up reaching them for good (its start failed on Redis)."""
        ...

    def alive(self) -> frozenset[str]:
        """The nodes alive at the last look, this one included."""
        ...

    def owner(self, key: str) -> str:
        """The live node responsible for `key` (the same on every node)."""
        ...

    def joining(self) -> frozenset[str]:
        """Other nodes seen starting, not counted in yet (not in `alive`): they will
        be once their modules are set up, unless their start fails."""
        ...

    def on_message(self, topic: str, handler: MessageHandler) -> None:
        """Call `handler(sender, payload)` for each message sent to this node on `topic`."""
        ...

    def on_request(self, topic: str, handler: RequestHandler) -> None:
        """Answer requests on `topic` with `handler(sender, payload)`'s result."""
        ...

    def on_change(self, handler: MembershipHandler) -> None:
        """Call `handler(alive)` whenever a node joins or leaves."""
        ...

    def send(self, node: str, topic: str, payload: bytes) -> bool:
        """Send `payload` to `node` on `topic`; False when it cannot be sent now
        (Redis away, its queue full, the node not alive)."""
        ...

    def broadcast(self, topic: str, payload: bytes) -> int:
        """Send to every other live node; how many were sent to."""
        ...

    async def request(self, node: str, topic: str, payload: bytes, timeout: float = 5.0) -> bytes:
        """Ask `node`; its handler's answer.  Raises `PeerUnreachable` or `PeerRefused`."""
        ...


def rendezvous_owner(key: str, nodes: Iterable[str]) -> str:
    """The node of `nodes` with the highest weight for `key` (HRW hashing): stable
    while the node lives, and a departure moves only that node's keys."""
    best = ""
    best_weight = b""
    encoded = key.encode()
    for node in nodes:
        weight = hashlib.blake2b(encoded, digest_size=8, key=node.encode()[:64]).digest()
        if weight > best_weight or (weight == best_weight and node < best):
            best, best_weight = node, weight
    return best


class LocalPeers:
    """One process, no cluster: every key is this node's and there is nobody else.
    Sending fails (there is no other node); handlers are kept but never called."""

    def __init__(self, name: str = "local") -> None:
        self._name = name
        self._alive = frozenset({name})

    @property
    def name(self) -> str:
        return self._name

    @property
    def clustered(self) -> bool:
        return False

    @property
    def counted_in(self) -> bool:
        return True

    def alive(self) -> frozenset[str]:
        return self._alive

    def owner(self, key: str) -> str:
        return self._name

    def joining(self) -> frozenset[str]:
        return frozenset()

    def on_message(self, topic: str, handler: MessageHandler) -> None:
        pass

    def on_request(self, topic: str, handler: RequestHandler) -> None:
        pass

    def on_change(self, handler: MembershipHandler) -> None:
        pass

    def send(self, node: str, topic: str, payload: bytes) -> bool:
        return False

    def broadcast(self, topic: str, payload: bytes) -> int:
        return 0

    async def request(self, node: str, topic: str, payload: bytes, timeout: float = 5.0) -> bytes:
        raise PeerUnreachable(f"no node {node!r}: this server is not clustered")
