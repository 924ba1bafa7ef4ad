"""The listener's lane: BOSH requests and WebSocket handshakes answered without
aiohttp, and everything else handed to aiohttp on the same connection.

Why: a BOSH login is six HTTP requests and a WebSocket login a dozen messages,
and aiohttp's machinery per request and per message (its request and response
objects, header handling, timers, the WebSocket reader's queue) cost more than
the XMPP work they carry: web logins ran at 1.5x Prosody's rate against a
target of 2x (docs/benchmarks.md).  The lane reads request heads itself
(`request_head.py`) and answers the requests it fully understands: a BOSH
`POST` framed by one Content-Length, a CORS preflight for BOSH, and a WebSocket
handshake asking for `xmpp`, after which the connection is the WebSocket's
(`lane_websocket.py`).

Every other request (another route, chunked, `Expect`, anything the strict
head reader does not accept) goes to aiohttp: the lane makes aiohttp's
protocol for the connection, gives it every byte from that request's first on,
and from then on only forwards.  The lane and aiohttp therefore never both
decide where a request ends, so nothing can be smuggled between them, and
aiohttp answers everything odd as it always did.

Limits, as aiohttp's: the head must arrive within `KEEPALIVE_TIMEOUT` of the
connection being idle, a body within `BODY_TIMEOUT` (408); a body over
`[http] max_request_size` gets 413 unread; after either, what is left of the
body is read and dropped for at most `LINGER` seconds, then the connection
closes.  One request is answered at a time per connection, at most
`SLICE_BYTES` of them per loop turn: bytes of the next ones wait (bounded:
reading stops past one head and one largest body), and while the socket's
write buffer is full no further request is answered.  Connections are counted
per address by the lane itself (the plain port) or by the TLS layer (`tls.py`),
before a byte of HTTP is read.

Media servers' hooks (`hooks.py`) have their own body timeout
(`HookEndpoint.body_timeout`), and their refusals (408, 413) are plain text,
not BOSH bodies.  While the lane waits for a hook's answer from a caller in
`[streams] hook_networks`, that connection does not count towards its
address's `max_connections_per_address`: a media server is one address for all
its clients, and brute-force protection holds a wrong guess's answer for up
to 20 s, so clients guessing from a few dozen addresses would otherwise hold
every connection its media server may open, and every other client's publish
or play would be refused with them.  The count is taken back with the answer
(past the limit, the connection closes after it), so idle or half-sent
requests from those addresses stay bounded as everyone's are.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from chatgate.http import bosh_body
from chatgate.http.connection_limit import AddressCounter, peer_address
from chatgate.http.lane_websocket import handshake_answer
from chatgate.http.request_head import MAX_HEAD_BYTES, NotOurs, RequestHead, parse_head
from chatgate.vocabulary.facts import ConnectionFacts

if TYPE_CHECKING:
    from chatgate.http.bosh import BoshEndpoint
    from chatgate.http.hooks import HookEndpoint
    from chatgate.http.lane_websocket import LaneWebSocket
    from chatgate.streams.adapters.base import HookResponse

log = logging.getLogger(__name__)

#: the headers every response carries (the listener's SECURITY_HEADERS)
_SECURITY = (
    b"X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n"
)
#: seconds the rest of a refused body is read and dropped before the connection
#: closes (a close with unread input would reset it, destroying the answer)
LINGER = 2.0
#: bytes of requests answered at once (preflights) per loop turn: a socket read
#: of pipelined preflights (256 KiB, 3,000 answers) stalled everyone else
SLICE_BYTES = 65_536
#: the media servers' hooks (`hooks.py`)
HOOKS_PREFIX = "/hooks/"
#: the bodies of the lane's own refusals of a hook (as aiohttp's route words them)
_HOOK_REFUSALS = {
    408: b"the request body took too long\n",
    413: b"the request body is larger than max_request_size\n",
}


@dataclass(slots=True)
class LaneRoutes:
    """What every lane connection of a listener shares."""

    #: BOSH's endpoint (None: BOSH is off, and every request is aiohttp's)
    bosh: BoshEndpoint | None
    bosh_paths: frozenset[str]
    #: the CORS origin to allow for a request's Origin (None: none)
    allowed_origin: Callable[[str | None], str | None]
    #: the connection facts for a transport and its X-Forwarded-For
    facts: Callable[[asyncio.BaseTransport, str | None], ConnectionFacts]
    #: the WebSocket path (None: WebSockets are off)
    websocket_path: str | None
    #: makes the WebSocket of an upgraded connection (its transport, X-Forwarded-For)
    websocket: Callable[[asyncio.Transport, str | None], LaneWebSocket] | None
    #: makes aiohttp's protocol for a connection handed over
    aiohttp_protocol: Callable[[], asyncio.Protocol]
    max_request_size: int
    keepalive_timeout: float
    body_timeout: float
    #: the media servers' hooks under `HOOKS_PREFIX` (None: `[streams]` is off)
    hooks: HookEndpoint | None = None
    #: live lane connections, WebSockets included (stopped by `close_all`)
    live: set[LaneProtocol] = field(default_factory=set)
    stopping: bool = False

    def close_all(self) -> None:
        """The listener stops: idle connections close now, busy ones after their
        response."""
        self.stopping = True
        for conn in list(self.live):
            conn.stop()


class _Date:
    """The Date header's value, made once a second (RFC 9110 §6.6.1)."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = email.utils.formatdate(now, usegmt=True).encode()
        return self._value


_date = _Date()
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}


class LaneProtocol(asyncio.Protocol):
    """One HTTP connection: BOSH here, the rest through aiohttp (see module)."""

    __slots__ = (
        "_address",
        "_body_timer",
        "_buffer",
        "_busy",
        "_close_after",
        "_counter",
        "_discard",
        "_inner",
        "_lent",
        "_loop",
        "_read_paused",
        "_routes",
        "_timer",
        "_transport",
        "_write_paused",
        "_ws",
    )

    def __init__(self, routes: LaneRoutes, counter: AddressCounter | None) -> None:
        self._routes = routes
        #: counts this connection per address (None: the TLS layer counts it)
        self._counter = counter
        self._address: str | None = None
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        #: aiohttp's protocol, once the connection was handed over
        self._inner: asyncio.Protocol | None = None
        #: the WebSocket, once the connection was upgraded
        self._ws: LaneWebSocket | None = None
        #: a request is being answered
        self._busy = False
        self._write_paused = False
        self._read_paused = False
        #: close once the response being answered is written
        self._close_after = False
        self._timer: asyncio.TimerHandle | None = None
        #: the timer running is the body's (BODY_TIMEOUT), not the idle one
        self._body_timer = False
        #: bytes of a refused body still to drop before closing (-1: not lingering)
        self._discard = -1
        #: the connection's count is given back while a media server's hook is
        #: decided (module docstring); True also when it could not be taken again
        self._lent = False
        self._loop = asyncio.get_running_loop()

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = tcp = cast(asyncio.Transport, transport)
        if self._counter is not None:
            address = peer_address(transport)
            if not self._counter.acquire(address):
                tcp.abort()  # past max_connections_per_address
                return
            self._address = address
        self._routes.live.add(self)
        self._arm(self._routes.keepalive_timeout)

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        if ws is not None:
            ws.data_received(data)
            return
        inner = self._inner
        if inner is not None:
            inner.data_received(data)
            return
        if self._discard >= 0:
            self._drop(len(data))
            return
        self._buffer += data
        if not self._busy and not self._write_paused:
            self._next()
        if self._busy or self._write_paused:
            self._limit_backlog()

    def eof_received(self) -> bool | None:
        if self._ws is not None:
            self._ws.eof_received()
            return True  # the WebSocket closes the transport itself
        inner = self._inner
        if inner is not None:
            return inner.eof_received()
        if self._busy:
            self._close_after = True  # answer what was asked, then close
            return True
        return None  # the transport closes itself

    def pause_writing(self) -> None:
        inner = self._inner
        if inner is not None:
            inner.pause_writing()
            return
        self._write_paused = True

    def resume_writing(self) -> None:
        inner = self._inner
        if inner is not None:
            inner.resume_writing()
            return
        self._write_paused = False
        if not self._busy:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._routes.live.discard(self)
        self._buffer = bytearray()
        address, self._address = self._address, None
        if address is not None and self._counter is not None and not self._lent:
            self._counter.release(address)
        self._transport = None
        if self._ws is not None:
            self._ws.connection_lost(exc)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    # ------------------------------------------------------------ requests

    def _next(self) -> None:
        """Answer the requests in the buffer that are all there, in order: those
        answered at once (preflights) in a loop, not each from the last one's
        answer (a few hundred pipelined preflights would exhaust the stack)."""
        routes = self._routes
        budget = SLICE_BYTES
        while True:
            transport = self._transport
            buffer = self._buffer
            if transport is None or transport.is_closing() or not buffer or self._write_paused:
                return
            try:
                head = parse_head(buffer)
            except NotOurs:
                head = None
                ours = False
            else:
                ours = True
            if not ours:
                # outside the except clause: aiohttp's own errors, raised from
                # here, must not carry the lane's exception (and its frames) along
                self._hand_over()
                return
            if head is None:
                return  # the idle timer runs on: the head must come in time
            if head.path == routes.websocket_path and self._upgrade(head):
                return
            if (
                routes.hooks is not None
                and head.path.startswith(HOOKS_PREFIX)
                and head.method in (b"POST", b"GET")
            ):
                self._hook(head)
                return
            if head.path in routes.bosh_paths and routes.bosh is not None:
                if head.method == b"POST":
                    self._bosh(head)
                    return
                if (
                    head.method == b"OPTIONS"
                    and b"access-control-request-method" in head.headers
                    and head.content_length == 0
                ):
                    self._preflight(head)
                    budget -= head.end
                    if budget <= 0 and self._buffer:
                        # the rest on the next turn: others get theirs first
                        self._busy = True
                        self._loop.call_soon(self._go_on)
                        return
                    continue
            self._hand_over()
            return

    def _body(self, head: RequestHead, timeout: float | None = None) -> bytes | None:
        """The request's body, taken off the buffer; None while it is still coming
        (it has `timeout`, BODY_TIMEOUT by default, from the head's arrival) or
        when it was refused."""
        size = head.content_length
        if size > self._routes.max_request_size:
            self._refuse_body(head, size)
            return None
        end = head.end + size
        if len(self._buffer) < end:
            if not self._body_timer:
                self._arm(self._routes.body_timeout if timeout is None else timeout, body=True)
            return None
        body = bytes(self._buffer[head.end : end])
        del self._buffer[:end]
        self._cancel_timer()
        return body

    def _hook(self, head: RequestHead) -> None:
        """A media server's hook (`hooks.HookEndpoint.answer`)."""
        hooks = self._routes.hooks
        assert hooks is not None
        body = self._body(head, hooks.body_timeout)
        if body is None:
            return
        self._busy = True
        peer = peer_address(self._transport) if self._transport is not None else None
        address, counter = self._address, self._counter
        if address is not None and counter is not None and address in hooks.networks:
            counter.release(address)  # lent while the answer is decided (module docstring)
            self._lent = True
        headers = {name.decode("latin-1"): v.decode("latin-1") for name, v in head.headers.items()}
        coro = hooks.answer(
            head.method.decode("ascii"),
            head.path.removeprefix(HOOKS_PREFIX),
            head.query.encode("ascii"),
            headers,
            body,
            peer,
        )
        task = self._loop.create_task(coro)
        task.add_done_callback(lambda t: self._hook_answered(head, t))

    def _hook_answered(self, head: RequestHead, task: asyncio.Task[HookResponse]) -> None:
        if self._lent and self._transport is not None:
            # the count lent in `_hook` is taken back; past the limit, the
            # connection closes after this answer (and is no longer counted)
            assert self._counter is not None and self._address is not None
            if self._counter.acquire(self._address):
                self._lent = False
            else:
                self._close_after = True
        if task.cancelled():
            self._abort()
            return
        exc = task.exception()
        if exc is not None:
            log.error("stream hook failed", exc_info=exc)
            self._close_after = True
            self._respond(head, 500, b"", "text/plain")
            return
        reply = task.result()
        content_type = "text/plain"
        extra = []
        for name, value in reply.headers:
            if name.lower() == "content-type":
                content_type = value
            else:
                extra.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
        if reply.close:
            self._close_after = True
        self._respond(head, reply.status, reply.body, content_type, extra=b"".join(extra))

    def _bosh(self, head: RequestHead) -> None:
        body = self._body(head)
        if body is None:
            return
        self._busy = True
        transport, routes = self._transport, self._routes
        bosh = routes.bosh
        assert transport is not None and bosh is not None
        forwarded = head.header(b"x-forwarded-for")
        coro = bosh.answer(body, lambda: routes.facts(transport, forwarded))
        task = self._loop.create_task(coro)
        task.add_done_callback(lambda t: self._answered(head, t))

    def _answered(
        self, head: RequestHead, task: asyncio.Task[tuple[tuple[int, bytes], str]]
    ) -> None:
        if task.cancelled():
            self._abort()
            return
        exc = task.exception()
        if exc is not None:
            log.error("BOSH request failed", exc_info=exc)
            self._close_after = True
            self._respond(head, 500, b"")
            return
        (status, data), content_type = task.result()
        self._respond(head, status, data, content_type)

    def _go_on(self) -> None:
        """The next turn's share of pipelined requests (see `_next`)."""
        self._busy = False
        self._next()
        transport = self._transport
        if self._busy or transport is None or self._inner is not None or self._ws is not None:
            return
        if self._close_after:
            self._cancel_timer()
            transport.close()  # the peer shut its side (or the listener stops): all answered
            return
        self._resume_if_room()

    def _upgrade(self, head: RequestHead) -> bool:
        """A WebSocket handshake the lane can answer: 101, and the connection is
        the WebSocket's from then on.  False for any other (aiohttp's)."""
        make = self._routes.websocket
        answer = handshake_answer(head) if make is not None else None
        if answer is None or make is None:
            return False
        transport = self._transport
        assert transport is not None
        self._cancel_timer()
        if self._read_paused:
            # the lane's backlog paused reading: from now on the WebSocket's own
            # flow control decides (it pauses again if what is pending is too much)
            self._read_paused = False
            transport.resume_reading()
        transport.write(answer)
        self._ws = ws = make(transport, head.header(b"x-forwarded-for"))
        pending, self._buffer = bytes(self._buffer[head.end :]), bytearray()
        if pending:
            ws.data_received(pending)
        return True

    def _preflight(self, head: RequestHead) -> None:
        """A preflight's answer; `_next`'s loop goes on with the next request."""
        del self._buffer[: head.end]
        self._respond(head, 204, b"", preflight=True, go_on=False)

    def _respond(
        self,
        head: RequestHead,
        status: int,
        data: bytes,
        content_type: str = bosh_body.CONTENT_TYPE,
        *,
        preflight: bool = False,
        go_on: bool = True,
        extra: bytes = b"",
    ) -> None:
        """Write one response, then go on with the next request (unless `go_on` is
        False: the caller does), or close."""
        self._busy = False
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        close = self._close_after or not head.keep_alive or self._routes.stopping
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
        if status != 204:  # a 204 has no Content-Length (RFC 9110 §8.6)
            parts.append(
                b"Content-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\n"
                % (content_type.encode(), len(data))
            )
        parts.append(b"Date: %s\r\n%s%s" % (_date(), _SECURITY, extra))
        origin = self._routes.allowed_origin(head.header(b"origin"))
        if origin is not None:
            if preflight:
                parts.append(
                    b"Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                    b"Access-Control-Allow-Headers: Content-Type\r\n"
                    b"Access-Control-Max-Age: 86400\r\n"
                )
            parts.append(b"Access-Control-Allow-Origin: %s\r\n" % origin.encode("latin-1"))
            if origin != "*":
                parts.append(b"Vary: Origin\r\n")
        if close:
            parts.append(b"Connection: close\r\n")
        elif head.version < (1, 1):
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        parts.append(data)
        transport.write(b"".join(parts))
        if self._discard >= 0:
            return  # lingering: the rest of the refused body is dropped first
        if close:
            self._cancel_timer()
            transport.close()
            return
        self._arm(self._routes.keepalive_timeout)
        if go_on:
            self._next()
        self._resume_if_room()

    # ------------------------------------------------------------ hand-over

    def _hand_over(self) -> None:
        """From this request on, the connection is aiohttp's."""
        transport = self._transport
        assert transport is not None
        self._cancel_timer()
        self._routes.live.discard(self)
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        self._inner = inner = self._routes.aiohttp_protocol()
        inner.connection_made(transport)
        if self._write_paused:
            inner.pause_writing()
        pending, self._buffer = bytes(self._buffer), bytearray()
        if pending:
            inner.data_received(pending)

    # ------------------------------------------------------------ limits

    def _limit_backlog(self) -> None:
        """Input waiting behind the request being answered is bounded: past one
        head and one largest body, the socket is not read until the answers
        brought it back within that (`_resume_if_room`)."""
        if self._read_paused or self._transport is None:
            return
        if len(self._buffer) > MAX_HEAD_BYTES + self._routes.max_request_size:
            self._read_paused = True
            self._transport.pause_reading()

    def _resume_if_room(self) -> None:
        """Read again once the backlog is within bounds.  Not after every answer:
        each answer takes one request (maybe 150 bytes) off the backlog and each
        read may add 256 KiB, so a peer pipelining small requests grew it by
        hundreds of MB a second."""
        transport = self._transport
        if (
            self._read_paused
            and transport is not None
            and not transport.is_closing()
            and len(self._buffer) <= MAX_HEAD_BYTES + self._routes.max_request_size
        ):
            self._read_paused = False
            transport.resume_reading()

    def _refuse_body(self, head: RequestHead, size: int) -> None:
        """413 for a body over `max_request_size`."""
        log.info(
            "HTTP: a %d-byte body from %s refused: over max_request_size",
            size,
            self._address or "-",
        )
        self._refuse(head, 413)

    def _refuse(self, head: RequestHead, status: int) -> None:
        """Answer `status` at once and close: the rest of the request's body is
        read and dropped first (at most LINGER seconds), or the client's unread
        bytes would make the close a reset that destroys the answer.  A BOSH
        client gets a BOSH body; a media server's hook, plain text."""
        have = len(self._buffer) - head.end
        self._buffer.clear()
        self._close_after = True
        self._discard = max(0, head.content_length - have)
        if self._routes.hooks is not None and head.path.startswith(HOOKS_PREFIX):
            self._respond(head, status, _HOOK_REFUSALS[status], "text/plain; charset=utf-8")
        else:
            self._respond(
                head,
                status,
                bosh_body.terminate("bad-request" if status == 408 else "policy-violation"),
            )
        self._arm(LINGER)
        self._drop(0)

    def _drop(self, count: int) -> None:
        self._discard = max(0, self._discard - count)
        if self._discard == 0 and self._transport is not None:
            self._cancel_timer()
            self._transport.close()

    def _arm(self, seconds: float, *, body: bool = False) -> None:
        self._cancel_timer()
        self._body_timer = body
        self._timer = self._loop.call_later(seconds, self._timed_out, body)

    def _cancel_timer(self) -> None:
        timer = self._timer
        self._body_timer = False
        if timer is not None:
            timer.cancel()
            self._timer = None

    def _timed_out(self, body: bool) -> None:
        self._timer = None
        self._body_timer = False
        transport = self._transport
        if transport is None or self._busy:
            return
        if body:
            log.info("HTTP: request body from %s too slow: closed", self._address or "-")
            self._busy = False
            try:
                head = parse_head(self._buffer)
            except NotOurs:
                head = None
            if head is not None:
                self._refuse(head, 408)
                return
        transport.close()  # idle past the keep-alive timeout, or no head in time

    def stop(self) -> None:
        """The listener stops: close now when idle, else after the response.  A
        WebSocket's stream has ended already (the server's stop ends every
        stream first): its close frame is sent if it was not, and the socket
        closes once what is written has left."""
        ws = self._ws
        if ws is not None:
            ws.close()
            if self._transport is not None:
                self._transport.close()
            return
        if self._busy:
            self._close_after = True
        elif self._transport is not None:
            self._cancel_timer()
            self._transport.close()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
