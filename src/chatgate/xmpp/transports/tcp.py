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
from typing import TYPE_CHECKING

from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.vocabulary.facts import ConnectionFacts
from chatgate.xml.parser import XmlStreamParser
from chatgate.xmpp.c2s import C2SConnection, Hibernation, TlsUpgrade
from chatgate.xmpp.output import TcpStreamOutput
from chatgate.xmpp.transports.openssl_tls import ServerTls, ServerTlsConnection, TlsError
from chatgate.xmpp.transports.pacing import WRITE, PacedReader

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.xmpp.negotiation import NegotiationSettings

log = logging.getLogger(__name__)

#: Seconds a TLS handshake may take (as asyncio's default ssl_handshake_timeout).
HANDSHAKE_TIMEOUT = 30.0
#: Seconds a closed connection may take to flush what it owes its peer; a peer
#: that does not read by then is cut off (its buffer would otherwise live forever).
CLOSE_TIMEOUT = 10.0
#: Seconds the peer's input is still read (and dropped) after we closed our side.
LINGER = 2.0

_BLANK_FACTS: dict[str, ConnectionFacts] = {}


def _blank_facts(domain: str) -> ConnectionFacts:
    """The facts of a connection not made yet (one per main domain, shared)."""
    facts = _BLANK_FACTS.get(domain)
    if facts is None:
        facts = _BLANK_FACTS[domain] = ConnectionFacts(domain=domain)
    return facts


class TcpTransport(PacedReader, asyncio.Protocol):
    """One client TCP connection (read as `pacing.PacedReader` says)."""

    __slots__ = (
        "_address",
        "_close_timer",
        "_direct_tls",
        "_handshake",
        "_handshake_timer",
        "_linger_timer",
        "_max_output",
        "_parser",
        "_server_tls",
        "_settings",
        "_tls",
        "connection",
        "ctx",
        "facts",
        "hibernation",
        "name",
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
        self.connection: C2SConnection | None = None
        self._parser = self._new_parser()
        self._init_reading()
        self._tls: ServerTlsConnection | None = None
        self._handshake: asyncio.Future[ConnectionFacts] | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._max_output = ctx.config.limits.max_output_buffer
        self._close_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
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
        self._address = self._attach(transport)
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

    def hibernate(self) -> bool:
        """Free the XML parser of an idle connection that is between stanzas; True
        only when this call freed it."""
        parser = self._parser
        return not parser.hibernating and parser.hibernate()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._parser.close()
        self._stop_reading()
        for timer in (self._close_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._linger_timer = None
        self._cancel_handshake_timer()
        self._fail_handshake(ConnectionError("connection closed during the TLS handshake"))
        if self.connection is not None:
            self.connection.connection_lost()

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
            self._paused & WRITE
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
