"""The HTTP side's shared state when clustered: what `join_cluster` sets up at
start, and the factories the HTTP listener and the stream service ask for.

What is shared, and where it lives:

- BOSH sessions stay in the process that created them (held requests, timers,
  the XMPP session); a request reaching another node is forwarded to the owner
  (`cluster/bosh.py`);
- the live stream registry is in Redis (`cluster/live_streams.py`);
- digest nonce counts are in Redis (`cluster/nonces.py`).

Must not: be imported when `[cluster] enabled` is false.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chatgate.http.auth.nonces import LocalNonceCounts, NonceCounts

if TYPE_CHECKING:
    from chatgate.cluster.bosh import BoshForwarding
    from chatgate.cluster.live_streams import RedisLiveStreams
    from chatgate.cluster.node import ClusterNode
    from chatgate.cluster.signal import StreamSignals
    from chatgate.context import ServerContext
    from chatgate.http.bosh import BoshEndpoint
    from chatgate.http.options import HttpOptions
    from chatgate.streams.live import LiveLimits

log = logging.getLogger(__name__)


async def share_http_state(ctx: ServerContext, node: ClusterNode) -> None:
    """Prepare the HTTP side's shared state (called once by `join_cluster`)."""


def bosh_forwarding(
    node: ClusterNode, endpoint: BoshEndpoint, options: HttpOptions
) -> BoshForwarding:
    """Forwarding for `endpoint`: its new sids carry this node's tag, requests of
    other nodes' sessions go there (`cluster/bosh.py`).  Bounded by what the
    endpoint's own sessions may hold at once, and by `[cluster]
    forward_queue_bytes` of bodies in flight."""
    from chatgate.cluster.bosh import BoshForwarding

    bosh = options.bosh
    forwarding = BoshForwarding(
        node,
        endpoint,
        max_in_flight=bosh.max_sessions * (bosh.max_hold + 1),
        max_bytes=node.options.forward_queue_bytes,
        max_body=options.max_request_size,
    )
    endpoint.elsewhere = forwarding
    return forwarding


def shared_live_streams(node: ClusterNode, limits: LiveLimits) -> RedisLiveStreams:
    """The live stream registry every node shares (`cluster/live_streams.py`)."""
    from chatgate.cluster.live_streams import RedisLiveStreams

    return RedisLiveStreams(node.redis, node.key("live", ""), limits)


def stream_signals(node: ClusterNode) -> StreamSignals:
    """The stream authority's change signals, heard by every node
    (`cluster/signal.py`)."""
    from chatgate.cluster.signal import StreamSignals

    return StreamSignals(node)


def nonce_counts(node: ClusterNode | None, lifetime: float) -> NonceCounts:
    """Digest nonce counts: shared in Redis on a cluster node (`cluster/nonces.py`),
    this process's table otherwise."""
    if node is None:
        return LocalNonceCounts(lifetime)
    from chatgate.cluster.nonces import RedisNonceCounts

    return RedisNonceCounts(node, lifetime)
