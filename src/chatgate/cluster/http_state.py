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

if TYPE_CHECKING:
    from chatgate.cluster.node import ClusterNode
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)


async def share_http_state(ctx: ServerContext, node: ClusterNode) -> None:
    """Prepare the HTTP side's shared state (called once by `join_cluster`)."""
