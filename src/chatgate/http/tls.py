"""HTTPS for the aiohttp application on the c2s TLS stack (`ServerTlsConnection`), not `ssl`.

Why not `web.TCPSite(ssl_context=...)`: the standard library cannot compute the
`tls-exporter` binding, cannot accept a self-signed client certificate through
our own verification, and cannot say whether TLS 1.2 used the extended master
secret (see `xmpp/transports/openssl_tls.py`).  Serving HTTPS through the same
`ServerTls` as c2s gives web sessions exactly c2s's client-certificate policy,
trust store, revocation list, certificate-to-JID rules and channel bindings, so
SASL EXTERNAL and SCRAM-*-PLUS work over BOSH and WebSocket as over TCP.

How: `TlsSite` listens with `loop.create_server`; each accepted socket gets a
`_TlsConnection` protocol that runs the handshake on memory BIOs.  Only when it
is complete is aiohttp's request handler created (`runner.server()`, a
protocol factory) and given a `TlsTransport`: an `asyncio.Transport` whose
writes are encrypted on their way to the socket and whose `get_extra_info`
answers `"chatgate.tls"` with the connection's `TlsDetails` (what
`HttpListener.facts_for` reads) and `"sslcontext"` with our OpenSSL context
(aiohttp decides `request.secure` and `request.scheme` by its truth).

Flow control passes through both ways: the socket's `pause_writing` /
`resume_writing` reach aiohttp's protocol; aiohttp's `pause_reading` pauses the
socket, and plaintext already decrypted meanwhile waits here until it resumes.

A handshake that fails (garbage, a refused or missing certificate under
`needed`) is logged at INFO and its socket closed after the alert; one that
takes longer than `HANDSHAKE_TIMEOUT` seconds (as on c2s) is cut off.  Connections
are counted per peer address from the TCP accept (`connection_limit.py`); past
`[http] max_connections_per_address` a new one is aborted before its handshake.  Neither
touches other connections.  This module never interprets HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

from aiohttp import web
from OpenSSL import SSL

from chatgate.http.connection_limit import AddressCounter
from chatgate.xmpp.transports.openssl_tls import (
    ServerTls,
    ServerTlsConnection,
    TlsDetails,
    TlsError,
)
from chatgate.xmpp.transports.tcp import CLOSE_TIMEOUT, HANDSHAKE_TIMEOUT

__all__ = ["TLS_DETAILS", "TlsSite", "TlsTransport"]

log = logging.getLogger(__name__)

#: `get_extra_info` key of the connection's `TlsDetails` (`HttpListener.facts_for`).
TLS_DETAILS = "chatgate.tls"


class TlsSite(web.BaseSite):
    """An aiohttp site serving `runner`'s application over our TLS on `host:port`.

    Registered with the runner like aiohttp's own sites, so `runner.cleanup()`
    stops it; `port` is the bound port once started (0 asks for a free one).
    """

    __slots__ = (
        "_counter",
        "_handshake_timeout",
        "_handshaking",
        "_host",
        "_port",
        "_protocol_factory",
        "_reuse_port",
        "_tls",
    )

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        tls: ServerTls,
        *,
        backlog: int = 1024,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        counter: AddressCounter | None = None,
        protocol_factory: Callable[[], asyncio.Protocol] | None = None,
        reuse_port: bool = False,
    ) -> None:
        """`protocol_factory` makes the protocol a connection is given once its
        handshake is complete (None: aiohttp's own, `runner.server`); `reuse_port`:
        other processes listen on the same port (SO_REUSEPORT, `--workers`)."""
        super().__init__(runner, backlog=backlog)
        self._protocol_factory = protocol_factory
        #: open connections per peer address (None: not limited)
        self._counter = counter
        self._host = host
        self._port = port
        self._tls = tls
        self._handshake_timeout = handshake_timeout
        self._reuse_port = reuse_port
        #: connections whose handshake is still running (aiohttp knows the others)
        self._handshaking: set[_TlsConnection] = set()

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        server = self._server
        sockets = getattr(server, "sockets", None) if server is not None else None
        if sockets:
            return int(sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        await super().start()
        app_factory = self._protocol_factory or self._runner.server
        assert app_factory is not None  # BaseSite.__init__ checked it
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TlsConnection(self._tls, app_factory, self._handshake_timeout, self),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )

    async def stop(self) -> None:
        """Stop listening and cut off handshakes still running; established
        connections belong to aiohttp, whose `runner.cleanup()` ends them."""
        await super().stop()
        for connection in list(self._handshaking):
            connection.abort()
        self._handshaking.clear()


class _TlsConnection(asyncio.Protocol):
    """One accepted socket: the TLS handshake, then the bridge to aiohttp's protocol."""

    __slots__ = (
        "_address",
        "_app",
        "_app_factory",
        "_backlog",
        "_close_timer",
        "_counted",
        "_raw",
        "_site",
        "_timeout",
        "_timer",
        "_tls",
        "_tls_server",
        "_transport",
        "_write_paused",
    )

    def __init__(
        self,
        tls: ServerTls,
        app_factory: Callable[[], asyncio.Protocol],
        timeout: float,
        site: TlsSite,
    ) -> None:
        self._tls_server = tls
        self._app_factory = app_factory
        self._timeout = timeout
        self._site = site
        self._raw: asyncio.Transport | None = None
        self._tls: ServerTlsConnection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._app: asyncio.Protocol | None = None
        self._transport: TlsTransport | None = None
        #: plaintext decrypted while aiohttp had reading paused, in order
        self._backlog: list[bytes] = []
        self._write_paused = False
        self._address = "-"
        #: counted in the site's AddressCounter (released when the connection ends)
        self._counted = False

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self._raw = raw = cast(asyncio.Transport, transport)
        peer = raw.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) else "-"
        counter = self._site._counter
        if counter is not None:
            if not counter.acquire(self._address):
                raw.abort()  # past max_connections_per_address: not even a handshake
                return
            self._counted = True
        self._tls = self._tls_server.connection()
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._too_slow)
        self._site._handshaking.add(self)

    def data_received(self, data: bytes) -> None:
        tls, raw = self._tls, self._raw
        if tls is None or raw is None or raw.is_closing():
            return
        try:
            plaintext, out = tls.receive(data)
        except TlsError as exc:
            self._failed(exc)
            return
        if out:
            raw.write(out)
        if self._app is None:
            if not tls.handshake_complete:
                return
            self._established(tls)
        if plaintext:
            self._deliver(plaintext)
        if tls.closed:  # close_notify: the client is done
            self._end_of_input()

    def eof_received(self) -> bool | None:
        # The peer shut its side without close_notify (or mid-handshake).
        self._end_of_input()
        return None

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._app is not None:
            self._app.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self._counted = False
            counter = self._site._counter
            if counter is not None:
                counter.release(self._address)
        self._cancel_timer()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._site._handshaking.discard(self)
        self._backlog = []
        app, self._app = self._app, None
        if app is not None:
            app.connection_lost(exc)

    # ------------------------------------------------------------ handshake

    def _established(self, tls: ServerTlsConnection) -> None:
        """The handshake is complete: hand the connection to aiohttp."""
        assert self._raw is not None
        self._cancel_timer()
        self._site._handshaking.discard(self)
        details = tls.details()
        if details.peer_certificate_problem:
            log.info(
                "HTTPS: client certificate from %s not trusted: %s",
                self._address,
                details.peer_certificate_problem,
            )
        self._transport = transport = TlsTransport(self, self._raw, tls, details)
        self._app = app = self._app_factory()
        transport.set_protocol(app)
        app.connection_made(transport)
        if self._write_paused:
            app.pause_writing()

    def _failed(self, exc: TlsError) -> None:
        log.info("HTTPS: TLS failed from %s: %s", self._address, exc)
        self._cancel_timer()
        raw = self._raw
        if raw is not None and not raw.is_closing():
            if exc.outgoing:
                raw.write(exc.outgoing)
            raw.close()

    def _too_slow(self) -> None:
        self._timer = None
        log.info("HTTPS: TLS handshake from %s took too long", self._address)
        self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self) -> None:
        if self._raw is not None:
            self._raw.abort()

    # ------------------------------------------------------------ plaintext to aiohttp

    def _deliver(self, plaintext: bytes) -> None:
        transport, app = self._transport, self._app
        if app is None or transport is None:
            return
        if not transport.is_reading() or self._backlog:
            self._backlog.append(plaintext)
            return
        app.data_received(plaintext)

    def _release_backlog(self) -> None:
        """aiohttp resumed reading: hand it what waited, until it pauses again."""
        transport, app = self._transport, self._app
        while self._backlog and app is not None and transport is not None:
            if not transport.is_reading():
                return
            app.data_received(self._backlog.pop(0))

    def _end_of_input(self) -> None:
        """No more input (close_notify or EOF): what waited goes to aiohttp first,
        then the end; the connection is closed (TLS has no half-close)."""
        app, transport = self._app, self._transport
        if app is not None and transport is not None:
            backlog, self._backlog = self._backlog, []
            for chunk in backlog:
                app.data_received(chunk)
            app.eof_received()
            transport.close()
        elif self._raw is not None:
            self._raw.close()

    # ------------------------------------------------------------ for TlsTransport

    def _close_after_flush(self) -> None:
        """Close the socket once what we owe is written; a peer that does not
        read it within `CLOSE_TIMEOUT` seconds is cut off."""
        raw = self._raw
        if raw is None or raw.is_closing():
            return
        if raw.get_write_buffer_size() and self._close_timer is None:
            self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, raw.abort)
        raw.close()


class TlsTransport(asyncio.Transport):
    """What aiohttp's protocol sees: a transport whose bytes are TLS-protected.

    Everything about the socket (peername, sockname, socket, write buffer,
    reading) is the raw transport's; `write` encrypts first; `close` sends
    close_notify first.  TLS has no half-close: `can_write_eof()` is False, as
    for asyncio's own TLS transport.
    """

    __slots__ = ("_closing", "_connection", "_info", "_protocol", "_raw", "_reading", "_tls")

    def __init__(
        self,
        connection: _TlsConnection,
        raw: asyncio.Transport,
        tls: ServerTlsConnection,
        details: TlsDetails,
    ) -> None:
        super().__init__()
        self._info: dict[str, object] = {
            TLS_DETAILS: details,
            "sslcontext": connection._tls_server.context,
        }
        self._connection = connection
        self._raw = raw
        self._tls = tls
        self._protocol: asyncio.BaseProtocol | None = None
        self._closing = False
        self._reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._info:
            return self._info[name]
        return self._raw.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    # ------------------------------------------------------------ writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._raw.is_closing():
            return  # as asyncio's transports: writes after close go nowhere
        if not data:
            return
        try:
            out = self._tls.send(bytes(data))
        except SSL.Error as exc:
            log.info("HTTPS: TLS write failed: %s", exc)
            self.abort()
            return
        if out:
            self._raw.write(out)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        # One plaintext, so the pieces of one HTTP message share TLS records.
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has no half-close")

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._raw.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    # ------------------------------------------------------------ reading

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        if not self._reading:
            return
        self._reading = False
        with contextlib.suppress(RuntimeError):  # a closing socket is not read anyway
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._reading:
            return
        self._reading = True
        with contextlib.suppress(RuntimeError):
            self._raw.resume_reading()
        if self._connection._backlog:
            # Not from inside aiohttp's own read path: on the next loop turn.
            asyncio.get_running_loop().call_soon(self._connection._release_backlog)

    # ------------------------------------------------------------ closing

    def is_closing(self) -> bool:
        return self._closing or self._raw.is_closing()

    def close(self) -> None:
        """close_notify, then close the socket after what is buffered is written."""
        if self._closing:
            return
        self._closing = True
        raw = self._raw
        if raw.is_closing():
            return
        try:
            out = self._tls.close()
        except SSL.Error:  # pragma: no cover - close() suppresses OpenSSL's own errors
            out = b""
        if out:
            raw.write(out)
        self._connection._close_after_flush()

    def abort(self) -> None:
        self._closing = True
        self._raw.abort()
