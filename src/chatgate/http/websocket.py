"""XMPP over WebSocket (RFC 7395) at `/xmpp-websocket`: a transport for the one
connection driver (`xmpp/c2s.py`), so every rule of a TCP stream applies.

Framing (§3.3-§3.6): one complete element per text message; `<open/>` and
`<close/>` (urn:ietf:params:xml:ns:xmpp-framing) stand for the stream header and
footer; a restart after SASL is a new `<open/>`.  Incoming messages go through a
`FramedParser` (the stream parser's checks and limits, one element per
message), outgoing ones through `WebSocketStreamOutput`, which makes every
element stand alone (`framing.qualify`).

Flow: messages are read one at a time; while the driver's queue is full, or the
client is over its byte rate, the next message is not read (aiohttp then stops
reading the socket).  Output waits in a queue bounded by
`[limits] max_output_buffer`; a client that does not read past it is closed
with `policy-violation`, as on TCP.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from chatgate.http.options import WebSocketOptions
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import PeerProtocolError, StreamErrorCondition
from chatgate.vocabulary.facts import ConnectionFacts
from chatgate.xml.framed import FramedParser
from chatgate.xml.parser import Stanza, StreamClosed, StreamOpened
from chatgate.xml.serialize import escape_attr
from chatgate.xmpp.c2s import C2SConnection, Hibernation, TlsUpgrade
from chatgate.xmpp.framing import StreamError, StreamHeader, qualify

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.xmpp.negotiation import NegotiationSettings

log = logging.getLogger(__name__)

SUBPROTOCOL = "xmpp"
_CLOSE = f"<close xmlns='{ns.FRAMING}'/>"


def offers_xmpp(request: web.Request) -> bool:
    """The handshake asks for the `xmpp` subprotocol (RFC 7395 §3.1)."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    return SUBPROTOCOL in (p.strip() for p in offered.split(","))


def open_element(header: StreamHeader) -> str:
    """`<open/>`, the server's answer to the client's (RFC 7395 §3.4)."""
    to = f' to="{escape_attr(header.to)}"' if header.to else ""
    return (
        f"<open xmlns='{ns.FRAMING}' from=\"{escape_attr(header.from_)}\"{to}"
        f" id=\"{header.stream_id}\" version='1.0' xml:lang='{header.lang}'/>"
    )


class WebSocketStreamOutput:
    """`StreamOutput` for RFC 7395: each element one message, a loop turn's messages
    handed to the transport together."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: WebSocketTransport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[str] | None = None

    def header(self, header: StreamHeader) -> None:
        self._add(open_element(header))

    def features(self, children: str) -> None:
        self._add(f"<stream:features xmlns:stream='{ns.STREAMS}'>{children}</stream:features>")

    def element(self, data: bytes) -> None:
        self._add(qualify(data).decode())

    def end(self, error: StreamError | None) -> None:
        if error is not None:
            self._add(error.element(stream_prefix_declared=False))
        self._add(_CLOSE)
        self.flush()

    def _add(self, message: str) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [message]
            self._loop.call_soon(self.flush)
        else:
            pending.append(message)

    def flush(self) -> None:
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._transport.send_messages(pending)

    def discard(self) -> None:
        self._pending = None


class WebSocketTransport:
    """One WebSocket connection carrying one XMPP stream."""

    name = "websocket"
    #: no STARTTLS (the connection is TLS or not from the start: wss:// or ws://)
    tls_upgrade: TlsUpgrade | None = None
    #: the framed parser is small; idle WebSocket sessions keep it
    hibernation: Hibernation | None = None

    def __init__(
        self,
        ctx: ServerContext,
        ws: web.WebSocketResponse,
        facts: ConnectionFacts,
        options: WebSocketOptions,
    ) -> None:
        self.ctx = ctx
        self.facts = facts
        self._ws = ws
        self._options = options
        limits = ctx.config.limits
        self._parser = FramedParser(
            max_stanza_bytes=limits.preauth_max_stanza_size, max_depth=limits.max_depth
        )
        #: the next message must be `<open/>` (the start, and after a restart)
        self._expect_open = True
        self._readable = asyncio.Event()
        self._readable.set()
        self._outbox: deque[str] = deque()
        self._outbox_bytes = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._max_output = limits.max_output_buffer
        self.connection: C2SConnection | None = None

    # ------------------------------------------------------------ Transport

    def output(self, loop: asyncio.AbstractEventLoop) -> WebSocketStreamOutput:
        return WebSocketStreamOutput(self, loop)

    def close(self) -> None:
        """Close the WebSocket once the queued messages are written."""
        self._closing = True
        self._wake.set()

    def restart_stream(self) -> None:
        self._expect_open = True
        conn = self.connection
        limits = self.ctx.config.limits
        authenticated = conn is not None and conn.negotiation.authenticated_user is not None
        size = limits.max_stanza_size if authenticated else limits.preauth_max_stanza_size
        self._parser = FramedParser(max_stanza_bytes=size, max_depth=limits.max_depth)

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    # ------------------------------------------------------------ output

    def send_messages(self, messages: list[str]) -> None:
        if self._closing and not self._outbox and self.connection is None:
            return
        self._outbox.extend(messages)
        self._outbox_bytes += sum(len(m) for m in messages)
        self._wake.set()
        if self._max_output >= 0 and self._outbox_bytes > self._max_output:
            self._output_overflow()

    def _output_overflow(self) -> None:
        conn = self.connection
        limit, self._max_output = self._max_output, -1  # once: the stream error comes here too
        if conn is None or conn.closed:
            return
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

    async def write_loop(self) -> None:
        """Write queued messages in order; close the WebSocket when asked to."""
        ws = self._ws
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    message = self._outbox.popleft()
                    self._outbox_bytes -= len(message)
                    await ws.send_str(message)
                if self._closing:
                    break
        except (ConnectionError, RuntimeError) as exc:
            log.debug("WebSocket write failed: %s", exc)
        finally:
            self._outbox.clear()
            if not ws.closed:
                await ws.close()

    # ------------------------------------------------------------ input

    async def read_loop(self) -> None:
        """Hand each message to the driver, pausing as it asks (see module docstring)."""
        ws = self._ws
        loop = asyncio.get_running_loop()
        while not self._closing:
            if not self._readable.is_set():
                await self._readable.wait()
                continue
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                data = msg.data.encode()
                conn = self.connection
                bucket = conn.read_bucket if conn is not None else None
                self.message(data)
                if bucket is not None:
                    wait = bucket.take(len(data), loop.time())
                    if wait:
                        await asyncio.sleep(wait)
            elif msg.type is WSMsgType.BINARY:
                self._refuse(StreamErrorCondition.BAD_FORMAT, "XMPP messages are text (RFC 7395)")
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            elif msg.type is WSMsgType.ERROR:
                log.info("WebSocket from %s failed: %s", self.facts.remote_address, ws.exception())
                break

    def message(self, data: bytes) -> None:
        """One text message: one element of the stream."""
        conn = self.connection
        if conn is None or conn.closed:
            return  # after <close/> nothing more is processed (RFC 7395 §3.6)
        try:
            el = self._parser.parse(data)
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
        self.send_messages([f"<close xmlns='{ns.FRAMING}' see-other-uri=\"{uri}\"/>"])
        conn = self.connection
        if conn is not None:
            conn.connection_lost()
        self.close()


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
        # Bigger messages are cut off by aiohttp (close code 1009); up to this, the
        # framed parser answers an oversized one with a stream error.
        max_msg_size=2 * limits.max_stanza_size,
    )
    await ws.prepare(request)
    transport = WebSocketTransport(ctx, ws, facts, options)
    writer = asyncio.ensure_future(transport.write_loop())
    conn = transport.connection = C2SConnection(ctx, transport, settings)
    try:
        await transport.read_loop()
    finally:
        conn.connection_lost()
        transport.close()
        await writer
    return ws
