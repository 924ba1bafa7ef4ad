"""A lean Redis connection for the cluster's hot paths: forwarding stanzas, announcing
session changes, claiming sessions, and reading pub/sub.

redis-py's asyncio client costs tens of microseconds per command and per message
read (a coroutine, a timeout context and a connection check each); forwarding
pays that once per batch of stanzas, and a busy node sends thousands of batches
a second.  Here a command is packed by hiredis (`pack_command`), written with
the others of the same loop turn in one `write`
(a login's claim and release and presence changes, while busy, at most once per
`write_interval`: each write wakes Redis, which costs the sender more than the
command), and its reply parsed by
hiredis's C reader and matched to its future in order (Redis answers a
connection's commands in order).  A subscriber connection hands each pushed
message straight to a callback from `data_received`: no task, no await per
message.  Everything else (scripts loaded once, heartbeats, admin) keeps
redis-py, which is the better tool where speed does not matter.

A lost connection fails the pending futures with `ConnectionError` and calls
`on_lost`; the owner (`ClusterNode`) opens a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis

Push = Callable[[bytes, bytes], None]
#: what `RespConnection.call` hands a reply (or the error in its place) to
OnReply = Callable[[Any], None]


class Script:
    """A Lua script known by its SHA-1 (what EVALSHA names)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def pack(*args: bytes | str | int) -> bytes:
    """One command in RESP (hiredis's packer)."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


class RespError(Exception):
    """Redis answered a command with an error."""


class RespConnection(asyncio.Protocol):
    """Pipelined commands, replies in order; pub/sub pushes to `on_message`."""

    def __init__(
        self,
        on_message: Push | None = None,
        on_lost: Callable[[Exception | None], None] | None = None,
        write_interval: float = 0.0,
    ) -> None:
        self._reader = hiredis.Reader()
        #: seconds between two writes while busy (`[cluster] command_write_interval`)
        self._write_interval = write_interval
        self._written_at = -write_interval
        self._timer: asyncio.TimerHandle | None = None
        self._pending: deque[asyncio.Future[Any] | OnReply | None] = deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._flush_scheduled = False
        self._on_message = on_message
        self._on_lost = on_lost
        self._subscribed = 0
        self.closed = False

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance.
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        on_message = self._on_message
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if (
                self._subscribed
                and type(reply) is list
                and len(reply) == 3
                and reply[0] == b"message"
                and on_message is not None
            ):
                on_message(reply[1], reply[2])
                continue
            if not pending:
                continue  # a subscription confirmation nobody waits for
            waiting = pending.popleft()
            if not isinstance(waiting, asyncio.Future):
                if waiting is not None:  # a `call`
                    error = isinstance(reply, hiredis.ReplyError)
                    waiting(RespError(str(reply)) if error else reply)
                continue
            if waiting.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                waiting.set_exception(RespError(str(reply)))
            else:
                waiting.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = ConnectionError(f"Redis connection lost: {exc or 'closed'}")
        while self._pending:
            waiting = self._pending.popleft()
            if not isinstance(waiting, asyncio.Future):
                if waiting is not None:
                    waiting(error)
            elif not waiting.done():
                waiting.set_exception(error)
        if self._on_lost is not None:
            self._on_lost(exc)

    # ------------------------------------------------------------ commands

    def send(
        self, *args: bytes | str | int, now: bool = False, deferrable: bool = False
    ) -> asyncio.Future[Any]:
        """Queue a command; its reply (or RespError / ConnectionError) in the future.
        Commands of one loop turn go out in one write at its end, in order; `now`
        writes at once (with whatever is queued before it); a `deferrable` one may
        wait up to `write_interval` after the last write (`_schedule`)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.closed or self._transport is None:
            future.set_exception(ConnectionError("Redis connection closed"))
            return future
        self._out.append(pack(*args))
        self._pending.append(future)
        if now:
            self._flush()
        else:
            self._schedule(deferrable)
        return future

    def call(self, command: bytes, on_reply: OnReply, *, deferrable: bool = False) -> None:
        """Queue a command already in RESP (`pack`); `on_reply` gets
        its reply, or the RespError or ConnectionError, from `data_received` itself:
        no future and no loop turn between the answer and what it decides (a
        login's claim).  `on_reply` must not raise.  `deferrable` as for `send`."""
        if self.closed or self._transport is None:
            on_reply(ConnectionError("Redis connection closed"))
            return
        self._out.append(command)
        self._pending.append(on_reply)
        self._schedule(deferrable)

    def _schedule(self, deferrable: bool) -> None:
        """Write what is queued at the end of this loop turn; but when only
        deferrable commands wait and the last write is less than `write_interval`
        old, once it is that old: every write wakes Redis, and while a node is busy
        (a few thousand logins a second) a write of a few claims and releases costs
        it less than one each.  Whatever goes first takes the others along, so
        commands keep their order."""
        if self._flush_scheduled:
            return
        loop = asyncio.get_running_loop()
        if deferrable:
            if self._timer is not None:
                return
            wait = self._written_at + self._write_interval - loop.time()
            if wait > 0:
                self._timer = loop.call_later(wait, self._flush)
                return
        self._flush_scheduled = True
        loop.call_soon(self._flush)

    def subscribe(self, channel: str) -> asyncio.Future[Any]:
        """Subscribe to one channel (one confirmation, matched to the future);
        this connection then reads pushes and confirmations only."""
        self._subscribed += 1
        return self.send("SUBSCRIBE", channel)

    def unsent(self) -> int:
        """Bytes written but not yet taken by the socket (Redis slow or gone)."""
        transport = self._transport
        return 0 if transport is None or self.closed else transport.get_write_buffer_size()

    def _flush(self) -> None:
        self._flush_scheduled = False
        timer = self._timer
        if timer is not None:  # an earlier write took the deferred commands along
            self._timer = None
            timer.cancel()
        if self._out and self._transport is not None and not self.closed:
            data = b"".join(self._out)
            self._out.clear()
            self._transport.write(data)
            if self._write_interval:
                self._written_at = asyncio.get_running_loop().time()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
        self.closed = True


async def open_connection(
    url: str,
    *,
    on_message: Push | None = None,
    on_lost: Callable[[Exception | None], None] | None = None,
    timeout: float = 2.0,
    write_interval: float = 0.0,
) -> RespConnection:
    """Connect to `url` (redis://[user:password@]host[:port][/db] or unix://PATH),
    authenticate and select the database."""
    parsed = urlparse(url)
    loop = asyncio.get_running_loop()

    def factory() -> RespConnection:
        return RespConnection(on_message, on_lost, write_interval)

    if parsed.scheme == "unix":
        connect = loop.create_unix_connection(factory, parsed.path)
    elif parsed.scheme in ("redis", "rediss"):
        ssl = parsed.scheme == "rediss"
        connect = loop.create_connection(
            factory, parsed.hostname or "127.0.0.1", parsed.port or 6379, ssl=ssl or None
        )
    else:
        raise ValueError(f"unsupported Redis URL scheme {parsed.scheme!r}")
    _transport, connection = await asyncio.wait_for(connect, timeout)
    if parsed.password is not None:
        user = unquote(parsed.username) if parsed.username else None
        password = unquote(parsed.password)
        auth = ("AUTH", user, password) if user else ("AUTH", password)
        await asyncio.wait_for(connection.send(*auth), timeout)
    db = parsed.path.lstrip("/") if parsed.scheme != "unix" else ""
    if db and db != "0":
        await asyncio.wait_for(connection.send("SELECT", db), timeout)
    return connection
