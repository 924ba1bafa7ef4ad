"""The authentication side's shared state on a cluster node.

`share_auth_state` replaces, on the server's context, each per-process piece
that must hold across nodes by its shared twin (`join_cluster` calls it before
the modules load, when nothing has used them yet):

* brute-force protection (`ctx.auth_throttle`, and the login gate's reference to
  it) and the registration limits (`ctx.registration_throttle`), and each
  host's ANONYMOUS login windows: `cluster/throttle.py`;
* credential-cache invalidation: `cluster/notify.py`'s feed, which the account
  services of this node (`accounts/server.py`) publish through;

and leaves alone what is per process on purpose (the reasons are in
docs/cluster.md: login slots of attempts being evaluated, memo keys of proven
passwords, the dummy password unknown users' PLAIN attempts are checked
against).  Installation secrets are the database's already (`SecretStore`:
SASL's unknown-user secret, the XEP-0078 decoy secret, stream token keys, the
admin digest nonce secret), the same on every node.

The stream authority's change signals (`cluster/signal.py`) are made where the
stream authority is opened: `StreamSignals(node)` in place of `StampSignal`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chatgate.accounts.server import internal_provider_of
from chatgate.auth.internal import InternalProvider
from chatgate.auth.throttle import AuthThrottle, RegistrationThrottle
from chatgate.cluster.notify import CredentialsFeed
from chatgate.cluster.throttle import (
    ClusterAuthThrottle,
    ClusterRegistrationThrottle,
    RedisRecorder,
)

if TYPE_CHECKING:
    from chatgate.cluster.node import ClusterNode
    from chatgate.context import ServerContext

__all__ = ["share_auth_state"]

log = logging.getLogger(__name__)


async def share_auth_state(ctx: ServerContext, node: ClusterNode) -> None:
    """Put the cluster's throttles and credential notifier on `ctx` (module docstring)."""
    config = ctx.config
    recorder = RedisRecorder(node)  # one pipeline per loop turn for every throttle
    old = ctx.auth_throttle
    attempt_ttl = old.attempt_ttl if isinstance(old, AuthThrottle) else config.auth.auth_timeout
    throttle = ClusterAuthThrottle(node, config.auth.throttle, attempt_ttl, recorder=recorder)
    ctx.auth_throttle = throttle
    ctx.login_gate.throttle = throttle
    ctx.registration_throttle = ClusterRegistrationThrottle(
        node, config.auth.throttle, recorder=recorder
    )
    for domain, host in ctx.hosts.items():
        limit = host.anonymous_limit
        if limit is not None and type(limit.windows) is RegistrationThrottle:  # in-process
            # the host's numbers, in windows shared under the host's name
            limit.windows = ClusterRegistrationThrottle(
                node, limit.options, recorder=recorder, name=f"anonymous:{domain}"
            )

    def providers() -> list[InternalProvider]:
        return [h.provider for h in ctx.hosts.values() if isinstance(h.provider, InternalProvider)]

    CredentialsFeed(
        node, config.data_dir, lambda domain: internal_provider_of(ctx, domain), providers
    )
    node.on_close(recorder.drain)  # what was counted last reaches Redis before leaving
    await node.subscribed()  # no login before the other nodes' counts can arrive
    throttle.resync()  # and the counts made before this node started (in the background)
    log.info("cluster: login throttles, registration limits and credential changes shared")
