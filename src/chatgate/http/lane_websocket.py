"""XMPP over WebSocket (RFC 7395) on the listener's lane: the handshake and the
frames are ours, the XMPP rules are `websocket.XmppWebSocket`'s.

Why not aiohttp's WebSocketResponse: each message went through its reader's
queue and a task switch, and the handshake through its request and response
machinery; a WebSocket login cost half again what a TCP login does
(docs/benchmarks.md).  Here frames are read in `data_received`, as a TCP
stream's bytes are, and a loop turn's messages leave in one write.

Flow and limits, as on TCP: at most `READ_SLICE` bytes of messages are handled
per loop turn; once the turn's parsing budget is spent (`turns.TurnBudget`, shared
with TCP), a connection read later waits for the next turn, first in line, so a
busy turn does not hold back everyone's output; the connection's byte rate and
the driver's queue pause the
socket (`pause_reading`); a message over twice `[limits] max_stanza_size` ends
the connection with 1009 as soon as its frame header says so; output waiting
in the socket's buffer past `[limits] max_output_buffer` ends the stream with
`policy-violation`; a close that the client does not complete within
`CLOSE_TIMEOUT` aborts the socket.  With `[http.websocket] ping_interval`, a
connection silent that long gets a PING, and one that sends nothing within
half an interval after it is dropped.  No extension (permessage-deflate) is agreed: compressing
a stream that carries passwords and tokens next to attacker-chosen text is
what CRIME and BREACH exploit, and XMPP messages are small.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from typing import TYPE_CHECKING

from chatgate.http import ws_frames
from chatgate.http.options import WebSocketOptions
from chatgate.http.request_head import RequestHead
from chatgate.http.websocket import SUBPROTOCOL, XmppWebSocket
from chatgate.http.ws_frames import FrameError, MessageReader
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.vocabulary.facts import ConnectionFacts
from chatgate.xmpp.c2s import C2SConnection
from chatgate.xmpp.transports.tcp import CLOSE_TIMEOUT
from chatgate.xmpp.transports.turns import turn_budget

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.xmpp.negotiation import NegotiationSettings

log = logging.getLogger(__name__)

#: bytes of messages handled per loop turn before others get theirs
READ_SLICE = 65_536
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _tokens(value: bytes | None) -> set[bytes]:
    if not value:
        return set()
    return {t.strip().lower() for t in value.split(b",")}


def handshake_answer(head: RequestHead) -> bytes | None:
    """The 101 response to a valid RFC 6455 §4.2.1 handshake asking for the `xmpp`
    subprotocol; None for any other request (aiohttp then answers it)."""
    headers = head.headers
    if head.method != b"GET" or head.version < (1, 1) or head.content_length:
        return None
    if b"websocket" not in _tokens(headers.get(b"upgrade")):
        return None
    if b"upgrade" not in _tokens(headers.get(b"connection")):
        return None
    if headers.get(b"sec-websocket-version") != b"13":
        return None
    key = headers.get(b"sec-websocket-key", b"")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except ValueError:
        return None
    offered = headers.get(b"sec-websocket-protocol", b"").split(b",")
    if SUBPROTOCOL.encode() not in (p.strip() for p in offered):
        return None
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n" % accept
    )


class LaneWebSocket(XmppWebSocket):
    """One WebSocket connection after the lane's handshake: frames in and out."""

    def __init__(
        self,
        ctx: ServerContext,
        facts: ConnectionFacts,
        options: WebSocketOptions,
        settings: NegotiationSettings,
        transport: asyncio.Transport,
    ) -> None:
        super().__init__(ctx, facts, options)
        self._transport = transport
        self._loop = loop = asyncio.get_running_loop()
        self._reader = MessageReader(2 * ctx.config.limits.max_stanza_size)
        #: the driver asked us to stop reading (its queue is full)
        self._paused = False
        #: reading waits for the byte rate or the next loop turn
        self._waiting: asyncio.TimerHandle | asyncio.Handle | None = None
        #: the loop's parsing budget, and whether this connection waits in its queue
        self._turns = turn_budget(loop)
        self._deferred = False
        self._close_sent = False
        self._close_received = False
        self._abort_timer: asyncio.TimerHandle | None = None
        self._last_read = loop.time()
        #: when the PING awaiting an answer was sent (None: none is)
        self._ping_at: float | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        if options.ping_interval:
            self._heartbeat = loop.call_later(options.ping_interval, self._beat)
        self.connection = C2SConnection(ctx, self, settings)

    # ------------------------------------------------------------ from the lane

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        self._reader.feed(data)
        if self._deferred:
            # a second read while waiting for our turn: the socket waits too, so
            # what the reader holds is at most two reads (as on TCP)
            self._transport.pause_reading()
            return
        if self._waiting is None and not self._paused:
            if self._turns.spent():
                # This turn has parsed enough: ours is the next, first in line.  The
                # socket is not paused for a wait of one turn (two system calls).
                self._deferred = True
                self._turns.defer(self)
                return
            self._read()

    def eof_received(self) -> None:
        """The client shut its side: the stream is over (as TCP's end of input)."""
        self._gone()
        if not self._transport.is_closing():
            self._transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._waiting, self._abort_timer, self._heartbeat):
            if timer is not None:
                timer.cancel()
        self._waiting = self._abort_timer = self._heartbeat = None
        self._gone()

    # ------------------------------------------------------------ Transport

    def pause_reading(self) -> None:
        if not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._waiting is None:
            # messages already read wait in the reader: the next turn handles them,
            # and reads the socket again only once they are all handled
            self._waiting = self._loop.call_soon(self._read_on)

    def send_messages(self, messages: list[bytes]) -> None:
        transport = self._transport
        if self._close_sent or transport.is_closing():
            return  # nothing may follow our close frame (RFC 6455 §5.5.1)
        text = ws_frames.TEXT
        if len(messages) == 1:
            transport.write(ws_frames.frame(text, messages[0]))
        else:
            transport.write(b"".join([ws_frames.frame(text, m) for m in messages]))
        if self._max_output >= 0 and transport.get_write_buffer_size() > self._max_output:
            self._output_overflow()

    def send_last(self, messages: list[bytes]) -> None:
        """The last messages and our close frame in one write (a login's last
        exchange: one system call fewer)."""
        transport = self._transport
        if self._close_sent or transport.is_closing():
            return
        self._close_sent = True
        frames = [ws_frames.frame(ws_frames.TEXT, m) for m in messages]
        frames.append(ws_frames.frame(ws_frames.CLOSE, self._close_code.to_bytes(2, "big")))
        transport.write(b"".join(frames))

    def close(self) -> None:
        """Our close frame, after what was written (unless `send_last` sent it);
        the socket closes when the client answers it, or `CLOSE_TIMEOUT` later."""
        if self._closing:
            return
        self._closing = True
        transport = self._transport
        if transport.is_closing():
            return
        if not self._close_sent:
            self._close_sent = True
            code = self._close_code.to_bytes(2, "big")
            transport.write(ws_frames.frame(ws_frames.CLOSE, code))
        if self._close_received or self._flooded:
            transport.close()  # the handshake is complete, or the client is not heard
            return
        self._abort_timer = self._loop.call_later(CLOSE_TIMEOUT, transport.abort)

    def _pong(self, payload: bytes) -> None:
        if not self._close_sent and not self._transport.is_closing():
            self._transport.write(ws_frames.frame(ws_frames.PONG, payload))

    # ------------------------------------------------------------ input

    def _read(self) -> None:
        """Handle the messages read, up to READ_SLICE bytes this turn."""
        budget = READ_SLICE
        reader = self._reader
        while not self._paused:
            try:
                # frame by frame, fragments too: each counts against the slice and
                # the byte rate as it is read, not once its message is whole
                item = reader.step()
            except FrameError as exc:
                self._fail(exc.code, str(exc))
                return
            if item is None:
                return
            opcode, payload = item
            wait = 0.0
            if opcode == ws_frames.TEXT or opcode == ws_frames.FRAGMENT:
                if opcode == ws_frames.TEXT:
                    self._in_message = True
                    try:
                        self.message(payload)
                    finally:
                        self._in_message = False
                conn = self.connection
                bucket = conn.read_bucket if conn is not None else None
                if bucket is not None:
                    # this frame's bytes (a fragmented message's earlier frames
                    # were counted as they came)
                    wait = bucket.take(reader.frame_bytes, self._loop.time())
            elif opcode == ws_frames.PING or opcode == ws_frames.PONG:
                pause = self._control_frame(opcode == ws_frames.PING, payload, self._loop.time())
                if pause is None:
                    return  # closed for a flood
                wait = pause
            elif opcode == ws_frames.CLOSE:
                self._peer_closed(payload)
                return
            else:  # BINARY
                self._refuse(StreamErrorCondition.BAD_FORMAT, "XMPP messages are text (RFC 7395)")
            if self._transport.is_closing():
                return
            budget -= reader.frame_bytes
            if wait > 0 or budget <= 0:
                self._transport.pause_reading()
                self._waiting = self._loop.call_later(wait, self._read_on)
                return

    def _go_on(self) -> None:
        """Our turn came (`TurnBudget`): handle what the reader holds, whatever the
        clock says by now (the slice still bounds it).  A wait that began meanwhile
        (the driver's queue, a rate) keeps its own callback, which reads on."""
        self._deferred = False
        if self._waiting is None:
            self._read_held()

    def _keep_waiting(self) -> None:
        """A turn ran out before ours came: the socket waits until it does."""
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def _read_on(self) -> None:
        """A wait is over (the slice, the byte rate, the driver's queue): read on,
        unless this turn's parsing budget is spent, in which case this connection
        waits for the next turn like one just read (its socket is paused already)."""
        self._waiting = None
        if self._paused or self._transport.is_closing():
            return
        if self._turns.spent():
            if not self._deferred:
                self._deferred = True
                self._turns.defer(self)
            return
        self._read_held()

    def _read_held(self) -> None:
        """Handle what the reader holds, and read the socket again only when it is
        all handled: resuming first would let every turn read more (a socket read
        is up to 256 KiB) than a turn handles, and the backlog would grow without
        bound under a flood."""
        if self._paused or self._transport.is_closing():
            return
        self._read()
        if self._waiting is None and not self._paused and not self._transport.is_closing():
            self._transport.resume_reading()

    def _peer_closed(self, payload: bytes) -> None:
        """The client's close frame: the stream is over; our close frame answers
        it (or completed the handshake we began) and the socket closes."""
        try:
            ws_frames.close_code(payload)
        except FrameError as exc:
            self._fail(exc.code, str(exc))
            return
        self._close_received = True
        self._gone()
        self.close()
        if not self._transport.is_closing():
            self._transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """RFC 6455 §7.1.7: the client broke the protocol: close frame, socket closed."""
        log.info(
            "WebSocket from %s: %s: closed (%d)", self.facts.remote_address or "-", reason, code
        )
        self._close_code = code
        self._flooded = True  # as after a flood: the socket closes without reading on
        self._gone()
        self.close()
        if not self._transport.is_closing():
            self._transport.close()  # a close already begun: no more waiting for the client

    def _gone(self) -> None:
        conn = self.connection
        if conn is not None and not conn.closed:
            conn.connection_lost()

    # ------------------------------------------------------------ keepalive

    def _beat(self) -> None:
        """`ping_interval` after the last frame read: a PING; nothing read within
        half an interval after it: the connection is dropped (aiohttp's rule)."""
        interval = self._options.ping_interval
        loop = self._loop
        now = loop.time()
        ping_at = self._ping_at
        if ping_at is not None:
            if self._last_read < ping_at:
                log.debug("WebSocket from %s: no answer to PING", self.facts.remote_address or "-")
                self._heartbeat = None
                self._gone()
                self._transport.abort()
                return
            self._ping_at = None
        due = self._last_read + interval
        if now < due:
            self._heartbeat = loop.call_later(due - now, self._beat)
            return
        if self._close_sent:
            self._heartbeat = None
            return
        self._ping_at = now
        self._transport.write(ws_frames.frame(ws_frames.PING, b""))
        self._heartbeat = loop.call_later(interval / 2, self._beat)
