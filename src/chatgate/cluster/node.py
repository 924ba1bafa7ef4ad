"""This process as one node of a cluster: its Redis connection, its heartbeat, and
what it learns about the other nodes.

Every shared piece of state (the session directory, throttles, cache invalidation,
...) uses the one `ClusterNode` of the process instead of a connection of its own:

- `redis`: a redis-py client for commands (one connection pool);
- `subscribe(channel, handler)`: one pub/sub connection fans messages out to the
  handlers, and subscribes again after Redis comes back;
- `on_reconnect(callback)`: Redis was unreachable and is back (and may have lost
  everything, as a restarted Redis without persistence has): each piece puts its
  own state back;
- `on_node_gone(callback)`: a node stopped sending heartbeats for `node_timeout`
  seconds (killed, frozen, cut off), or restarted (a new boot id under its name):
  what it held is gone.

Liveness is Redis keys with an expiry (`node:NAME` = boot id, refreshed every
`heartbeat_interval`), never a consensus of our own.  While this node cannot reach
Redis it judges nobody: it knows nothing; after Redis returns it waits a whole
`node_timeout` before it judges again, so the others have time to beat.  A node
that starts, is counted in or leaves also publishes its name on `members`, and
the others look at the heartbeats then instead of at their next beat (the
heartbeats stay the truth: the news only says when to look).

A node starts in two steps: `connect` (Redis reached, channels subscribed, the
others learnt; it beats `joining:NAME` instead of `node:NAME`), then `announce`
(it beats `node:NAME`: the others count it in).  `Server.start` announces once
the modules are set up: a node the others count as a room owner or a session's
home has its handlers in place, so nothing sent to it in its first moments finds
no handler and is lost.  A joining node is in the set of names from the start,
so the session directory's events reach it before it reads the others'
snapshots; and it removes the heartbeat a killed previous run left under its
name, so the others drop that run at their next look instead of while this one
starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chatgate.cluster.options import ClusterOptions
from chatgate.cluster.resp import OnReply, RespConnection, RespError, Script, open_connection

log = logging.getLogger(__name__)

MessageHandler = Callable[[bytes], None]
Callback = Callable[[], Awaitable[None] | None]
NodeCallback = Callable[[str], Awaitable[None] | None]

#: Seconds between attempts to reach Redis again after losing it.
RECONNECT_DELAY = 0.5
#: Seconds a leaving node gives Redis to take its heartbeat away (a hung Redis
#: must not hold a stop, or a failed start, for redis-py's socket timeouts).
LEAVE_TIMEOUT = 2.0

#: Remove this run's heartbeats (`node:NAME`, `joining:NAME`) and its name from the
#: set of nodes; a key another run of the same name holds is left, and the name
#: with it.  KEYS: node key, joining key, set of nodes; ARGV: boot id, name.
_LEAVE = """
local others = 0
for i = 1, 2 do
  local beat = redis.call('GET', KEYS[i])
  if beat == ARGV[1] then
    redis.call('DEL', KEYS[i])
  elseif beat then
    others = 1
  end
end
if others == 0 then
  redis.call('SREM', KEYS[3], ARGV[2])
end
return others
"""


class _Joining(enum.Enum):
    """The heartbeat of a node still starting (`joining:NAME`): not counted in."""

    JOINING = enum.auto()


_JOINING = _Joining.JOINING


class ClusterUnavailable(Exception):
    """Redis cannot be reached: cross-node work is refused (the caller says what)."""


class ClusterNode:
    """This node: its name, its Redis, its heartbeat (see the module docstring)."""

    def __init__(self, options: ClusterOptions, *, name: str | None = None) -> None:
        self.options = options
        self.name = name or options.node_name()
        #: unique per run: a node restarted under its name is a new node to the others
        self.boot_id = os.urandom(8).hex()
        self.prefix = options.key_prefix
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            options.redis_url,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            health_check_interval=0,
        )
        self._handlers: dict[str, list[MessageHandler]] = {}
        self._reconnect: list[Callback] = []
        self._resynced: list[Callback] = []
        self._gone: list[NodeCallback] = []
        self._joined: list[NodeCallback] = []
        self._closing: list[Callback] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = False
        self._caught_up = asyncio.Event()
        self._lost = asyncio.Event()
        #: losses of Redis handled since start (counted before `connected` is True
        #: again): what was learned over pub/sub before one cannot be trusted
        #: after it, as messages may have been missed
        self.losses = 0
        #: wall-clock time of the last of them (0.0: none yet)
        self.lost_at = 0.0
        #: connected, and every `on_reconnect` callback has run since the last loss
        self._settled = False
        #: the others count this node in: it beats `node:NAME` (`announce`)
        self._announced = False
        #: a heartbeat of this run was written (there is something to take back)
        self._beaten = False
        #: Redis given up for good (`abandon`)
        self._abandoned = False
        #: one look at the heartbeats at a time (`announce` looks at once)
        self._judging = asyncio.Lock()
        self._stopping = False
        #: wakes `_reconnects`: a connection lost, or a channel to subscribe
        self._attention = asyncio.Event()
        self._commands: RespConnection | None = None
        self._subscriber: RespConnection | None = None
        self._channels: set[str] = set()
        #: monotonic time before which nobody is judged dead (just (re)connected)
        self._judge_after = 0.0
        #: the boot id last seen of each other node
        self._known: dict[str, bytes] = {}
        self._joining: frozenset[str] = frozenset()
        #: the boot id of each node judged gone or restarted (what its run left is its)
        self.departed: dict[str, bytes] = {}
        #: a look at the heartbeats another node's news asked for (`_members_changed`)
        self._news_look: asyncio.Task[None] | None = None
        self._news_again = False
        self.subscribe(self.key("members"), self._members_changed)

    # ------------------------------------------------------------ names

    def key(self, *parts: str) -> str:
        """A Redis key (or channel) of this cluster: the prefix, then `parts` joined by ':'."""
        return self.prefix + ":".join(parts)

    @property
    def inbox(self) -> str:
        """This node's own channel (what other nodes send to it alone)."""
        return self.key("node", self.name, "in")

    def inbox_of(self, node: str) -> str:
        return self.key("node", node, "in")

    @property
    def connected(self) -> bool:
        """Redis answered the last heartbeat and the subscriptions are in place,
        and no loss is known yet (one noticed while the reconnect loop is busy
        with the resync callbacks counts at once: cross-node work is refused,
        not written to a dead connection)."""
        return self._connected and not self._lost.is_set()

    @property
    def others(self) -> frozenset[str]:
        """The other nodes alive at the last look."""
        return frozenset(self._known)

    async def answers(self, timeout: float = 1.0) -> bool:
        """Whether Redis answers a PING within `timeout`, tried every 0.2 s (a
        failure that passed, a Redis restarting, or one that hangs?)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(self.redis.ping(), left)
                return True
            except (RedisError, OSError, TimeoutError):
                await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
        return False

    def abandon(self) -> None:
        """Give Redis up for good: it failed this node where it could not go on (its
        start) and does not answer.  Nothing more goes through it, this node hands
        nothing back as it stops and leaves its heartbeat to expire: the others
        count it out after `node_timeout`."""
        self._abandoned = True
        self._connected = False  # (the reconnect loop has nothing to say at the stop)
        self._lost.set()
        # No more heartbeats nor reconnects: a Redis back during the stop must not
        # get this node's heartbeat written again, nobody taking it back.
        self._halt()

    def _halt(self) -> None:
        """Stop the heartbeat and reconnect loops (the flag too: redis-py may swallow
        a cancellation that comes during a command) and close the lean connections:
        what waits on them fails now, and what comes next at once."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for connection in (self._commands, self._subscriber):
            if connection is not None:
                connection.close()

    @property
    def counted_in(self) -> bool:
        """The others count this node in (or will at their next look): `announce`
        has begun, and Redis was not abandoned.  A node that stops before that
        has nothing to hand back."""
        return self._announced and not self._abandoned

    @property
    def joining(self) -> frozenset[str]:
        """The other nodes still starting at the last look (`joining:NAME`): not
        counted in yet; they will be once set up, unless their start fails."""
        return self._joining

    # ------------------------------------------------------------ registration

    def subscribe(self, channel: str, handler: MessageHandler) -> None:
        """Call `handler(data)` for each message published on `channel` (a full name,
        from `key`), from now on and after every reconnection.  Register before
        `start` where possible; a later subscription takes effect within a second."""
        self._handlers.setdefault(channel, []).append(handler)
        self._caught_up.clear()
        self._attention.set()

    async def subscribed(self) -> None:
        """Wait until every channel given to `subscribe` so far is subscribed (a
        fraction of a second after a late `subscribe`)."""
        await asyncio.wait_for(self._caught_up.wait(), 10)

    def on_reconnect(self, callback: Callback) -> None:
        self._reconnect.append(callback)

    def on_resynced(self, callback: Callback) -> None:
        """After Redis returned, once every `on_reconnect` callback has run: what
        must see every shared state resynchronised (block lists, rosters, the
        session mirror) before it acts."""
        self._resynced.append(callback)

    def on_node_gone(self, callback: NodeCallback) -> None:
        self._gone.append(callback)

    def on_node_joined(self, callback: NodeCallback) -> None:
        """Called with a node's name when its heartbeat is first seen (or seen again
        after it was judged gone or restarted)."""
        self._joined.append(callback)

    def on_close(self, callback: Callback) -> None:
        """Called (in order) when the node leaves, before its heartbeat goes."""
        self._closing.append(callback)

    async def publish(self, channel: str, data: bytes) -> int:
        """Publish; returns how many subscribers got it (0: nobody listens there).
        Raises `ClusterUnavailable` when Redis cannot be reached."""
        try:
            return int(await self.send("PUBLISH", channel, data))
        except (RespError, ConnectionError, OSError) as exc:
            raise ClusterUnavailable(str(exc)) from exc

    def unsent(self) -> int:
        """Bytes of commands the command connection has not yet handed to the socket."""
        connection = self._commands
        return 0 if connection is None else connection.unsent()

    def send(
        self, *args: bytes | str | int, now: bool = False, deferrable: bool = False
    ) -> asyncio.Future[Any]:
        """A command on the lean connection (`cluster/resp.py`): written with the
        others of this loop turn, its reply in the future (ConnectionError when
        Redis is away).  For the hot paths; anything else may use `redis`."""
        connection = self._commands
        if connection is None or connection.closed:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(ConnectionError("Redis unreachable"))
            return future
        return connection.send(*args, now=now, deferrable=deferrable)

    def call(self, command: bytes, on_reply: OnReply, *, deferrable: bool = False) -> None:
        """A packed command on the lean connection, its reply (or the error, a
        ConnectionError when Redis is away) handed to `on_reply` as it is read
        (`RespConnection.call`)."""
        connection = self._commands
        if connection is None or connection.closed:
            on_reply(ConnectionError("Redis unreachable"))
            return
        connection.call(command, on_reply, deferrable=deferrable)

    async def run_script(self, script: Script, keys: list[Any], args: list[Any]) -> Any:
        """A Lua script on the lean connection: EVALSHA, and EVAL once when Redis
        no longer knows it (restarted or flushed).  Errors as for `send`."""
        try:
            return await self.send("EVALSHA", script.sha, len(keys), *keys, *args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.send("EVAL", script.source, len(keys), *keys, *args)

    # ------------------------------------------------------------ life

    async def start(self) -> None:
        """`connect`, then `announce`: for a node with nothing to set up between."""
        await self.connect()
        await self.announce()

    async def connect(self) -> None:
        """Reach Redis (or fail with a clear error: a node that cannot join must not
        start as if alone), learn which nodes are alive, open the connections,
        subscribe and beat as a node still joining: the others do not count it in
        yet (`announce`), but they do send it the session directory's events."""
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(
                f"[cluster] redis_url {self._safe_url()} cannot be reached: {exc}"
            ) from exc
        try:
            await self._join()
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(
                f"[cluster] redis_url {self._safe_url()} failed while joining: {exc}"
            ) from exc

    async def _join(self) -> None:
        await self._beat()
        beats = await self._heartbeats_read()
        if beats.pop(self.name, _JOINING) is not _JOINING:
            # A killed previous run under this name: the others drop it at their
            # next look, not when its heartbeat expires (while this run starts).
            log.warning("cluster: removed the heartbeat a previous run of %s left", self.name)
            await self.redis.delete(self.key("node", self.name))
        self._known = {node: beat for node, beat in beats.items() if isinstance(beat, bytes)}
        self._joining = frozenset(node for node, beat in beats.items() if beat is _JOINING)
        await self._open_connections()
        self._tasks = [
            asyncio.create_task(self._reconnects(), name="cluster-reconnect"),
            asyncio.create_task(self._heartbeats(), name="cluster-heartbeat"),
        ]
        self._connected = True
        self._settled = True
        await self._tell_members()

    async def announce(self) -> None:
        """From now on the other nodes count this node in (room owners, forwarding,
        broadcasts): it beats `node:NAME`.  Called once every handler of other
        nodes' messages is in place."""
        await self.subscribed()
        self._announced = True
        try:
            await self._beat()
            # A node counted in before this one is known before anything relies on
            # this one being counted in (the others hand it rooms after their look).
            await self._judge()
            await self._tell_members()
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(
                f"[cluster] redis_url {self._safe_url()} cannot be reached: {exc}"
            ) from exc
        log.info(
            "cluster: node %s joined %s (%d other nodes alive)",
            self.name,
            self._safe_url(),
            len(self._known),
        )

    async def close(self) -> None:
        """Leave: stop beating and listening, and remove this node's heartbeat so the
        others need not wait for it to expire."""
        await self._run_all(self._closing)
        self._halt()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._news_look is not None:
            self._news_look.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._news_look
        if self._beaten and not self._abandoned:
            try:
                await asyncio.wait_for(self._take_heartbeat_back(), LEAVE_TIMEOUT)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning(
                    "cluster: could not leave at once (%s): the heartbeat expires",
                    exc or type(exc).__name__,
                )
        await self.redis.aclose()
        self._connected = False

    # ------------------------------------------------------------ heartbeat

    async def _beat(self) -> None:
        ttl_ms = int(self.options.node_timeout * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            if self._announced:
                pipe.set(self.key("node", self.name), self.boot_id, px=ttl_ms)
                pipe.delete(self.key("joining", self.name))
            else:
                pipe.set(self.key("joining", self.name), self.boot_id, px=ttl_ms)
            pipe.sadd(self.key("nodes"), self.name)
            if self._settled:
                # "my claims are final at this time": refreshed while connected and
                # resynchronised, so it stops moving from a loss until the resync
                # after it (another node's `ClusterSessionDirectory._contest` reads it)
                pipe.set(self.key("settled", self.name), repr(time.time()), px=10 * ttl_ms)
            self._beaten = True  # (a write may land even if its answer is lost)
            await pipe.execute()

    async def _take_heartbeat_back(self) -> None:
        """This run's heartbeats and name out of Redis, then the news: the others
        count this node out now, not when its heartbeat expires.  A run started
        since under the same name (a misconfigured duplicate) keeps its own."""
        keys = [self.key("node", self.name), self.key("joining", self.name), self.key("nodes")]
        await self.redis.eval(_LEAVE, 3, *keys, self.boot_id, self.name)
        await self._tell_members()

    async def _tell_members(self) -> None:
        """Tell the other nodes this one's heartbeat changed (joining, counted in,
        gone), so they look now rather than at their next beat: a node is counted
        in (a room owner, a receiver of broadcasts) before its listeners open, and
        out as soon as it has left."""
        await self.redis.publish(self.key("members"), self.name)

    def _members_changed(self, data: bytes) -> None:
        """Another node's news (`_tell_members`): one look at the heartbeats, soon;
        news arriving during it asks for one more after it."""
        if data == self.name.encode() or self._stopping or not self._connected:
            return
        if self._news_look is not None and not self._news_look.done():
            self._news_again = True
            return
        self._news_look = asyncio.create_task(self._look_on_news(), name="cluster-news")

    async def _look_on_news(self) -> None:
        self._news_again = True
        while self._news_again and not self._stopping:
            self._news_again = False
            try:
                await self._judge()
            except (RedisError, OSError):
                return  # the heartbeat loop notices Redis gone, and says so

    def settled_key(self, node: str) -> str:
        return self.key("settled", node)

    async def _heartbeats_read(self) -> dict[str, bytes | _Joining | None]:
        """Every name in the set of nodes, and its heartbeat: the boot id of a node
        counted in, `_JOINING` for one still starting, None for neither (gone)."""
        names = sorted(_text(n) for n in await self.redis.smembers(self.key("nodes")))
        if not names:
            return {}
        keys = [self.key("node", n) for n in names] + [self.key("joining", n) for n in names]
        values = await self.redis.mget(keys)
        beats, joining = values[: len(names)], values[len(names) :]
        return {
            name: _raw(beat) if beat is not None else (_JOINING if starting is not None else None)
            for name, beat, starting in zip(names, beats, joining, strict=True)
        }

    async def _heartbeats(self) -> None:
        interval = self.options.heartbeat_interval
        # `_stopping`, not only the cancellation: redis-py may swallow a
        # CancelledError that arrives during a command, and the loop must end anyway.
        while not self._stopping:
            try:
                await self._beat()
                if self._connected:  # else `_reconnects` says when we are back
                    await self._judge()
            except (RedisError, OSError) as exc:
                if self._connected:
                    log.warning(
                        "cluster: Redis unreachable (%s): serving this node's sessions only,"
                        " cross-node work refused until it returns",
                        exc,
                    )
                    self._lost.set()  # connect again from scratch (a hung Redis too)
                    self._attention.set()
            # Never an await in a `finally`: a cancellation there may be lost (3.11).
            await asyncio.sleep(interval)

    async def _judge(self) -> None:
        """Nodes whose heartbeat is gone, or whose boot id changed (restarted), are
        gone.  Just after Redis returns a missing heartbeat is not judged (the
        others may not have beaten yet), but a changed boot id always is: a node
        restarted meanwhile must not keep its old run's sessions in the mirrors."""
        async with self._judging:
            await self._look()

    async def _look(self) -> None:
        beats = await self._heartbeats_read()
        beats.pop(self.name, None)
        self._joining = frozenset(node for node, beat in beats.items() if beat is _JOINING)
        grace = time.monotonic() < self._judge_after
        for node, boot in list(self._known.items()):
            # (`_JOINING`: a new run under its name is starting, proof of a restart
            # even in the grace after Redis returned, as a new boot id is)
            now = beats.get(node)
            if now == boot or (now is None and grace):
                continue
            del self._known[node]
            self.departed[node] = boot
            log.warning("cluster: node %s %s", node, "is gone" if now is None else "restarted")
            await self._run_all(self._gone, node)
        for node, beat in beats.items():
            if beat is None:
                if not grace:
                    # Gone, or a node that died while still joining (nobody knew
                    # it): whoever sees it first tidies the set; harmless twice.
                    await self.redis.srem(self.key("nodes"), node)
            elif isinstance(beat, bytes) and node not in self._known:
                self._known[node] = beat
                log.info("cluster: node %s joined", node)
                await self._run_all(self._joined, node)

    # ------------------------------------------------------------ pub/sub

    async def _open_connections(self) -> None:
        """The command connection and the subscriber, subscribed to every channel."""
        lost = self._lost

        attention = self._attention

        def on_lost(exc: Exception | None) -> None:
            lost.set()
            attention.set()

        self._commands = await open_connection(
            self.options.redis_url,
            on_lost=on_lost,
            write_interval=self.options.command_write_interval,
        )
        self._subscriber = await open_connection(
            self.options.redis_url, on_message=self._deliver, on_lost=on_lost
        )
        self._channels = set()
        await self._subscribe_missing()

    async def _subscribe_missing(self) -> None:
        subscriber = self._subscriber
        assert subscriber is not None
        for channel in list(self._handlers):
            if channel not in self._channels:
                await asyncio.wait_for(subscriber.subscribe(channel), 5)
                self._channels.add(channel)
        self._caught_up.set()

    def _deliver(self, channel: bytes, data: bytes) -> None:
        name = channel.decode()
        for handler in self._handlers.get(name, ()):
            try:
                handler(data)
            except Exception:  # one bad message must not stop the node
                log.exception("cluster: handler for %s failed", name)

    async def _reconnects(self) -> None:
        """Subscribe late channels; after a lost connection, connect again, then
        tell the `on_reconnect` callbacks (Redis may have forgotten everything)."""
        while not self._stopping:
            await self._attention.wait()
            self._attention.clear()
            if not self._lost.is_set():
                if not self._caught_up.is_set() and self._subscriber is not None:
                    with contextlib.suppress(Exception):
                        await self._subscribe_missing()
                continue
            self.losses += 1
            self.lost_at = time.time()
            self._settled = False
            if self._connected:
                log.warning(
                    "cluster: lost Redis: serving this node's sessions only,"
                    " cross-node work refused until it returns"
                )
            self._connected = False
            for connection in (self._commands, self._subscriber):
                if connection is not None:
                    connection.close()
            while True:
                await asyncio.sleep(RECONNECT_DELAY)
                self._lost.clear()
                try:
                    await self._open_connections()
                    await self._beat()
                except (RedisError, OSError, ConnectionError, RespError, TimeoutError):
                    continue
                break
            self._judge_after = time.monotonic() + self.options.node_timeout
            self._connected = True
            log.warning("cluster: Redis reachable again: resynchronising")
            await self._run_all(self._reconnect)
            if not self._lost.is_set():  # else: after the next reconnection
                self._settled = True
                await self._run_all(self._resynced)

    async def _run_all(
        self, callbacks: list[Callable[..., Awaitable[None] | None]], *args: str
    ) -> None:
        for callback in callbacks:
            try:
                result = callback(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("cluster: %s failed", getattr(callback, "__qualname__", callback))

    def _safe_url(self) -> str:
        """The Redis URL without its password, for logs."""
        url = self.options.redis_url
        scheme, sep, rest = url.partition("://")
        if "@" in rest:
            rest = "***@" + rest.split("@", 1)[1]
        return scheme + sep + rest


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
