"""Components in a cluster: which node holds each component, over Redis, and the
stanzas for a component connected to another node.

Claims (`RedisComponentLocator`): one key per component domain,
``PREFIX:component:DOMAIN``, holding the name of the node whose connection serves
it.  It is set with NX and an expiry of `[cluster] node_timeout`, renewed every
heartbeat interval while the connection lasts, and deleted (compare-and-delete)
when it ends.  A node that dies stops renewing: its claims expire within
`node_timeout`, as its heartbeat does, and the component can connect anywhere again
(until then a new connection gets `conflict`, and slixmpp-style components retry).
After Redis comes back, the renewal re-creates a claim Redis forgot.

Stanzas (`ComponentRelay`): a node whose router gets a stanza for a component it
does not hold looks up the holder and sends it the serialized stanza, as
``domain "\\n" stanza``, over the nodes' channels (`chatgate.peers`, topic
``component``).  The holder writes it to the component as it is.  No holder, a
holder that is not alive, Redis unreachable or the queue to Redis full: the sender
gets `service-unavailable`, as for a component that is not connected.  Stanzas the
component sends need nothing of this: the router reaches sessions on every node
through the cluster's session directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from chatgate.cluster.node import ClusterUnavailable
from chatgate.cluster.resp import RespError, Script

if TYPE_CHECKING:
    from chatgate.cluster.node import ClusterNode
    from chatgate.peers import Peers

log = logging.getLogger(__name__)

#: Set the claim when free or already this node's; refresh its expiry.  1 when held.
_CLAIM = Script(
    """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
)
#: Delete the claim only when this node holds it.
_RELEASE = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)
_FAILURES = (RespError, ConnectionError, OSError, ClusterUnavailable)
#: the `chatgate.peers` topic of relayed stanzas
TOPIC = "component"


class RedisComponentLocator:
    """`locator.ComponentLocator` over the cluster's Redis."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self._ttl_ms = int(node.options.node_timeout * 1000)
        #: the domains this node holds, renewed each heartbeat interval
        self.held: set[str] = set()
        self._renewal: asyncio.Task[None] | None = None

    def _key(self, domain: str) -> str:
        return self.node.key("component", domain)

    async def claim(self, domain: str, node: str) -> bool:
        try:
            won = await self.node.run_script(_CLAIM, [self._key(domain)], [node, self._ttl_ms])
        except _FAILURES as exc:
            log.warning("components: cannot claim %s in Redis (%s): refused", domain, exc)
            return False
        if won == 1:
            self.held.add(domain)
            return True
        return False

    async def release(self, domain: str, node: str) -> None:
        self.held.discard(domain)
        try:
            await self.node.run_script(_RELEASE, [self._key(domain)], [node])
        except _FAILURES as exc:
            log.warning("components: cannot release %s in Redis (%s): it expires", domain, exc)

    async def holder(self, domain: str) -> str | None:
        try:
            value = await self.node.send("GET", self._key(domain))
        except _FAILURES:
            return None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def start(self) -> None:
        self._renewal = asyncio.create_task(self._renew(), name="component-claims")

    async def stop(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
            self._renewal = None
        for domain in list(self.held):
            await self.release(domain, self.node.name)

    async def _renew(self) -> None:
        interval = self.node.options.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            for domain in list(self.held):
                try:
                    kept = await self.node.run_script(
                        _CLAIM, [self._key(domain)], [self.node.name, self._ttl_ms]
                    )
                except _FAILURES:
                    continue  # Redis away: tried again next interval
                if kept != 1 and domain in self.held:
                    log.warning(
                        "components: %s is claimed by another node (this node's claim"
                        " expired while Redis was away); this node keeps serving it",
                        domain,
                    )


class ComponentRelay:
    """Stanzas for components connected to other nodes (see the module docstring)."""

    def __init__(
        self,
        peers: Peers,
        locator: RedisComponentLocator,
        deliver_here: Callable[[str, bytes], bool],
    ) -> None:
        self.peers = peers
        self.locator = locator
        self._deliver_here = deliver_here

    async def start(self) -> None:
        self.peers.on_message(TOPIC, self._received)
        self.locator.start()

    async def forward(self, domain: str, data: bytes) -> bool:
        """Send a serialized stanza to the node holding `domain`; False when no other
        node holds it or it cannot be sent now."""
        holder = await self.locator.holder(domain)
        if holder is None or holder == self.peers.name:
            return False
        return self.peers.send(holder, TOPIC, domain.encode() + b"\n" + data)

    def _received(self, sender: str, data: bytes) -> None:
        domain, sep, stanza = data.partition(b"\n")
        if not sep or not self._deliver_here(domain.decode(errors="replace"), stanza):
            log.info(
                "components: a stanza from node %s for %r arrived after it left this node",
                sender,
                domain,
            )
