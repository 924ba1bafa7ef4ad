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

from chatgate.sasl.base import ConnectionFacts
from chatgate.xml.parser import StreamParseError, XmlStreamParser
from chatgate.xmpp.c2s import C2SConnection
from chatgate.xmpp.errors import PeerProtocolError
from chatgate.xmpp.transports.openssl_tls import ServerTls, ServerTlsConnection, TlsError

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.xmpp.negotiation import NegotiationSettings

log = logging.getLogger(__name__)

#: Bytes buffered for a slow reader before its connection stops being read from.
WRITE_HIGH_WATER = 1 << 20
#: Seconds a TLS handshake may take (as asyncio's default ssl_handshake_timeout).
HANDSHAKE_TIMEOUT = 30.0


class TcpTransport(asyncio.Protocol):
    """One client TCP connection."""

    __slots__ = (
        "_address",
        "_direct_tls",
        "_handshake",
        "_handshake_timer",
        "_held",
        "_holding",
        "_parser",
        "_server_tls",
        "_settings",
        "_tls",
        "_transport",
        "connection",
        "ctx",
        "facts",
        "name",
        "reads",
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
        self._parser = self._new_parser()
        #: reads handed to the parser so far (idleness is judged by its change)
        self.reads = 0
        self._tls: ServerTlsConnection | None = None
        self._handshake: asyncio.Future[ConnectionFacts] | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        #: STARTTLS: hold plaintext until the driver restarts the stream
        self._holding = False
        self._held: list[bytes] | None = None
        self._address: str | None = None
        self.connection: C2SConnection | None = None
        self.facts = ConnectionFacts(domain=ctx.domain)

    def _new_parser(self) -> XmlStreamParser:
        limits = self.ctx.config.limits
        return XmlStreamParser(max_stanza_bytes=limits.max_stanza_size, max_depth=limits.max_depth)

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        self._address = peer[0] if isinstance(peer, tuple) else None
        self.facts = ConnectionFacts(domain=self.ctx.domain, remote_address=self._address)
        if self._direct_tls:
            self._begin_tls()  # the driver starts when the handshake is done
        else:
            self.connection = C2SConnection(self.ctx, self, self._settings())

    def data_received(self, data: bytes) -> None:
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
        self._cancel_handshake_timer()
        self._fail_handshake(ConnectionError("connection closed during the TLS handshake"))
        if self.connection is not None:
            self.connection.connection_lost()

    def pause_writing(self) -> None:
        # The peer is not reading: stop reading from it too, so it cannot make us buffer.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    # ------------------------------------------------------------ Transport (for C2SConnection)

    def write(self, data: bytes) -> None:
        tls = self._tls
        if tls is not None:
            data = tls.send(data)
            if not data:
                return
        self._write_raw(data)

    def _write_raw(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        if self._tls is not None:
            out = self._tls.close()
            if out:
                self._write_raw(out)
        if self._transport is not None:
            self._transport.close()

    def reset_stream(self) -> None:
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
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

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
