"""Which accounts have a XEP-0357 registration, for a node of a cluster
(`RegisteredAccounts` of `chatgate.modules.push_registered`).

A registration stored on one node must reach the others' sets before they
decide, from their set alone, that a message for that account wakes nobody.
So each node reads the set from the database when it starts, and every enable
is published on one channel (``PREFIX:push-registered``) once it is stored;
each node adds what the others publish.

Pub/sub delivers at most once, so the set is trusted only while nothing can
have been missed:

- a node that lost Redis (`ClusterNode.losses` moved since the set was read), or
  is not connected now, answers "may have" for every account (a read per
  message, as before the set existed) until it has read the set again, which it
  does as soon as Redis is back (`on_reconnect`);
- a node that could not publish an enable tells every node to read the set again
  (``*``) once it reaches Redis;
- what is published while a node reads the set is added to what it read (a
  publish follows its commit, so an enable heard before the read began is in
  the read);
- a node reads it again when another node joins: a node of an earlier release
  (a rolling upgrade) stores enables without publishing them, and each upgraded
  node then learns them as the next one is upgraded (restarted, so joining).

A disabled registration stays in the sets (its account is read, finds nothing):
the answer errs towards a read, never towards silence.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from chatgate.cluster.node import ClusterNode, ClusterUnavailable
from chatgate.modules.push_registered import MAX_KNOWN_ACCOUNTS, LoadRegistered
from chatgate.storage.errors import StorageError

log = logging.getLogger(__name__)

#: the channel's name under the cluster's key prefix
CHANNEL = "push-registered"
#: the message that tells every node to read the set again
READ_AGAIN = "*"


class ClusterRegisteredAccounts:
    """`RegisteredAccounts` shared by the nodes of a cluster (module docstring)."""

    def __init__(
        self,
        node: ClusterNode,
        load: LoadRegistered,
        spawn: Callable[[Awaitable[None]], None],
        limit: int = MAX_KNOWN_ACCOUNTS,
    ) -> None:
        self.node = node
        self._load = load
        #: runs a read in the background (the server's, which it drains on stop)
        self._spawn = spawn
        self._limit = limit
        self.channel = node.key(CHANNEL)
        #: None: not known (not read yet, past the limit, or a read failed)
        self.known: set[str] | None = None
        #: `node.losses` when `known` was read: trusted only while it is unchanged
        self._read_at = -1
        #: which read is the latest (an older one finishing later is dropped)
        self._reads = 0
        #: enables heard while the latest read runs, added to what it reads
        self._heard: set[str] | None = None
        #: an enable this node stored could not be published
        self.unannounced = False
        node.subscribe(self.channel, self._received)
        node.on_reconnect(self._reconnected)
        node.on_node_joined(self._joined)

    async def start(self) -> None:
        try:
            await self.node.subscribed()
        except TimeoutError:
            log.warning("push: not subscribed to %s yet: every account is read", self.channel)
            return  # read after the reconnection that subscribes it
        await self.read()

    def may_have(self, bare: str) -> bool:
        known = self.known
        if known is None or self._read_at != self.node.losses or not self.node.connected:
            return True
        return bare in known

    async def added(self, bare: str) -> None:
        self._add(bare)
        try:
            await self.node.publish(self.channel, f"{self.node.name}\n{bare}".encode())
        except ClusterUnavailable as exc:
            self.unannounced = True
            log.warning(
                "push: the registration of %s not told to the other nodes (%s): they"
                " read their sets again when this node reaches Redis",
                bare,
                exc,
            )

    async def read(self) -> None:
        """Read the set from the database (at start, and after anything was missed)."""
        self._reads += 1
        read = self._reads
        losses = self.node.losses
        self._heard = set()
        try:
            loaded = await self._load(self._limit)
        except StorageError as exc:
            log.warning("push: cannot read the registered accounts (%s): every one is read", exc)
            loaded = None
        if read != self._reads:
            return  # a later read replaces this one
        heard, self._heard = self._heard, None
        if loaded is None or losses != self.node.losses:
            self.known = None  # read again after the reconnection
            return
        loaded |= heard
        self.known = loaded if len(loaded) <= self._limit else None
        self._read_at = losses

    def _add(self, bare: str) -> None:
        if self._heard is not None:
            self._heard.add(bare)
        known = self.known
        if known is not None:
            known.add(bare)
            if len(known) > self._limit:
                self.known = None

    def _received(self, data: bytes) -> None:
        sender, _, bare = data.decode(errors="replace").partition("\n")
        if sender == self.node.name or not bare:
            return  # added when it was stored
        if bare == READ_AGAIN:
            self._spawn(self.read())
        else:
            self._add(bare)

    def _joined(self, _node: str) -> None:
        self._spawn(self.read())

    async def _reconnected(self) -> None:
        # Not awaited here: a slow database must not hold up the other resyncs;
        # until the read is done, `losses` moved and every account is read.
        self._spawn(self.read())
        if self.unannounced:
            try:
                await self.node.publish(self.channel, f"{self.node.name}\n{READ_AGAIN}".encode())
            except ClusterUnavailable:
                return  # the next reconnection tries again
            self.unannounced = False
            log.info("push: told every node to read its registered accounts again")
