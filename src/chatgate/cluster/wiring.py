"""Joining a cluster at start: each shared piece replaces its local twin on the
server's context.  `Server.start` calls `join_cluster` once the context exists and
before the modules load, when `[cluster] enabled` is true.

Each piece is one call here, in the order they depend on each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatgate.cluster.directory import ClusterSessionDirectory

if TYPE_CHECKING:
    from chatgate.cluster.node import ClusterNode
    from chatgate.context import ServerContext


async def join_cluster(ctx: ServerContext, node: ClusterNode) -> None:
    """Replace the context's per-process state by the cluster's shared state."""
    ctx.cluster = node
    from chatgate.cluster.peers import RedisPeers

    ctx.peers = RedisPeers(node)
    session = ctx.config.session
    directory = ClusterSessionDirectory(
        node, ctx.hooks, session.resource_conflict, session.max_resources
    )
    directory.reroute = lambda stanza, to: ctx.router.deliver_message_to_bare(stanza, to)
    ctx.router.use_directory(directory)
    await directory.start()
    node.on_close(directory.close)
    from chatgate.cluster.account_recheck import recheck_accounts_after_outages

    recheck_accounts_after_outages(ctx, node, directory)
    await node.subscribed()
    from chatgate.cluster.auth_state import share_auth_state

    await share_auth_state(ctx, node)
    from chatgate.cluster.http_state import share_http_state

    await share_http_state(ctx, node)
