"""TCP transport adapter (RFC 6120 §3): plain with STARTTLS, or direct TLS (XEP-0368).

An asyncio Protocol (not streams: one callback per read, no per-read task).  It
only moves bytes: TLS records go through `ServerTlsConnection` (pyOpenSSL on
memory BIOs, see `openssl_tls.py`), plaintext goes to the parser, whose events
go to the connection driver; the driver's writes go back the same way.  It
never interprets XMPP.

TLS, both ways, is done here rather than by the event loop, because the session
needs what only OpenSSL can tell (the tls-exporter binding, the extended master
secret, a client certificate checked by our own callback):

* direct TLS: the connection driver is created only once the handshake is
  complete, so the very first stream features already know the channel
  bindings and the client certificate;
* STARTTLS: `start_tls()` switches the byte path to TLS at once and returns
  the new facts when the handshake is complete.  Plaintext that arrives with
  the handshake's last flight belongs to the restarted stream: it is held until
  the driver resets the parser (RFC 6120 §5.4.3.3), then fed to the new one.

A handshake that takes longer than `HANDSHAKE_TIMEOUT` seconds, or fails, closes
the connection; with `needed` client certificates that is also how a client
without a trusted certificate is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from chatgate.vocabulary.errors import PeerProtocolError, StreamErrorCondition
from chatgate.vocabulary.facts import ConnectionFacts
from chatgate.xml.parser import StreamParseError, XmlStreamParser
from chatgate.xmpp.c2s import C2SConnection, Hibernation, TlsUpgrade
from chatgate.xmpp.output import TcpStreamOutput
from chatgate.xmpp.transports.openssl_tls import ServerTls, ServerTlsConnection, TlsError

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.xmpp.negotiation import NegotiationSettings

log = logging.getLogger(__name__)

#: Bytes buffered for a slow reader before its connection stops being read from.
WRITE_HIGH_WATER = 1 << 20
#: Seconds a TLS handshake may take (as asyncio's default ssl_handshake_timeout).
HANDSHAKE_TIMEOUT = 30.0
#: Seconds a closed connection may take to flush what it owes its peer; a peer
#: that does not read by then is cut off (its buffer would otherwise live forever).
CLOSE_TIMEOUT = 10.0
#: Seconds the peer's input is still read (and dropped) after we closed our side.
LINGER = 2.0

# Why reading is paused; each reason is lifted on its own, and the socket is read
# again only when none is left (a slow reader's own back-pressure must not undo
# the driver's queue limit, nor the reverse).
_QUEUE = 1  # the driver's in-order queue is full (`pause_reading`)
_WRITE = 2  # the peer does not read what we send (`pause_writing`)
_RATE = 4  # the peer sent faster than its byte rate
_SLICE = 8  # one slice was parsed this loop turn; the rest waits for the next


_BLANK_FACTS: dict[str, ConnectionFacts] = {}


def _blank_facts(domain: str) -> ConnectionFacts:
    """The facts of a connection not made yet (one per main domain, shared)."""
    facts = _BLANK_FACTS.get(domain)
    if facts is None:
        facts = _BLANK_FACTS[domain] = ConnectionFacts(domain=domain)
    return facts


class TcpTransport(asyncio.Protocol):
    """One client TCP connection."""

    __slots__ = (
        "_address",
        "_backlog",
        "_close_timer",
        "_direct_tls",
        "_handshake",
        "_handshake_timer",
        "_held",
        "_holding",
        "_linger_timer",
        "_lingering",
        "_loop",
        "_max_output",
        "_parser",
        "_paused",
        "_server_tls",
        "_settings",
        "_socket_paused",
        "_tls",
        "_transport",
        "connection",
        "ctx",
        "facts",
        "hibernation",
        "name",
        "reads",
        "tls_upgrade",
    )

    def __init__(
        self,
        ctx: ServerContext,
        settings: Callable[[], NegotiationSettings],
        tls: ServerTls | None,
        direct_tls: bool,
    ) -> None:
        if direct_tls and tls is None:
            raise ValueError("direct TLS needs a TLS configuration")
        self.ctx = ctx
        self._settings = settings
        self._server_tls = tls
        self.name = "tls" if direct_tls else "tcp"
        self._direct_tls = direct_tls
        self._transport: asyncio.Transport | None = None
        self.connection: C2SConnection | None = None
        self._parser = self._new_parser()
        #: reads handed to the parser so far (idleness is judged by its change)
        self.reads = 0
        self._tls: ServerTlsConnection | None = None
        self._handshake: asyncio.Future[ConnectionFacts] | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        #: STARTTLS: hold plaintext until the driver restarts the stream
        self._holding = False
        self._held: list[bytes] | None = None
        #: plaintext received but not yet parsed (reading is paused meanwhile)
        self._backlog: list[bytes] | None = None
        self._paused = 0  # a set of the _QUEUE, _WRITE, _RATE, _SLICE bits
        self._socket_paused = False
        self._max_output = ctx.config.limits.max_output_buffer
        self._close_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._lingering = False
        self._address: str | None = None
        #: until `connection_made` knows the peer (facts are frozen: one is shared)
        self.facts = _blank_facts(ctx.domain)
        #: optional capabilities (`c2s.Transport`): STARTTLS where the listener has
        #: TLS and the connection is not TLS already; parser hibernation always
        self.tls_upgrade: TlsUpgrade | None = self if tls is not None and not direct_tls else None
        self.hibernation: Hibernation | None = self

    def _new_parser(self) -> XmlStreamParser:
        """A parser for the next stream: with the small pre-authentication stanza
        limit until SASL has succeeded (the restart after it gets the full one)."""
        limits = self.ctx.config.limits
        conn = self.connection
        authenticated = conn is not None and conn.negotiation.authenticated_user is not None
        size = limits.max_stanza_size if authenticated else limits.preauth_max_stanza_size
        return XmlStreamParser(max_stanza_bytes=size, max_depth=limits.max_depth)

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        self._address = peer[0] if isinstance(peer, tuple) else None
        self.facts = ConnectionFacts(domain=self.ctx.domain, remote_address=self._address)
        if self._direct_tls:
            self._begin_tls()  # the driver starts when the handshake is done
        else:
            self.connection = C2SConnection(self.ctx, self, self._settings())

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # closed on our side: the peer's last bytes are dropped
        tls = self._tls
        if tls is not None:
            try:
                data, out = tls.receive(data)
            except TlsError as exc:
                self._tls_failed(exc)
                return
            if out:
                self._write_raw(out)
            if tls.handshake_complete and self._handshake_pending():
                self._handshake_done()
            if tls.closed:
                self._feed(data)
                self.close()
                return
            if not data:
                return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        if not data:
            return
        if self._holding:
            if self._held is None:
                self._held = []
            self._held.append(data)
            return
        conn = self.connection
        if conn is None or conn.closed:
            return
        if self._paused or self._backlog is not None:
            self._hold_back(data)
            return
        # One slice per loop turn (fairness), charged to the peer's byte rate.
        limit = conn.read_slice
        if len(data) > limit:
            self._hold_back(data[limit:])
            data = data[:limit]
            self._pause(_SLICE)
            asyncio.get_running_loop().call_soon(self._resume, _SLICE)
        bucket = conn.read_bucket
        if bucket is not None:
            wait = bucket.take(len(data), self._loop.time())
            if wait and not self._paused & _RATE:
                self._pause(_RATE)
                self._loop.call_later(wait, self._resume, _RATE)
        self.reads += 1
        try:
            events = self._parser.feed(data)
        except StreamParseError as exc:
            # Stanzas completed before the bad bytes in the same read are processed
            # first, as they would have been had they arrived in an earlier read.
            if exc.events:
                conn.events(exc.events)
            conn.protocol_error(exc)
            return
        except PeerProtocolError as exc:
            conn.protocol_error(exc)
            return
        if events:
            conn.events(events)

    def hibernate(self) -> bool:
        """Free the XML parser of an idle connection that is between stanzas; True
        only when this call freed it."""
        parser = self._parser
        return not parser.hibernating and parser.hibernate()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._parser.close()
        self._backlog = None
        for timer in (self._close_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._linger_timer = None
        self._cancel_handshake_timer()
        self._fail_handshake(ConnectionError("connection closed during the TLS handshake"))
        if self.connection is not None:
            self.connection.connection_lost()

    def pause_writing(self) -> None:
        # The peer is not reading: stop reading from it too, so it cannot make us
        # buffer; from now on every write checks the output limit.
        self._pause(_WRITE)

    def resume_writing(self) -> None:
        self._resume(_WRITE)

    # ------------------------------------------------------------ reading, paused for reasons

    def _pause(self, reason: int) -> None:
        self._paused |= reason
        self._sync_reading()

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self._backlog is not None:
            # The socket stays paused until what waited is parsed: reading on while
            # a backlog drains one slice a turn would let it grow by a read a turn.
            asyncio.get_running_loop().call_soon(self._release_backlog)
        else:
            self._sync_reading()

    def _sync_reading(self) -> None:
        """Read from the socket exactly when there is no reason to pause and nothing waits."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        pause = bool(self._paused) or self._backlog is not None
        if pause != self._socket_paused:
            self._socket_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _hold_back(self, data: bytes) -> None:
        if self._backlog is None:
            self._backlog = [data]
            self._sync_reading()
        else:
            self._backlog.append(data)

    def _release_backlog(self) -> None:
        """Parse what waited while reading was paused, in order; a new pause keeps
        the rest for later (`_feed` appends behind whatever it holds back)."""
        if self._paused or self._backlog is None:
            return  # a reason came back meanwhile: its `_resume` calls again
        backlog, self._backlog = self._backlog, None
        for chunk in backlog:
            self._feed(chunk)
        self._sync_reading()

    # ------------------------------------------------------------ Transport (for C2SConnection)

    def output(self, loop: asyncio.AbstractEventLoop) -> TcpStreamOutput:
        return TcpStreamOutput(self.write, loop)

    def write(self, data: bytes) -> None:
        tls = self._tls
        if tls is not None:
            if self._transport is None or self._transport.is_closing():
                return  # nothing can reach the peer: no encryption for it either
            data = tls.send(data)
            if not data:
                return
        transport = self._transport  # `_write_raw`, inlined: once per flushed turn
        if transport is not None and not transport.is_closing():
            transport.write(data)
        if (
            self._paused & _WRITE
            and transport is not None
            and self._max_output >= 0
            and transport.get_write_buffer_size() > self._max_output
        ):
            self._output_overflow()

    def _output_overflow(self) -> None:
        """The peer left more than `max_output_buffer` bytes unread: its session ends
        (ejabberd's queue limit), so the senders' stanzas stop piling up here."""
        conn = self.connection
        if conn is None or conn.closed or self._max_output < 0:
            return
        limit, self._max_output = self._max_output, -1  # once: the stream error passes here too
        who = conn.session.full if conn.session is not None else "-"
        log.warning(
            "closing %s from %s: more than %d bytes of output unread",
            who,
            self._address or "-",
            limit,
        )
        conn.close_stream(
            StreamErrorCondition.POLICY_VIOLATION,
            "too much output waiting: the client does not read",
        )

    def _write_raw(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        """Close after what was written is flushed.  The peer may still be sending
        (a stanza over the limit, a flood): closing a socket with unread input makes
        the kernel answer with a reset, which can destroy the stream error on its
        way.  So our side is shut first and the peer's last bytes are read and
        dropped for `LINGER` seconds (nginx's lingering close); a peer that does not
        read what we owe it is cut off after `CLOSE_TIMEOUT`."""
        if self._lingering:
            return
        self._lingering = True
        self._backlog = None
        if self._tls is not None:
            out = self._tls.close()
            if out:
                self._write_raw(out)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        if transport.get_write_buffer_size():
            self._close_timer = loop.call_later(CLOSE_TIMEOUT, transport.abort)
        conn = self.connection
        if not transport.can_write_eof() or (conn is not None and conn.peer_closed):
            transport.close()  # the client ended its stream: no input left to drain
            return
        transport.write_eof()
        if self._socket_paused:
            self._socket_paused = False
            transport.resume_reading()
        self._linger_timer = loop.call_later(LINGER, transport.close)

    def restart_stream(self) -> None:
        self._parser.close()
        self._parser = self._new_parser()
        if self._holding:
            # The driver restarted the stream after STARTTLS: what arrived with the
            # handshake belongs to the new stream (fed after this call returns).
            self._holding = False
            if self._held:
                asyncio.get_running_loop().call_soon(self._release_held)

    def _release_held(self) -> None:
        held, self._held = self._held or [], None
        for chunk in held:
            self._feed(chunk)

    def pause_reading(self) -> None:
        """The driver's queue is full (see `C2SConnection._element`)."""
        self._pause(_QUEUE)

    def resume_reading(self) -> None:
        self._resume(_QUEUE)

    async def start_tls(self) -> ConnectionFacts:
        """STARTTLS (RFC 6120 §5.4.3.3): from now on every byte is TLS."""
        if self._server_tls is None or self._tls is not None:
            raise ConnectionError("STARTTLS is not available on this connection")
        self._holding = True
        handshake = self._begin_tls()
        return await handshake

    # ------------------------------------------------------------ TLS

    def _begin_tls(self) -> asyncio.Future[ConnectionFacts]:
        assert self._server_tls is not None
        loop = asyncio.get_running_loop()
        self._tls = self._server_tls.connection()
        self._handshake = loop.create_future()
        self._handshake_timer = loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout)
        return self._handshake

    def _handshake_done(self) -> None:
        self._cancel_handshake_timer()
        assert self._tls is not None and self._handshake is not None
        details = self._tls.details()
        if details.peer_certificate_problem:
            log.info(
                "client certificate from %s not trusted: %s",
                self._address or "-",
                details.peer_certificate_problem,
            )
        self.facts = ConnectionFacts(
            domain=self.ctx.domain,
            tls_active=True,
            tls_version=details.version,
            channel_bindings=details.channel_bindings,
            peer_certificate_der=details.peer_certificate_der,
            remote_address=self._address,
        )
        if not self._handshake.done():
            self._handshake.set_result(self.facts)
        if self._direct_tls and self.connection is None:
            self.connection = C2SConnection(self.ctx, self, self._settings())

    def _tls_failed(self, exc: TlsError) -> None:
        log.info("TLS failed from %s: %s", self._address or "-", exc)
        if exc.outgoing:
            self._write_raw(exc.outgoing)
        self._tls_abort(exc)

    def _handshake_timeout(self) -> None:
        self._handshake_timer = None
        log.info("TLS handshake from %s took too long", self._address or "-")
        self._tls_abort(TimeoutError("TLS handshake timed out"))

    def _tls_abort(self, exc: Exception) -> None:
        self._cancel_handshake_timer()
        self._fail_handshake(ConnectionError(str(exc)))
        if self._transport is not None:
            self._transport.close()

    def _handshake_pending(self) -> bool:
        return self._handshake is not None and not self._handshake.done()

    def _fail_handshake(self, exc: Exception) -> None:
        if self._handshake_pending():
            assert self._handshake is not None
            self._handshake.set_exception(exc)
            self._handshake.exception()  # retrieved: a direct-TLS handshake has no awaiter

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
