"""XEP-0191 blocking in a cluster: a block made on one node applies on every node
at once.

Each node keeps blocklists in memory (`modules/blocking.py`'s cache, read by the
synchronous router) and the set of accounts that block anyone (so a login of
someone who blocks nobody reads nothing).  Both are per node; what a cluster
needs is that a change reaches them all.  The lists are in the shared database,
so a change needs no shared copy, only a message:

- a block or unblock on node A is broadcast on the peers' topic ``blocking`` with
  the account's new list; A answers the user's IQ only once Redis has handed the
  message to the other nodes (a PING after the PUBLISH on the same connection),
  so a stanza sent after the answer meets the new list everywhere;
- each node applies the list at once and keeps it in memory (`Blocklists.learned`:
  the cached list, the pinned one of an account with a session there, the set of
  blockers; the presence filter, which cannot wait for a read, needs it), then
  reads it again from the database: two changes of one account made at once on
  two nodes may arrive in either order, and the database says which is last;
- a node that joins read the set of blockers from the database at its start,
  possibly before a change made elsewhere just then, and before the others knew
  it was there to hear: each node sends a joining node the accounts it changed
  within the last `RECENT_SECONDS` (with their lists), or, past `MAX_RECENT`,
  tells it to stop trusting its set of blockers;
- Redis away: each node applies the lists it has; changes made elsewhere meanwhile
  are missed, so when Redis returns each node reads its set of blockers and every
  list it holds again (`Blocklists.resync`), logged once per outage.

Nothing here touches the routing path: a stanza costs what it costs on one node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from chatgate.cluster.node import ClusterNode
from chatgate.peers import Peers

log = logging.getLogger(__name__)

TOPIC = "blocking"
#: changes a joining node is told about: those of the last minute, at most this many
RECENT_SECONDS = 60.0
MAX_RECENT = 10_000
#: items of one list accepted from another node (the module's own bound is lower)
MAX_ITEMS = 100_000
#: seconds to wait for Redis to take a change before the IQ is answered anyway
SHARE_TIMEOUT = 2.0
#: seconds before a change that reached not every node is sent again
RESEND_DELAY = 1.0


class NodeBlocklists(Protocol):
    """What `BlocklistSync` uses of a node's blocklists
    (`chatgate.modules.blocking.Blocklists`).

    A protocol here rather than an import: the blocking module chooses this sync
    at setup, so importing the module back would close an import cycle."""

    #: accounts whose list is not empty (None: not known, every list is read)
    blockers: set[str] | None
    #: set by the sync: tells the other nodes about a change made on this node
    share: Callable[[str, frozenset[str]], Awaitable[None]] | None

    def learned(self, bare: str, items: frozenset[str]) -> None:
        """Another node changed `bare`'s list to `items`."""
        ...

    async def resync(self) -> None:
        """Read the set of blockers and every list held again (changes may have been
        missed while Redis was away)."""
        ...


class BlocklistSync:
    """Tells the other nodes about this node's blocklist changes, and applies theirs."""

    def __init__(self, node: ClusterNode, peers: Peers, lists: NodeBlocklists) -> None:
        self.node = node
        self.peers = peers
        self.lists = lists
        #: bare -> (monotonic time, items) of this node's recent changes, oldest first
        self._recent: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()
        self._overflowed_at = 0.0
        self._failing = False
        lists.share = self.share
        peers.on_message(TOPIC, self._arrived)
        node.on_node_joined(self._joined)
        node.on_reconnect(self._reconnected)

    async def share(self, bare: str, items: frozenset[str]) -> None:
        ordered = sorted(items)
        now = time.monotonic()
        self._recent.pop(bare, None)
        self._recent[bare] = (now, ordered)
        self._trim(now)
        if not self._broadcast(bare, ordered) and self.node.connected:
            # Not every node took it (this node's queue to Redis full): once more
            # in a second, with the list as it is then.
            asyncio.get_running_loop().call_later(RESEND_DELAY, self._again, bare)
        try:
            # After the PUBLISHes on the same connection: Redis has sent them on.
            await asyncio.wait_for(self.node.send("PING"), SHARE_TIMEOUT)
        except Exception as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    "blocking: Redis unreachable (%s): other nodes apply this node's"
                    " block changes when it returns",
                    exc,
                )

    def _broadcast(self, bare: str, items: list[str]) -> bool:
        """Send a change to every other node; False when some did not take it."""
        payload = json.dumps({"b": bare, "i": items}).encode()
        return self.peers.broadcast(TOPIC, payload) >= len(self.peers.alive()) - 1

    def _again(self, bare: str) -> None:
        recent = self._recent.get(bare)
        if recent is not None and not self._broadcast(bare, recent[1]):
            log.warning("blocking: the change of %s did not reach every node", bare)

    def _trim(self, now: float) -> None:
        while self._recent:
            bare, (when, _items) = next(iter(self._recent.items()))
            if now - when <= RECENT_SECONDS and len(self._recent) <= MAX_RECENT:
                break
            if len(self._recent) > MAX_RECENT:
                self._overflowed_at = now
            del self._recent[bare]

    def _arrived(self, sender: str, payload: bytes) -> None:
        try:
            message = json.loads(payload)
            if message.get("untrusted"):
                # Too many changes to list for us: read every list, as if unknown.
                self.lists.blockers = None
                return
            changes: list[Any] = message.get("recent", [message])
            parsed = [(str(c["b"]), _items(c["i"])) for c in changes]
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("blocking: a malformed message from node %s was dropped", sender)
            return
        for bare, items in parsed:
            self.lists.learned(bare, items)

    async def _joined(self, other: str) -> None:
        now = time.monotonic()
        self._trim(now)
        if now - self._overflowed_at <= RECENT_SECONDS:
            message: dict[str, Any] = {"untrusted": True}
        else:
            message = {"recent": [{"b": b, "i": i} for b, (_t, i) in self._recent.items()]}
        if message.get("untrusted") or message["recent"]:
            self.peers.send(other, TOPIC, json.dumps(message).encode())

    async def _reconnected(self) -> None:
        if self._failing:
            log.warning("blocking: Redis reachable again: reading the blocklists again")
        self._failing = False
        with contextlib.suppress(Exception):
            await self.lists.resync()


def _items(values: Any) -> frozenset[str]:
    if not isinstance(values, list) or len(values) > MAX_ITEMS:
        raise TypeError("items must be a list")
    return frozenset(str(v) for v in values)
