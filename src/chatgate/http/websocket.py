"""XMPP over WebSocket (RFC 7395) at `/xmpp-websocket`: a transport for the one
connection driver (`xmpp/c2s.py`), so every rule of a TCP stream applies.

Framing (§3.3-§3.6): one complete element per text message; `<open/>` and
`<close/>` (urn:ietf:params:xml:ns:xmpp-framing) stand for the stream header and
footer; a restart after SASL is a new `<open/>`.  Incoming messages go through a
`FramedParser` (the stream parser's checks and limits, one element per
message), outgoing ones through `WebSocketStreamOutput`, which makes every
element stand alone (`framing.qualify`).

Incoming messages are parsed by a parser shared with every other web
connection (`shared_parsers.py`): same checks and limits as one of its own,
without creating an expat parser per connection and per restart.

Two transports share these rules (`XmppWebSocket`): the listener's lane
(`lane_websocket.py`) reads and writes the frames of every WebSocket whose
handshake it answers, which is every well-formed one on a new connection;
`WebSocketTransport` below, on aiohttp's `WebSocketResponse`, serves the
handshakes the lane hands to aiohttp (a connection that made other requests
first, or a handshake the lane's strict reader did not take), and is the only
one that may agree to compression.

aiohttp's flow: messages are read one at a time; while the driver's queue is full, or the
client is over its byte rate, the next message is not read (aiohttp then stops
reading the socket).  Output: a loop turn's messages are framed here (RFC 6455
§5.2: unmasked, final, text) and handed to the socket in one write, without a
writer task; what the socket cannot take at once waits in the transport's
buffer, bounded by `[limits] max_output_buffer`: a client that does not read
past it is closed with `policy-violation`, as on TCP, and, as on TCP, a
connection whose close has not completed `CLOSE_TIMEOUT` (10 s) after it began
is aborted: a peer that never reads would otherwise hold its socket and output
forever.  When the client
negotiated compression (permessage-deflate, browsers do) frames are aiohttp's
to write: then messages wait in a queue bounded the same way and a writer task
sends them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from aiohttp import WSCloseCode, WSMsgType, web

from chatgate.http import ws_frames
from chatgate.http.options import WebSocketOptions
from chatgate.http.shared_parsers import parse_message
from chatgate.http.ws_frames import frame
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import PeerProtocolError, StreamErrorCondition
from chatgate.vocabulary.facts import ConnectionFacts
from chatgate.xml.parser import Stanza, StreamClosed, StreamOpened
from chatgate.xml.serialize import escape_attr
from chatgate.xmpp.c2s import C2SConnection, Hibernation, TlsUpgrade
from chatgate.xmpp.framing import StreamError, StreamHeader, qualify
from chatgate.xmpp.output import TurnBuffer
from chatgate.xmpp.shaper import TokenBucket
from chatgate.xmpp.transports.tcp import CLOSE_TIMEOUT

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.xmpp.negotiation import NegotiationSettings

log = logging.getLogger(__name__)

SUBPROTOCOL = "xmpp"
_CLOSE = f"<close xmlns='{ns.FRAMING}'/>".encode()
_FEATURES_OPEN = f"<stream:features xmlns:stream='{ns.STREAMS}'>".encode()
_FEATURES_CLOSE = b"</stream:features>"

#: RFC 6455 §5.5.1 close frame, status 1008 (policy violation)
_POLICY_CLOSE = frame(ws_frames.CLOSE, WSCloseCode.POLICY_VIOLATION.to_bytes(2, "big"))


#: What a PING or PONG costs the connection's read rate besides its payload: an
#: empty frame is six bytes on the wire but is parsed, queued and answered.
CONTROL_FRAME_COST = 64
#: PINGs and PONGs a client may send per second (and in a burst) before it is
#: closed with 1008; a browser sends none, a library one every few seconds.
CONTROL_FRAMES_PER_SECOND = 10
CONTROL_FRAME_BURST = 50


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame (a server's frames are never masked, §5.1)."""
    return frame(ws_frames.TEXT, payload)


def offers_xmpp(request: web.Request) -> bool:
    """The handshake asks for the `xmpp` subprotocol (RFC 7395 §3.1)."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    return SUBPROTOCOL in (p.strip() for p in offered.split(","))


def open_element(header: StreamHeader) -> bytes:
    """`<open/>`, the server's answer to the client's (RFC 7395 §3.4)."""
    to = f' to="{escape_attr(header.to)}"' if header.to else ""
    return (
        f"<open xmlns='{ns.FRAMING}' from=\"{escape_attr(header.from_)}\"{to}"
        f" id=\"{header.stream_id}\" version='1.0' xml:lang='{header.lang}'/>"
    ).encode()


class WebSocketStreamOutput(TurnBuffer):
    """`StreamOutput` for RFC 7395: each element one message, a loop turn's messages
    handed to the transport together."""

    __slots__ = ("_transport",)

    def __init__(self, transport: XmppWebSocket, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._transport = transport

    def header(self, header: StreamHeader) -> None:
        self._add(open_element(header))

    def features(self, children: str) -> None:
        self._add(_FEATURES_OPEN + children.encode() + _FEATURES_CLOSE)

    def element(self, data: bytes) -> None:
        self._add(qualify(data))

    def end(self, error: StreamError | None) -> None:
        if error is not None:
            self._add(error.element(stream_prefix_declared=False).encode())
        self._add(_CLOSE)
        pending, self._pending = self._pending, None
        if pending:
            self._transport.send_last(pending)

    def _deliver(self, pending: list[bytes]) -> None:
        self._transport.send_messages(pending)


class XmppWebSocket:
    """What RFC 7395 asks of a WebSocket carrying an XMPP stream, whoever reads and
    writes its frames (aiohttp's `WebSocketTransport` below, or the listener's
    lane, `lane_websocket.py`): one element per text message, `<open/>` and
    `<close/>` framing, limits, the control-frame budget, the output limit."""

    name = "websocket"
    #: no STARTTLS (the connection is TLS or not from the start: wss:// or ws://)
    tls_upgrade: TlsUpgrade | None = None
    #: no parser of its own to free: messages go through shared parsers
    hibernation: Hibernation | None = None

    def __init__(
        self, ctx: ServerContext, facts: ConnectionFacts, options: WebSocketOptions
    ) -> None:
        self.ctx = ctx
        self.facts = facts
        self._options = options
        limits = ctx.config.limits
        #: the limits of the shared parser this connection's messages go through
        self._max_stanza = limits.preauth_max_stanza_size
        self._max_depth = limits.max_depth
        #: the next message must be `<open/>` (the start, and after a restart)
        self._expect_open = True
        #: a message is being handled: a close it causes is completed by the reader
        self._in_message = False
        self._closing = False
        self._max_output = limits.max_output_buffer
        #: PINGs and PONGs the client may still send (made at its first)
        self._control_frames: TokenBucket | None = None
        self._close_code: int = WSCloseCode.OK
        #: closed for a control-frame flood: the socket is closed without reading on
        self._flooded = False
        self.connection: C2SConnection | None = None

    # ------------------------------------------------------------ for subclasses

    def send_messages(self, messages: list[bytes]) -> None:
        raise NotImplementedError

    def send_last(self, messages: list[bytes]) -> None:
        """The stream's last messages (its `<close/>`): the close that follows may
        go out with them."""
        self.send_messages(messages)

    def close(self) -> None:
        raise NotImplementedError

    def _pong(self, payload: bytes) -> None:
        raise NotImplementedError

    def _drop_queued(self) -> None:
        """Forget messages queued for a writer (none by default)."""

    # ------------------------------------------------------------ Transport

    def output(self, loop: asyncio.AbstractEventLoop) -> WebSocketStreamOutput:
        return WebSocketStreamOutput(self, loop)

    def restart_stream(self) -> None:
        self._expect_open = True
        conn = self.connection
        limits = self.ctx.config.limits
        authenticated = conn is not None and conn.negotiation.authenticated_user is not None
        self._max_stanza = (
            limits.max_stanza_size if authenticated else limits.preauth_max_stanza_size
        )

    def _output_overflow(self) -> None:
        conn = self.connection
        limit, self._max_output = self._max_output, -1  # once: the stream error comes here too
        if conn is None or conn.closed:
            return
        # What waits for a writer is dropped: only the stream error and <close/>
        # are still sent (what is in the socket's buffer is beyond recall).
        self._drop_queued()
        who = conn.session.full if conn.session is not None else "-"
        log.warning(
            "closing %s (WebSocket) from %s: more than %d bytes of output unread",
            who,
            self.facts.remote_address or "-",
            limit,
        )
        conn.close_stream(
            StreamErrorCondition.POLICY_VIOLATION,
            "too much output waiting: the client does not read",
        )

    def _control_frame(self, ping: bool, payload: bytes, now: float) -> float | None:
        """A PING or PONG (RFC 6455 §5.5.2-3), read here rather than by aiohttp
        (`autoping=False`), so that it counts: each costs the connection's byte rate
        `CONTROL_FRAME_COST` bytes plus its payload (an empty frame is not free to
        parse and answer), and more than `CONTROL_FRAMES_PER_SECOND` (burst
        `CONTROL_FRAME_BURST`) end the connection (close code 1008).  A PING is
        answered with a PONG carrying its payload.  Returns the seconds to wait
        before reading on, or None when the connection is being closed."""
        frames = self._control_frames
        if frames is None:
            frames = self._control_frames = TokenBucket(
                CONTROL_FRAMES_PER_SECOND, CONTROL_FRAME_BURST, now
            )
        if frames.take(1, now):
            log.info(
                "WebSocket from %s: more than %d control frames a second: closed",
                self.facts.remote_address or "-",
                CONTROL_FRAMES_PER_SECOND,
            )
            self._close_code = WSCloseCode.POLICY_VIOLATION
            self._flooded = True
            conn = self.connection
            if conn is not None and not conn.closed:
                self._in_message = True  # the read loop ends and closes the WebSocket
                try:
                    conn.close_stream(
                        StreamErrorCondition.POLICY_VIOLATION, "too many WebSocket control frames"
                    )
                finally:
                    self._in_message = False
            return None
        if ping:
            self._pong(payload)
        conn = self.connection
        bucket = conn.read_bucket if conn is not None else None
        if bucket is None:
            return 0.0
        return bucket.take(CONTROL_FRAME_COST + len(payload), now)

    def message(self, data: bytes) -> None:
        """One text message: one element of the stream."""
        conn = self.connection
        if conn is None or conn.closed:
            return  # after <close/> nothing more is processed (RFC 7395 §3.6)
        try:
            el = parse_message(data, ns.CLIENT, self._max_stanza, self._max_depth)
        except PeerProtocolError as exc:
            conn.protocol_error(exc)
            return
        if el.ns == ns.FRAMING:
            if el.name == "open":
                if self._options.see_other_uri:
                    self._see_other()
                    return
                self._expect_open = False
                attrs = dict(el.attrs)
                conn.events(
                    [StreamOpened("stream", ns.STREAMS, attrs, ns.CLIENT, {"stream": ns.STREAMS})]
                )
                return
            if el.name == "close":
                conn.events([StreamClosed()])
                return
        if self._expect_open:
            self._refuse(StreamErrorCondition.BAD_FORMAT, "the stream begins with <open/>")
            return
        conn.events([Stanza(el)])

    def _refuse(self, condition: StreamErrorCondition, text: str) -> None:
        if self.connection is not None:
            self.connection.protocol_error(PeerProtocolError(condition, text))

    def _see_other(self) -> None:
        """RFC 7395 §3.6.1: the endpoint moved; the client reconnects there."""
        uri = escape_attr(self._options.see_other_uri or "")
        self.send_messages([f"<close xmlns='{ns.FRAMING}' see-other-uri=\"{uri}\"/>".encode()])
        conn = self.connection
        if conn is not None:
            conn.connection_lost()
        self.close()


class WebSocketTransport(XmppWebSocket):
    """One WebSocket connection, read and written through aiohttp's
    `WebSocketResponse`, carrying one XMPP stream."""

    def __init__(
        self,
        ctx: ServerContext,
        ws: web.WebSocketResponse,
        facts: ConnectionFacts,
        options: WebSocketOptions,
        wire: asyncio.BaseTransport | None = None,
    ) -> None:
        super().__init__(ctx, facts, options)
        self._ws = ws
        self._paused = False
        self._resumed: asyncio.Future[None] | None = None
        #: the socket frames are written to ourselves; None: aiohttp writes them
        #: (compression was negotiated, or there is no socket to write to)
        self._socket = cast(asyncio.WriteTransport, wire) if wire is not None else None
        self._wire: asyncio.WriteTransport | None = self._socket if not ws.compress else None
        #: aborts the socket CLOSE_TIMEOUT seconds after the close began
        self._abort_timer: asyncio.TimerHandle | None = None
        #: messages for aiohttp's writer (compressed connections only)
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        #: reading messages (`read_loop` runs): closing must wake it, unless the
        #: close comes from a message being handled (`_in_message`): the loop
        #: then ends by itself right after it, and closes the WebSocket
        self._reading = False
        self._pong_task: asyncio.Future[None] | None = None

    def _drop_queued(self) -> None:
        self._outbox.clear()
        self._outbox_bytes = 0

    # ------------------------------------------------------------ Transport

    def close(self) -> None:
        """Close the WebSocket once the queued messages are written."""
        if self._closing:
            return
        self._closing = True
        socket = self._socket
        if socket is not None and self._abort_timer is None:
            # A client that does not read never lets the close frame (or aiohttp's
            # close of the socket) through: cut it off, as TCP does.
            self._abort_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, socket.abort)
        if self._wire is None:
            self._start_writer()
            assert self._wake is not None
            self._wake.set()
        elif self._reading and not self._in_message:
            # aiohttp's close() ends the pending receive() as well
            self._writer = asyncio.ensure_future(self._close_ws())

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        resumed, self._resumed = self._resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    # ------------------------------------------------------------ output

    def send_messages(self, messages: list[bytes]) -> None:
        wire = self._wire
        if wire is None:
            self._queue(messages)
            return
        if wire.is_closing() or self._ws.closed:
            return  # the WebSocket is closing: nothing may follow its close frame
        if len(messages) == 1:
            wire.write(text_frame(messages[0]))
        else:
            wire.write(b"".join([text_frame(m) for m in messages]))
        if self._max_output >= 0 and wire.get_write_buffer_size() > self._max_output:
            self._output_overflow()

    def _queue(self, messages: list[bytes]) -> None:
        if self._closing and not self._outbox and self.connection is None:
            return
        self._outbox.extend(messages)
        self._outbox_bytes += sum(len(m) for m in messages)
        self._start_writer()
        assert self._wake is not None
        self._wake.set()
        if self._max_output >= 0 and self._outbox_bytes > self._max_output:
            self._output_overflow()

    def _start_writer(self) -> None:
        if self._writer is None:
            self._wake = asyncio.Event()
            self._writer = asyncio.ensure_future(self._write_loop())

    async def _write_loop(self) -> None:
        """Compressed connections: write queued messages in order through aiohttp;
        close the WebSocket when asked to."""
        ws = self._ws
        wake = self._wake
        assert wake is not None
        try:
            while True:
                await wake.wait()
                wake.clear()
                while self._outbox:
                    message = self._outbox.popleft()
                    self._outbox_bytes -= len(message)
                    await ws.send_frame(message, WSMsgType.TEXT)
                if self._closing:
                    break
        except (ConnectionError, RuntimeError) as exc:
            log.debug("WebSocket write failed: %s", exc)
        finally:
            self._outbox.clear()
            await self._close_ws()

    async def _close_ws(self) -> None:
        try:
            if self._ws.closed:
                return
            socket = self._socket
            if self._flooded and socket is not None:
                # aiohttp's close() would read on, through the flood, until the
                # client's close frame: ours goes out after what is queued, and
                # the socket stops reading now and closes once that is written.
                if not socket.is_closing():
                    socket.write(_POLICY_CLOSE)
                    socket.close()
                return
            await self._ws.close(code=self._close_code)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("WebSocket close failed: %s", exc)

    async def finish(self) -> None:
        """The read loop is over: close the WebSocket, after what is queued."""
        self.close()
        if self._writer is not None:
            await self._writer
        await self._close_ws()

    # ------------------------------------------------------------ input

    async def read_loop(self) -> None:
        """Hand each message to the driver, pausing as it asks (see module docstring)."""
        ws = self._ws
        loop = asyncio.get_running_loop()
        self._reading = True
        try:
            while not self._closing:
                if self._paused:
                    resumed = self._resumed = loop.create_future()
                    await resumed
                    continue
                try:
                    msg = await ws.receive()
                except ConnectionError as exc:  # the client vanished
                    log.debug("WebSocket from %s lost: %s", self.facts.remote_address, exc)
                    break
                if msg.type is WSMsgType.TEXT:
                    data = msg.data.encode()
                    conn = self.connection
                    bucket = conn.read_bucket if conn is not None else None
                    self._in_message = True
                    try:
                        self.message(data)
                    finally:
                        self._in_message = False
                    if bucket is not None:
                        wait = bucket.take(len(data), loop.time())
                        if wait:
                            await asyncio.sleep(wait)
                elif msg.type is WSMsgType.PING or msg.type is WSMsgType.PONG:
                    ping = msg.type is WSMsgType.PING
                    pause = self._control_frame(ping, msg.data, loop.time())
                    if pause is None:
                        break
                    if pause:
                        await asyncio.sleep(pause)
                elif msg.type is WSMsgType.BINARY:
                    self._refuse(
                        StreamErrorCondition.BAD_FORMAT, "XMPP messages are text (RFC 7395)"
                    )
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                elif msg.type is WSMsgType.ERROR:
                    log.info(
                        "WebSocket from %s failed: %s", self.facts.remote_address, ws.exception()
                    )
                    break
        finally:
            self._reading = False

    def _pong(self, payload: bytes) -> None:
        wire = self._wire
        if self._closing or self._ws.closed:
            return  # nothing may follow our close frame
        if wire is not None:
            if not wire.is_closing():
                # a control frame's payload is at most 125 bytes (§5.5): aiohttp checked
                wire.write(frame(ws_frames.PONG, payload))
            return
        # compressed connection: aiohttp's writer owns the frames
        self._pong_task = asyncio.ensure_future(self._send_pong(payload))

    async def _send_pong(self, payload: bytes) -> None:
        try:
            await self._ws.pong(payload)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("WebSocket pong failed: %s", exc)


async def handle(
    request: web.Request,
    ctx: ServerContext,
    settings: NegotiationSettings,
    facts: ConnectionFacts,
    options: WebSocketOptions,
) -> web.StreamResponse:
    """The WebSocket endpoint: the handshake, then one XMPP stream until either side
    closes."""
    if not offers_xmpp(request):
        raise web.HTTPBadRequest(
            text="XMPP over WebSocket needs the subprotocol 'xmpp' (RFC 7395 §3.1)\n"
        )
    limits = ctx.config.limits
    ws = web.WebSocketResponse(
        protocols=(SUBPROTOCOL,),
        heartbeat=options.ping_interval or None,
        # PINGs and PONGs come to read_loop, which charges and answers them (aiohttp
        # would answer them inside receive(), unaccounted for).  The heartbeat does
        # not need autoping: any frame received, a PONG included, resets it.
        autoping=False,
        # Bigger messages are cut off by aiohttp (close code 1009); up to this, the
        # framed parser answers an oversized one with a stream error.
        max_msg_size=2 * limits.max_stanza_size,
    )
    await ws.prepare(request)
    transport = WebSocketTransport(ctx, ws, facts, options, request.transport)
    conn = transport.connection = C2SConnection(ctx, transport, settings)
    try:
        await transport.read_loop()
    finally:
        conn.connection_lost()
        await transport.finish()
    return ws
