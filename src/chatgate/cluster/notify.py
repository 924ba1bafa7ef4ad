"""Credential changes told to every node of a cluster, over Redis pub/sub.

The credentials stamp file (`auth/internal.py`) reaches the processes of one
data directory only, and a server does not even bump it for a new name (its
own cache learns at once).  So a node whose credential cache is complete would
answer "no such user" for an account registered on another node, keep a
changed password's keys, or let a deleted account log in.

Every change the account service makes (registration, approval, password,
lock, deletion: the command line, the admin API, in-band registration) is
published on one channel as (node, username, domain, kind); every node applies
the changes of the others exactly as the changing node applied its own
(`LocalCredentialsChanged.apply`: `invalidate`, which also makes a complete
cache look a new name up, `pending_added`/`pending_resolved`, and for changes
other than new names the node's own credentials stamp, so that its password
memos and stream-key owners forget too).

Pub/sub delivers at most once.  What a node may have missed is resynchronised
wholesale: after Redis returns (`ClusterNode.on_reconnect`) a node drops its
credential caches (re-loading them in the background, as after a stamp
change), and a node that could not publish a change announces ``*`` (drop
everything) to the others once it can.

`chatgate user ...` is not a node: `CommandLineCredentialsChanged` bumps the
stamp as before and publishes with a connection of its own, and fails loudly
when Redis cannot be told (the change is stored, the nodes do not know).
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chatgate.accounts.notify import (
    ChangeKind,
    CredentialChange,
    CredentialsChanged,
    LocalCredentialsChanged,
    ProviderOf,
)
from chatgate.auth.internal import InternalProvider, bump_credentials_stamp
from chatgate.cluster.node import ClusterNode, ClusterUnavailable
from chatgate.cluster.options import ClusterOptions

__all__ = [
    "CHANNEL",
    "ClusterCredentialsChanged",
    "CommandLineCredentialsChanged",
    "CredentialsFeed",
    "CredentialsNotAnnounced",
    "cluster_notifier",
]

log = logging.getLogger(__name__)

#: The channel's name under the cluster's key prefix.
CHANNEL: Final = "credentials"
#: The kind that tells every node to drop all its cached credentials.
EVERYTHING: Final = "*"


def _channel(prefix: str) -> str:
    return prefix + CHANNEL


def _message(node: str, change: CredentialChange | None) -> bytes:
    if change is None:
        return json.dumps([node, "", "", EVERYTHING]).encode()
    return json.dumps([node, change.username, change.domain, change.kind.value]).encode()


class CredentialsFeed:
    """This node's side of the channel: applies what the other nodes publish, and
    resynchronises after Redis was away.  One per node (`share_auth_state`).

    `providers` gives this node's internal providers (for the wholesale drop);
    `data_dir` is its credentials stamp's folder (None: no stamp)."""

    def __init__(
        self,
        node: ClusterNode,
        data_dir: Path | None,
        provider_of: ProviderOf,
        providers: Callable[[], Iterable[InternalProvider]],
    ) -> None:
        self.node = node
        self.channel = _channel(node.prefix)
        self._data_dir = data_dir
        self._providers = providers
        self.local = LocalCredentialsChanged(data_dir, provider_of, announce_new_names=False)
        #: a change this node made could not be published: tell everyone at reconnection
        self.unannounced = False
        #: changes applied from other nodes (for tests and statistics)
        self.applied = 0
        node.subscribe(self.channel, self._received)
        node.on_reconnect(self._reconnected)
        _feeds[node] = self

    def _received(self, data: bytes) -> None:
        try:
            node, username, domain, kind = json.loads(data)
            if node == self.node.name:
                return  # applied when it was made
            if kind == EVERYTHING:
                self.drop_everything()
            else:
                self.local.apply(CredentialChange(username, domain, ChangeKind(kind)))
        except (ValueError, TypeError, OSError):
            log.exception("cluster: a credentials message could not be applied")
            return
        self.applied += 1

    def drop_everything(self) -> None:
        """Forget every cached credential: this node may have missed changes."""
        for provider in self._providers():
            provider.changed_elsewhere()
        if self._data_dir is not None:
            try:
                bump_credentials_stamp(self._data_dir)  # the memos and key owners
            except OSError:
                log.exception("cluster: could not bump the credentials stamp")

    async def _reconnected(self) -> None:
        self.drop_everything()
        if self.unannounced:
            try:
                await self.node.publish(self.channel, _message(self.node.name, None))
            except ClusterUnavailable:
                return  # the next reconnection tries again
            self.unannounced = False
            log.info("cluster: told every node to re-read credentials changed meanwhile")


#: each node's feed (one node per process; weak, so a closed node's goes)
_feeds: weakref.WeakKeyDictionary[ClusterNode, CredentialsFeed] = weakref.WeakKeyDictionary()


class ClusterCredentialsChanged:
    """`CredentialsChanged` of a node: apply here at once, then publish."""

    def __init__(self, feed: CredentialsFeed) -> None:
        self._feed = feed

    async def credentials_changed(self, change: CredentialChange) -> None:
        feed = self._feed
        feed.local.apply(change)
        try:
            await feed.node.publish(feed.channel, _message(feed.node.name, change))
        except ClusterUnavailable as exc:
            # Stored, applied here; the others drop their caches when this node
            # reaches Redis again (`CredentialsFeed._reconnected`).
            feed.unannounced = True
            log.warning(
                "cluster: %s of %s@%s not told to the other nodes (%s): they re-read"
                " credentials when this node reaches Redis again",
                change.kind.value,
                change.username,
                change.domain,
                exc,
            )


def cluster_notifier(node: ClusterNode, fallback: CredentialsChanged) -> CredentialsChanged:
    """The notifier an account service of this node uses: `ClusterCredentialsChanged`
    over the node's feed; `fallback` when the node has none (auth state not shared)."""
    feed = _feeds.get(node)
    return fallback if feed is None else ClusterCredentialsChanged(feed)


class CredentialsNotAnnounced(OSError):
    """The change is stored, but the cluster's nodes could not be told."""


class CommandLineCredentialsChanged:
    """`CredentialsChanged` of `chatgate user ...` when `[cluster] enabled`: the local
    stamp (processes on this data directory), then the cluster's channel, through
    a connection opened for the one message."""

    def __init__(self, options: ClusterOptions, local: LocalCredentialsChanged) -> None:
        self._options = options
        self._local = local
        self._name = f"cli-{os.getpid()}"

    async def credentials_changed(self, change: CredentialChange) -> None:
        await self._local.credentials_changed(change)
        await self._publish(change, f"{change.username}@{change.domain}: {change.kind.value}")

    async def everything_changed(self) -> None:
        """Many accounts changed at once (`chatgate user import`): every node drops
        its cached credentials (the caller bumps the stamp)."""
        await self._publish(None, "the imported accounts")

    async def _publish(self, change: CredentialChange | None, what: str) -> None:
        client = aioredis.Redis.from_url(self._options.redis_url, socket_connect_timeout=2.0)
        try:
            await client.publish(_channel(self._options.key_prefix), _message(self._name, change))
        except (RedisError, OSError) as exc:
            raise CredentialsNotAnnounced(
                f"{what}: stored, but the cluster's Redis could not be told ({exc}): running"
                " nodes may answer from their caches until Redis is reachable and a node"
                " reconnects or restarts"
            ) from exc
        finally:
            await client.aclose()
