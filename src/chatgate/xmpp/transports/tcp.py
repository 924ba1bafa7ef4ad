"""TCP transport adapter (RFC 6120 §3): plain with STARTTLS, or direct TLS (XEP-0368).

An asyncio Protocol (not streams: one callback per read, no per-read task).  It
only moves bytes: the parser turns them into events for the connection driver,
and the driver's writes go straight to the socket.  It never interprets XMPP.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from chatgate.sasl.base import ConnectionFacts
from chatgate.xml.parser import XmlStreamParser
from chatgate.xmpp.c2s import C2SConnection
from chatgate.xmpp.errors import PeerProtocolError

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.xmpp.negotiation import NegotiationSettings

log = logging.getLogger(__name__)

#: Bytes buffered for a slow reader before its connection stops being read from.
WRITE_HIGH_WATER = 1 << 20


class TcpTransport(asyncio.Protocol):
    """One client TCP connection."""

    def __init__(
        self,
        ctx: ServerContext,
        settings: Callable[[], NegotiationSettings],
        tls_context: ssl.SSLContext | None,
        direct_tls: bool,
    ) -> None:
        self.ctx = ctx
        self._settings = settings
        self._tls_context = tls_context
        self.name = "tls" if direct_tls else "tcp"
        self._direct_tls = direct_tls
        self._transport: asyncio.Transport | None = None
        self._parser = self._new_parser()
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
        self.facts = self._facts_from(transport)
        self.connection = C2SConnection(self.ctx, self, self._settings())

    def data_received(self, data: bytes) -> None:
        conn = self.connection
        if conn is None or conn.closed:
            return
        try:
            events = self._parser.feed(data)
        except PeerProtocolError as exc:
            conn.protocol_error(exc)
            return
        if events:
            conn.events(events)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
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
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def reset_stream(self) -> None:
        self._parser = self._new_parser()

    def pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    async def start_tls(self) -> ConnectionFacts:
        assert self._transport is not None and self._tls_context is not None
        loop = asyncio.get_running_loop()
        new = await loop.start_tls(
            self._transport, self, self._tls_context, server_side=True, ssl_handshake_timeout=30
        )
        if new is None:
            raise ConnectionError("connection closed during the TLS handshake")
        new = cast(asyncio.Transport, new)
        self._transport = new
        self.facts = self._facts_from(new)
        return self.facts

    def _facts_from(self, transport: asyncio.Transport) -> ConnectionFacts:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else None
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return ConnectionFacts(domain=self.ctx.domain, remote_address=address)
        return ConnectionFacts(
            domain=self.ctx.domain,
            tls_active=True,
            tls_version=ssl_object.version(),
            peer_certificate_der=ssl_object.getpeercert(binary_form=True),
            remote_address=address,
        )
