"""Change signals (`streams.stores.ChangeSignal`) that reach every node of a cluster.

The stream authority's rule book, keys and revocations are cached in every
process and re-read when their signal says "changed".  The stamp file
(`streams/signal.py`) reaches the processes of one data directory; a node of a
cluster also needs the changes made on the other machines.

`ClusterSignal` is a local signal (the stamp, so that `chatgate streams ...` on
this host keeps working) plus a Redis channel: raising it raises the local
signal and publishes; a message from another node counts as a change for every
watcher of this node.  Each watcher still reports a change once (the contract
of `ChangeSignal`); the watchers of one name share one subscription
(`SharedChanges`).  Pub/sub delivers at most once, so after Redis returns every
watcher reports a change (the caches re-read), and a raise that could not be
published is published then.  Raising never waits: the publication is a task.

`chatgate streams ...` is not a node: `CommandLineSignals` raise the stamp and
publish through a connection of their own (and fail loudly when they cannot).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import redis
from redis.exceptions import RedisError

from chatgate.cluster.node import ClusterNode, ClusterUnavailable
from chatgate.cluster.options import ClusterOptions
from chatgate.streams.signal import StampSignal, WatchableSignal

__all__ = [
    "ClusterSignal",
    "CommandLineSignal",
    "CommandLineSignals",
    "SharedChanges",
    "SignalNotAnnounced",
    "StreamSignals",
]

log = logging.getLogger(__name__)


class SharedChanges:
    """One signal name's channel on this node: counts the changes other nodes
    announce (and resynchronisations), publishes this node's."""

    def __init__(self, node: ClusterNode, name: str) -> None:
        self.node = node
        self.name = name
        self.channel = node.key("signal", name)
        #: changes heard of from elsewhere; each watcher compares with what it saw
        self.count = 0
        self._unannounced = False
        self._tasks: set[asyncio.Task[None]] = set()
        node.subscribe(self.channel, self._received)
        node.on_reconnect(self._reconnected)

    def _received(self, data: bytes) -> None:
        if data != self.node.name.encode():
            self.count += 1

    def announce(self) -> None:
        """Publish a change made here (in the background: raising never waits)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._unannounced = True  # no loop: told at the next reconnection
            return
        task = loop.create_task(self._publish())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self) -> None:
        try:
            await self.node.publish(self.channel, self.node.name.encode())
        except ClusterUnavailable as exc:
            if not self._unannounced:
                log.warning(
                    "cluster: a change of %s not told to the other nodes (%s): told when"
                    " Redis returns",
                    self.name,
                    exc,
                )
            self._unannounced = True

    async def _reconnected(self) -> None:
        self.count += 1  # changes may have been missed: re-read
        if self._unannounced:
            self._unannounced = False
            await self._publish()


class ClusterSignal:
    """`ChangeSignal` of a node: `local` (the stamp) and the cluster's channel."""

    def __init__(self, shared: SharedChanges, local: WatchableSignal) -> None:
        self._shared = shared
        self._local = local
        self._seen = shared.count

    def watcher(self) -> ClusterSignal:
        """Another watcher of the same changes, with its own memory of what it saw."""
        return ClusterSignal(self._shared, self._local.watcher())

    def raise_(self) -> None:
        self._local.raise_()
        self._shared.announce()

    def changed(self) -> bool:
        local = self._local.changed()  # asked every time: it forgets when asked
        count = self._shared.count
        if count == self._seen:
            return local
        self._seen = count
        return True


class StreamSignals:
    """Makes the stream authority's signals on a node: one `SharedChanges` per name,
    each signal over the stamp file of that name in `data_dir`.  Call it where
    `StampSignal(data_dir, name)` is made today."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        self._shared: dict[str, SharedChanges] = {}

    def __call__(self, data_dir: Path, name: str) -> ClusterSignal:
        shared = self._shared.get(name)
        if shared is None:
            shared = self._shared[name] = SharedChanges(self._node, name)
        return ClusterSignal(shared, StampSignal(data_dir, name))


class SignalNotAnnounced(OSError):
    """The change is stored, but the cluster's nodes could not be told."""


class CommandLineSignal:
    """`ChangeSignal` of `chatgate streams ...` when `[cluster] enabled`: the stamp (this
    host's processes), then the cluster's channel, through a connection opened for
    the one message.  Raises `SignalNotAnnounced` when Redis cannot be told."""

    def __init__(self, options: ClusterOptions, local: WatchableSignal, name: str) -> None:
        self._options = options
        self._local = local
        self._name = name

    def watcher(self) -> CommandLineSignal:
        return CommandLineSignal(self._options, self._local.watcher(), self._name)

    def changed(self) -> bool:
        return self._local.changed()  # a command does not cache across nodes' changes

    def raise_(self) -> None:
        self._local.raise_()
        client = redis.Redis.from_url(self._options.redis_url, socket_connect_timeout=2.0)
        try:
            client.publish(self._options.key_prefix + f"signal:{self._name}", f"cli-{os.getpid()}")
        except (RedisError, OSError) as exc:
            raise SignalNotAnnounced(
                f"the change is stored, but the cluster's Redis could not be told ({exc}):"
                " nodes on other machines re-read it when they reconnect to Redis or restart"
            ) from exc
        finally:
            client.close()


class CommandLineSignals:
    """`SignalFactory` of the command line on a cluster (`CommandLineSignal`s)."""

    def __init__(self, options: ClusterOptions) -> None:
        self._options = options

    def __call__(self, data_dir: Path, name: str) -> CommandLineSignal:
        return CommandLineSignal(self._options, StampSignal(data_dir, name), name)
