"""Sending serialized stanzas and session commands to other nodes, in batches.

A stanza for a session on another node is serialized once by the router, as for
a local session, and handed here with the target's full JID.  Frames for one node
are joined and published to its inbox in one PUBLISH at the start of the next
loop turn, on the node's one command connection, so stanzas keep their order
(RFC 6120 §10.1) and Redis sees one command per node per turn however many
stanzas cross.

A frame is ``kind (1 byte) | len(full) (2) | len(payload) (4) | full | payload``.

What cannot be sent:
- the queue is over `max_bytes` (Redis slow or gone): the frame is refused at once
  (`Forwarder.refused` counts, one log line per episode);
- PUBLISH reached nobody (the node is dead and not yet judged so): its frames go to
  `on_unheard(node, frames)`, which routes messages again (offline storage).

Pub/sub, not streams: a node that is gone must not find its backlog when it
returns (its sessions are gone with it; messages go to offline storage instead),
and PUBLISH's answer says at once whether the node heard, which a stream append
does not.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from chatgate.cluster.node import ClusterNode

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">BHI")


class FrameKind(enum.IntEnum):
    STANZA = 1  # write these bytes to the session
    REROUTED = 2  # a message its first target node no longer had: never forwarded again
    CLOSE = 3  # close the session: payload is "condition\ntext"


@dataclass(frozen=True, slots=True)
class Frame:
    kind: FrameKind
    full: str
    payload: bytes


#: header size, and the kinds by number (an IntEnum call per frame costs more)
HEADER_SIZE = _HEADER.size
unpack_header = _HEADER.unpack_from
_pack_header = _HEADER.pack
KINDS = {int(kind): kind for kind in FrameKind}


def decode(batch: bytes) -> Iterator[Frame]:
    """The frames of one published batch; a truncated tail is ignored (logged)."""
    view = memoryview(batch)
    offset = 0
    end = len(batch)
    size = _HEADER.size
    while offset + size <= end:
        kind, target_len, payload_len = _HEADER.unpack_from(view, offset)
        offset += size
        stop = offset + target_len + payload_len
        if stop > end:
            log.warning("cluster: a truncated forwarded frame was dropped")
            return
        full = bytes(view[offset : offset + target_len]).decode()
        payload = bytes(view[offset + target_len : stop])
        offset = stop
        yield Frame(FrameKind(kind), full, payload)


Unheard = Callable[[str, list[Frame]], None]


class Forwarder:
    """Batches frames per node and publishes them in order (see the module docstring)."""

    def __init__(self, node: ClusterNode, max_bytes: int, on_unheard: Unheard) -> None:
        self.node = node
        self.max_bytes = max_bytes
        self.on_unheard = on_unheard
        self._batches: dict[str, list[bytes]] = {}
        self._bytes = 0
        self._scheduled = False
        #: bytes this turn's batches may hold (set by `_admit`)
        self._budget = 0
        #: frames refused (queue full or Redis gone) since start
        self.refused = 0
        #: frames published since start
        self.forwarded = 0
        self._refusing = False
        self._refused_lately = 0  # refusals since the last flush
        self._episode = 0  # refusals since the episode's warning

    async def close(self) -> None:
        self._batches.clear()
        self._bytes = 0

    def send(self, node: str, kind: int, target: bytes, payload: bytes) -> bool:
        """Queue one frame for `node` (`target`: the full JID, encoded); False (and
        counted) when it is refused.  The per-stanza path of cross-node delivery:
        Redis's state and the socket's backlog are looked at once per loop turn
        (`_admit`), and the frame's three parts are joined once per batch."""
        target_len = len(target)
        payload_len = len(payload)
        size = HEADER_SIZE + target_len + payload_len
        if not self._scheduled and not self._admit():
            return self._refuse()
        if self._bytes + size > self._budget:
            return self._refuse()
        batch = self._batches.get(node)
        if batch is None:
            batch = self._batches[node] = []
        batch += (_pack_header(kind, target_len, payload_len), target, payload)
        self._bytes += size
        return True

    def _admit(self) -> bool:
        """The first frame of a loop turn: is Redis there, how much may be queued
        (what the socket has not taken yet counts), and the flush scheduled."""
        if not self.node.connected:
            self._budget = 0
            return False
        self._budget = self.max_bytes - self.node.unsent()
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._flush)
        return True

    def _refuse(self) -> bool:
        self.refused += 1
        self._refused_lately += 1
        if not self._refusing:
            self._refusing = True
            self._episode = 0
            log.warning(
                "cluster: cross-node delivery refused (%s): stanzas for other nodes"
                " are refused until it recovers",
                "Redis unreachable" if not self.node.connected else "forward queue full",
            )
        self._episode += 1
        return False

    def _flush(self) -> None:
        """Publish each node's batch, written at once (one hop after the turn that
        queued the stanzas: every hop is a loop turn of latency on a busy node);
        replies come back in order and say who heard."""
        self._scheduled = False
        batches, self._batches = self._batches, {}
        self._bytes = 0
        for name, parts in batches.items():
            batch = b"".join(parts)
            reply = self.node.send("PUBLISH", self.node.inbox_of(name), batch, now=True)
            reply.add_done_callback(partial(self._heard, name, batch, len(parts) // 3))
        # An episode ends at a turn that refused nothing (not at the first turn
        # that sent something: a full queue refuses some and sends others).
        if self._refusing and self.node.connected and not self._refused_lately:
            self._refusing = False
            log.info("cluster: cross-node delivery resumed (%d stanzas refused)", self._episode)
        self._refused_lately = 0

    def _heard(self, name: str, batch: bytes, count: int, reply: asyncio.Future[Any]) -> None:
        if reply.cancelled():
            return
        error = reply.exception()
        if error is not None:
            self.refused += count
            log.warning("cluster: %d stanzas for node %s lost: %s", count, name, error)
            return
        if reply.result():
            self.forwarded += count
        else:
            self.on_unheard(name, list(decode(batch)))
