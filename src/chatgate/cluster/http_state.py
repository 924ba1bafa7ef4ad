"""The HTTP side's shared state when clustered: what `join_cluster` checks at
start, and the factories the HTTP listener, the admin site's digest methods and
the stream service ask for (each is made where its user is built, from
`ctx.cluster`; the context has no slot for them).

What is shared, and where it lives:

- BOSH sessions stay in the process that created them (held requests, timers,
  the XMPP session); a request reaching another node is forwarded to the owner
  (`cluster/bosh.py`, `bosh_forwarding`, made by `http/listener.py`);
- the live stream registry is in Redis (`cluster/live_streams.py`, made by
  `streams/service.py` when given the node);
- the stream authority's change signal (keys, rules, revocations) reaches every
  node (`cluster/signal.py`, likewise); one-time token uses, revocations,
  keys and rules are in the shared database already;
- digest nonce counts are in Redis (`cluster/nonces.py`, `nonce_counts`, asked by
  `http/auth/registry.py`).

What stays per node, on purpose: connection and in-flight limits per address
(they protect this process's sockets and memory), the admin site's bound on
concurrent password hashes (this process's memory) and its memo of proven Basic
passwords (keyed by the stored hash: a change anywhere misses it), the
remotehttp fallback period (whether this node reaches the service is this
node's finding), decision counters, statistics and /metrics (Prometheus scrapes
each node).

Must not: be imported when `[cluster] enabled` is false.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chatgate.http.auth.nonces import LocalNonceCounts, NonceCounts

if TYPE_CHECKING:
    from chatgate.cluster.bosh import BoshForwarding
    from chatgate.cluster.node import ClusterNode
    from chatgate.context import ServerContext
    from chatgate.http.bosh import BoshEndpoint
    from chatgate.http.options import HttpOptions

log = logging.getLogger(__name__)


async def share_http_state(ctx: ServerContext, node: ClusterNode) -> None:
    """Check at start what the shared HTTP state needs of Redis (called once by
    `join_cluster`): Lua scripting, which the live registry and the nonce counts
    use for their atomic claims.  A Redis without it (some managed offerings
    disable EVAL) stops the start with a clear error rather than answering every
    media server's hook 503 later."""
    from redis.exceptions import RedisError

    from chatgate.cluster.node import ClusterUnavailable

    try:
        ok = await node.redis.eval("return 1", 0)
    except (RedisError, OSError) as exc:
        raise ClusterUnavailable(
            f"[cluster] Redis does not run Lua scripts ({exc}): the live stream registry"
            " and digest nonce counts need EVAL"
        ) from exc
    if int(ok) != 1:
        raise ClusterUnavailable("[cluster] Redis answered a Lua script wrongly")


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


def nonce_counts(node: ClusterNode | None, lifetime: float) -> NonceCounts:
    """Digest nonce counts: shared in Redis on a cluster node (`cluster/nonces.py`),
    this process's table otherwise."""
    if node is None:
        return LocalNonceCounts(lifetime)
    from chatgate.cluster.nonces import RedisNonceCounts

    return RedisNonceCounts(node, lifetime)
