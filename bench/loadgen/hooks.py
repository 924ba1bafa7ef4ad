"""The stream authority's load: nginx-rtmp's ``on_play`` and ``on_play_done`` notifications,
posted to chatgate's hooks by a closed loop of C connections (issue 12).

Why its own client rather than `http.py`'s BOSH pool: a hook's answer that is not 2xx is the
thing being measured, not a failure of the exchange; nginx-rtmp's requests are HTTP/1.0 with
``Connection: Close``, so each one opens its own connection and the server closes it after
the answer (nginx reads until it does); and an answer may come without ``Content-Length``
(read until close). Requests are pre-built bytes, answers parsed with a few ``find``\\ s, so
the generator's core outruns the server's.

Two wires, the same bodies:

- ``nginx`` (the default): the exact bytes nginx-rtmp sends
  (`ngx_rtmp_netcall_http_format_request`: ``POST PATH HTTP/1.0``, ``Host`` without the
  port, ``Content-Type: application/x-www-form-urlencoded``, ``Connection: Close``,
  ``Content-Length``), one connection per request.
- ``keepalive``: HTTP/1.1, each of the C connections reused for as long as the server keeps it
  open (a server that answers ``Connection: close`` gets a new one): the decision's cost
  without the connection's, as a keep-alive caller (MediaMTX's Go client) would see it.

Every answer's status is checked against the expected one; a wrong status, a malformed answer,
a reset or a timeout is an error, counted with its first few samples. A figure with errors is
not a figure (`bench.plan` refuses it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen.measure import Window, latency_summary

HOST = "127.0.0.1"
#: seconds one exchange (connect, request, answer, the server's close) may take
REQUEST_TIMEOUT = 10.0
WIRES = ("nginx", "keepalive")
FORM = "application/x-www-form-urlencoded"


class HookError(Exception):
    """The HTTP exchange itself failed: framing, a reset, no answer."""


class StaleConnection(HookError):
    """A reused keep-alive connection closed before any byte of an answer: send again."""


def request_head(endpoint: str, port: int, wire: str) -> bytes:
    """Everything of a hook request before its Content-Length value."""
    path = f"/hooks/nginx-rtmp/{endpoint}"
    if wire == "nginx":
        # nginx-rtmp's own template (ngx_rtmp_netcall.c): the header order and spelling it sends
        return (
            f"POST {path} HTTP/1.0\r\nHost: {HOST}\r\nContent-Type: {FORM}\r\n"
            "Connection: Close\r\nContent-Length: "
        ).encode()
    if wire == "keepalive":
        return (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {FORM}\r\n"
            "Content-Length: "
        ).encode()
    raise ValueError(f"unknown wire {wire!r} (known: {', '.join(WIRES)})")


def framed(head: bytes, body: bytes) -> bytes:
    return head + str(len(body)).encode() + b"\r\n\r\n" + body


class NginxRtmpForm:
    """The bodies nginx-rtmp posts for one application: its fields in its order, then the
    client's query string appended verbatim (``../shared/streaming-contract.md``).

    ``play``: ``app, flashver, swfurl, tcurl, pageurl, addr, clientid, call, name, start,
    duration, reset``, with the values ffmpeg's player produces (``start=4294965296`` is
    -2000 as uint32, "live"); ``play_done``: the same up to ``name``, then the arguments again.
    """

    def __init__(self, app: str) -> None:
        a = app.encode()
        self._prefix = (
            b"app=" + a + b"&flashver=LNX%209,0,124,2&swfurl=&tcurl=rtmp://127.0.0.1:1935/" + a
        )

    def play(self, addr: bytes, client_id: int, name: bytes, args: bytes) -> bytes:
        return b"".join(
            (
                self._prefix,
                b"&pageurl=&addr=",
                addr,
                b"&clientid=",
                str(client_id).encode(),
                b"&call=play&name=",
                name,
                b"&start=4294965296&duration=0&reset=0&",
                args,
            )
        )

    def play_done(self, addr: bytes, client_id: int, name: bytes, args: bytes) -> bytes:
        return b"".join(
            (
                self._prefix,
                b"&pageurl=&addr=",
                addr,
                b"&clientid=",
                str(client_id).encode(),
                b"&call=play_done&name=",
                name,
                b"&",
                args,
            )
        )


class HookConnection(asyncio.Protocol):
    """One connection; `send` writes a whole request and resolves with (status, body)."""

    __slots__ = (
        "_fut",
        "_got",
        "_length",
        "_loop",
        "_status",
        "buf",
        "closed",
        "must_close",
        "transport",
        "uses",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, must_close: bool) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self._fut: asyncio.Future[tuple[int, bytes]] | None = None
        self._status = 0
        self._length = -1  # -1: head not read yet; -2: body runs until the server closes
        self._got = False
        self.must_close = must_close  # after this answer the connection is done
        self.closed: asyncio.Future[None] = loop.create_future()
        self.uses = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
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
        if self._length == -1:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            try:
                self._head(buf[:end])
            except (HookError, ValueError) as e:
                self._fail(HookError(f"malformed answer: {e}"))
                return
            buf = buf[end + 4 :]
        if 0 <= self._length <= len(buf):
            self.buf = b""
            self._resolve(buf[: self._length])
        else:
            self.buf = buf

    def _head(self, head: bytes) -> None:
        if not head.startswith(b"HTTP/1.") or head[12:13] not in (b" ", b"\r", b""):
            raise HookError(repr(head[:40]))
        self._status = int(head[9:12])
        lower = head.lower()
        if b"\r\ntransfer-encoding:" in lower:
            raise HookError("chunked answers are not read by the generator")
        i = lower.find(b"\r\ncontent-length:")
        if i < 0:
            self._length = -2
        else:
            j = lower.find(b"\r\n", i + 2)
            self._length = int(lower[i + 17 : j if j >= 0 else None])
        if b"\r\nconnection: close" in lower or (
            head.startswith(b"HTTP/1.0") and b"\r\nconnection: keep-alive" not in lower
        ):
            self.must_close = True

    def _resolve(self, body: bytes) -> None:
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            fut.set_result((self._status, body))

    def _fail(self, exc: Exception) -> None:
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        self.abort()

    def eof_received(self) -> bool:
        if self._length == -2:  # the body ran until the close
            self._resolve(self.buf)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.must_close = True
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            why = f"connection closed: {exc or 'by the server'}"
            stale = not self._got and self.uses > 1
            fut.set_exception(StaleConnection(why) if stale else HookError(why))
        if not self.closed.done():
            self.closed.set_result(None)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


@dataclass
class Tally:
    """One figure's answers: counted in the window, errors always."""

    expected: int
    recording: bool = False
    answered: int = 0  # right answers while recording
    latencies: list[int] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(what[:300])

    def answer(self, status: int, body: bytes, ns: int) -> None:
        if status != self.expected:
            text = body[:120].decode("utf-8", "replace").strip()
            self.error(f"status {status}, expected {self.expected}: {text!r}")
        elif self.recording:
            self.answered += 1
            self.latencies.append(ns)


#: a source hands out the next request body, or None when there is no more to send
Source = Callable[[], bytes | None]


class HookLoad:
    """C connections (workers) in a closed loop against one hook endpoint each time."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        port: int,
        server_pid: int,
        *,
        wire: str = "nginx",
        connections: int = 32,
    ) -> None:
        self.loop = loop
        self.port = port
        self.server_pid = server_pid
        self.wire = wire
        self.connections = connections
        self.heads = {e: request_head(e, port, wire) for e in ("play", "play_done")}
        self.opened = 0  # TCP connections made, every figure and cleanup included
        self.sent = 0

    async def _connect(self) -> HookConnection:
        loop = self.loop
        must_close = self.wire == "nginx"
        _, conn = await loop.create_connection(
            lambda: HookConnection(loop, must_close), HOST, self.port
        )
        self.opened += 1
        return conn

    async def _worker(self, source: Source, head: bytes, tally: Tally) -> None:
        conn: HookConnection | None = None
        perf = time.perf_counter_ns
        try:
            while True:
                body = source()
                if body is None:
                    return
                data = framed(head, body)
                tally.requests += 1
                self.sent += 1
                t0 = perf()
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        for attempt in (0, 1):
                            if conn is None or conn.must_close:
                                conn = await self._connect()
                            try:
                                status, answer = await conn.send(data)
                                break
                            except StaleConnection:
                                conn = None
                                if attempt:
                                    raise
                        assert conn is not None  # the loop broke with an answer or raised
                        ns = perf() - t0
                        if conn.must_close:
                            # nginx reads until the close; the server, not us, closes first
                            await conn.closed
                except (HookError, OSError, TimeoutError) as e:
                    why = str(e) or f"no answer in {REQUEST_TIMEOUT:g} s"
                    tally.error(f"{type(e).__name__}: {why}")
                    if conn is not None:
                        conn.abort()
                    conn = None
                    continue
                tally.answer(status, answer, ns)
                if conn.must_close:
                    conn.abort()  # already closed by the server: frees the transport
                    conn = None
        finally:
            if conn is not None:
                conn.abort()

    async def run(self, source: Source, endpoint: str, tally: Tally) -> None:
        """Send everything `source` hands out with at most C requests in flight."""
        head = self.heads[endpoint]
        await asyncio.gather(*(self._worker(source, head, tally) for _ in range(self.connections)))

    async def one(self, endpoint: str, body: bytes) -> tuple[int, str]:
        """A single exchange, for a probe: (status, the answer's text); (0, why) on failure."""
        conn: HookConnection | None = None
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                conn = await self._connect()
                status, answer = await conn.send(framed(self.heads[endpoint], body))
        except (HookError, OSError, TimeoutError) as e:
            return 0, f"{type(e).__name__}: {e or 'no answer'}"
        finally:
            if conn is not None:
                conn.abort()
        return status, answer.decode("utf-8", "replace").strip()

    async def measure(
        self,
        source: Source,
        endpoint: str,
        expected: int,
        warmup: float,
        duration: float,
    ) -> dict[str, Any]:
        """Warm up, then one window: right answers per second and their latency.

        The window ends when `duration` has passed or `source` runs dry (its count bound), once
        the requests in flight are answered; those are counted too.
        """
        tally = Tally(expected)
        stop = False

        def bounded() -> bytes | None:
            return None if stop else source()

        task = self.loop.create_task(self.run(bounded, endpoint, tally))
        done, _ = await asyncio.wait({task}, timeout=warmup)
        window = Window(self.server_pid)
        window.start()
        tally.recording = True
        if not done:
            await asyncio.wait({task}, timeout=duration)
        stop = True
        await task
        measured = window.stop()
        out: dict[str, Any] = {
            "decisions": tally.answered,
            "decisions_per_s": round(tally.answered / measured["seconds"], 1),
            "latency": latency_summary(tally.latencies),
            "requests": tally.requests,
            "errors": tally.errors,
            "window": measured,
        }
        if tally.samples:
            out["error_samples"] = tally.samples
        return out
