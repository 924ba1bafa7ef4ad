"""A lean HTTP/1.1 client for BOSH: a pool of keep-alive connections, one request at a time each.

Why not aiohttp's ClientSession: its request machinery (tracing hooks, cookie jar, header
multidicts, a task per request) costs the generator more CPU per request than a BOSH server
spends answering it, and a BOSH login is six requests. The generator must sustain several times
the fastest server's rate on its one core, so requests are pre-built bytes and responses are
parsed with a few `find`s. It speaks only what the benchmark needs: POST with a body,
`Content-Length` responses, keep-alive; anything else (chunked bodies, non-200 status) fails
loudly rather than being measured wrongly.
"""

from __future__ import annotations

import asyncio

from bench.loadgen.xmpp import XmppError


class HttpError(XmppError):
    """The HTTP exchange itself failed: status, framing or connection."""


class StaleConnection(HttpError):
    """A pooled connection closed before any byte of the response: safe to send again."""


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; `request` writes a whole request and resolves with the body."""

    __slots__ = (
        "_fut",
        "_got",
        "_length",
        "_loop",
        "buf",
        "keep_alive",
        "transport",
        "uses",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self._fut: asyncio.Future[bytes] | None = None
        self._length = -1  # body length once the head is parsed, -1 before
        self._got = False
        self.keep_alive = True
        self.uses = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def request(self, data: bytes) -> asyncio.Future[bytes]:
        assert self.transport is not None
        fut = self._fut = self._loop.create_future()
        self.buf = b""
        self._length = -1
        self._got = False
        self.uses += 1
        self.transport.write(data)
        return fut

    def data_received(self, data: bytes) -> None:
        self._got = True
        buf = self.buf + data if self.buf else data
        if self._length < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            try:
                self._head(buf[:end])
            except HttpError as e:
                self._fail(e)
                return
            buf = buf[end + 4 :]
        if len(buf) < self._length:
            self.buf = buf
            return
        body = buf[: self._length]
        self.buf = b""
        self._length = -1
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            fut.set_result(body)

    def _head(self, head: bytes) -> None:
        status = head[9:12]
        if status != b"200":
            line = head[: head.find(b"\r\n")]
            raise HttpError(f"the server answered {line.decode(errors='replace')}")
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            raise HttpError("chunked HTTP responses are not supported by the generator")
        i = lower.find(b"\r\ncontent-length:")
        if i < 0:
            raise HttpError("HTTP response without Content-Length")
        j = lower.find(b"\r\n", i + 2)
        self._length = int(lower[i + 17 : j if j >= 0 else None])
        if b"\r\nconnection: close" in lower:
            self.keep_alive = False

    def _fail(self, exc: Exception) -> None:
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.keep_alive = False
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            why = f"connection closed: {exc or 'by the server'}"
            fut.set_exception(
                StaleConnection(why) if not self._got and self.uses > 1 else HttpError(why)
            )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    """POSTs to one URL over reused connections; grows to the peak number of open requests."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, path: str) -> None:
        self._loop = loop
        self.host = host
        self.port = port
        self.path = path
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: text/xml; charset=utf-8\r\nContent-Length: "
        ).encode()
        self._idle: list[HttpConnection] = []
        self.opened = 0  # connections made: far fewer than requests when keep-alive works
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    async def _connection(self) -> HttpConnection:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                return conn
        loop = self._loop
        _, conn = await loop.create_connection(lambda: HttpConnection(loop), self.host, self.port)
        self.opened += 1
        return conn

    async def post(self, body: bytes) -> bytes:
        """The response body; a reused connection the server had closed is retried once."""
        data = self._head + str(len(body)).encode() + b"\r\n\r\n" + body
        self.requests += 1
        for attempt in (0, 1):
            conn = await self._connection()
            try:
                got = await conn.request(data)
            except StaleConnection:
                if attempt:
                    raise
                continue
            except BaseException:
                conn.close()
                raise
            if conn.keep_alive:
                self._idle.append(conn)
            else:
                conn.close()
            return got
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
