"""`Peers` over Redis: messages and requests between the nodes of a cluster.

Each node listens on one channel of its own (``node:NAME:peers``); a message is
one PUBLISH there, written with the other commands of the loop turn on the
node's lean connection (`ClusterNode.send`).  PUBLISH's answer says whether the
node heard: a request to a node that is not listening fails at once instead of
waiting for its timeout.

A message on the wire::

    kind (1) | len(topic) (1) | len(sender) (1) | request id (8) | topic | sender | payload

``kind`` is a one-way message, a request, an answer or a refusal (the handler
raised, or the topic has no handler: its text is the payload).

Bounds: at most `MAX_PENDING` requests of this node wait for answers and at most
`MAX_SERVING` requests of others are being answered here; beyond them a request
is refused at once.  Sends are refused while the node's unsent commands exceed
its forward queue (`[cluster] forward_queue_bytes`), as stanzas are.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import struct
from typing import Any

from chatgate.cluster.node import ClusterNode
from chatgate.peers import (
    MembershipHandler,
    MessageHandler,
    PeerRefused,
    PeerUnreachable,
    RequestHandler,
    rendezvous_owner,
)

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">BBBQ")
#: requests of this node awaiting answers, at most
MAX_PENDING = 10_000
#: requests of other nodes being answered here at once, at most
MAX_SERVING = 1_000


class _Kind(enum.IntEnum):
    MESSAGE = 1
    REQUEST = 2
    ANSWER = 3
    REFUSAL = 4


class RedisPeers:
    """`Peers` for a node of a cluster (see the module docstring)."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self._messages: dict[str, MessageHandler] = {}
        self._requests: dict[str, RequestHandler] = {}
        self._membership: list[MembershipHandler] = []
        self._ids = itertools.count(1)
        #: request id -> (node asked, its future)
        self._pending: dict[int, tuple[str, asyncio.Future[bytes]]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self._sender = node.name.encode()
        node.subscribe(self._channel(node.name), self._arrived)
        node.on_node_gone(self._gone)
        node.on_node_joined(self._joined)
        node.on_reconnect(self._changed)

    # ------------------------------------------------------------ Peers

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def clustered(self) -> bool:
        return True

    @property
    def counted_in(self) -> bool:
        return self.node.counted_in

    def alive(self) -> frozenset[str]:
        return self.node.others | {self.node.name}

    def owner(self, key: str) -> str:
        return rendezvous_owner(key, self.alive())

    def joining(self) -> frozenset[str]:
        return self.node.joining

    def on_message(self, topic: str, handler: MessageHandler) -> None:
        self._messages[topic] = handler

    def on_request(self, topic: str, handler: RequestHandler) -> None:
        self._requests[topic] = handler

    def on_change(self, handler: MembershipHandler) -> None:
        self._membership.append(handler)

    def send(self, node: str, topic: str, payload: bytes) -> bool:
        if not self._admitted(node):
            return False
        self._publish(node, _Kind.MESSAGE, topic, 0, payload)
        return True

    def broadcast(self, topic: str, payload: bytes) -> int:
        sent = 0
        for node in self.node.others:
            sent += self.send(node, topic, payload)
        return sent

    async def request(self, node: str, topic: str, payload: bytes, timeout: float = 5.0) -> bytes:
        if not self._admitted(node):
            raise PeerUnreachable(f"node {node} cannot be reached now")
        if len(self._pending) >= MAX_PENDING:
            raise PeerUnreachable("too many requests to other nodes are waiting")
        request_id = next(self._ids)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (node, future)
        reply = self._publish(node, _Kind.REQUEST, topic, request_id, payload)
        reply.add_done_callback(lambda heard: self._unheard(request_id, heard))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise PeerUnreachable(f"node {node} did not answer within {timeout:g} s") from exc
        finally:
            self._pending.pop(request_id, None)

    # ------------------------------------------------------------ sending

    def _channel(self, node: str) -> str:
        return self.node.key("node", node, "peers")

    def _admitted(self, node: str) -> bool:
        cluster = self.node
        return (
            cluster.connected
            and node in cluster.others
            and cluster.unsent() < cluster.options.forward_queue_bytes
        )

    def _publish(
        self, node: str, kind: _Kind, topic: str, request_id: int, payload: bytes
    ) -> asyncio.Future[Any]:
        encoded = topic.encode()
        header = _HEADER.pack(kind, len(encoded), len(self._sender), request_id)
        data = b"".join((header, encoded, self._sender, payload))
        return self.node.send("PUBLISH", self._channel(node), data)

    def _unheard(self, request_id: int, heard: asyncio.Future[Any]) -> None:
        """PUBLISH answered: nobody listening (or Redis failed) fails the request now."""
        entry = self._pending.get(request_id)
        if entry is None or entry[1].done():
            return
        if heard.cancelled() or heard.exception() is not None or not heard.result():
            entry[1].set_exception(PeerUnreachable(f"node {entry[0]} is not listening"))

    # ------------------------------------------------------------ arriving

    def _arrived(self, data: bytes) -> None:
        size = _HEADER.size
        if len(data) < size:
            log.warning("cluster: a short peer message was dropped")
            return
        kind, topic_len, sender_len, request_id = _HEADER.unpack_from(data)
        topic = data[size : size + topic_len].decode()
        sender = data[size + topic_len : size + topic_len + sender_len].decode()
        payload = data[size + topic_len + sender_len :]
        if kind == _Kind.MESSAGE:
            handler = self._messages.get(topic)
            if handler is None:
                log.warning("cluster: a message on topic %r from %s has no handler", topic, sender)
                return
            handler(sender, payload)
        elif kind == _Kind.REQUEST:
            self._serve(sender, topic, request_id, payload)
        elif kind in (_Kind.ANSWER, _Kind.REFUSAL):
            entry = self._pending.get(request_id)
            if entry is None or entry[1].done():
                return  # timed out meanwhile
            if kind == _Kind.ANSWER:
                entry[1].set_result(payload)
            else:
                entry[1].set_exception(PeerRefused(payload.decode(errors="replace")))

    def _serve(self, sender: str, topic: str, request_id: int, payload: bytes) -> None:
        handler = self._requests.get(topic)
        if handler is None:
            refusal = b"no handler for " + topic.encode()
            self._publish(sender, _Kind.REFUSAL, topic, request_id, refusal)
            return
        if len(self._serving) >= MAX_SERVING:
            self._publish(sender, _Kind.REFUSAL, topic, request_id, b"too many requests")
            return
        task = asyncio.ensure_future(self._answer(handler, sender, topic, request_id, payload))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _answer(
        self, handler: RequestHandler, sender: str, topic: str, request_id: int, payload: bytes
    ) -> None:
        try:
            answer = await handler(sender, payload)
        except Exception as exc:
            log.warning("cluster: request on %r from %s failed: %s", topic, sender, exc)
            self._publish(sender, _Kind.REFUSAL, topic, request_id, str(exc).encode())
            return
        self._publish(sender, _Kind.ANSWER, topic, request_id, answer)

    # ------------------------------------------------------------ membership

    async def _gone(self, node: str) -> None:
        for asked, future in list(self._pending.values()):
            if asked == node and not future.done():
                future.set_exception(PeerUnreachable(f"node {node} is gone"))
        await self._changed()

    async def _joined(self, node: str) -> None:
        await self._changed()

    async def _changed(self) -> None:
        alive = self.alive()
        for handler in self._membership:
            try:
                result = handler(alive)
                if result is not None:
                    await result
            except Exception:
                log.exception("cluster: membership handler %r failed", handler)
