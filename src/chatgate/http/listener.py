"""The HTTP(S) listener: one aiohttp application for every web route of the server.

Routes today: WebSocket (`/xmpp-websocket`), BOSH (`/http-bind`), XEP-0156
discovery (`/.well-known/host-meta[.json]`), the web chat (`/chat/`) and
XEP-0363 uploads (`/upload/`, `upload.py`).  The
same application is served on the plain port and on the HTTPS port; HTTPS uses
the c2s TLS stack (`xmpp/transports/openssl_tls.py` through `http/tls.py`), so
client certificates, their trust rules and channel bindings are the ones c2s
has, and SASL EXTERNAL and -PLUS work over web transports too.

Every response carries the security headers below; CORS headers go only to
origins `[http] cors_origins` allows; bodies over `max_request_size` get 413.

Connections: idle ones (or ones still sending headers) are closed after
`KEEPALIVE_TIMEOUT`; a BOSH body must arrive within `bosh.BODY_TIMEOUT`; each
peer address may hold `[http] max_connections_per_address` connections over
both ports (`connection_limit.py`), new ones past it are closed at once.

Each connection first meets the lane (`lane.py`), which answers BOSH requests
and WebSocket handshakes itself and hands every other request to aiohttp.  On
a connection handed over, the hot routes (BOSH's POST, the WebSocket handshake)
still skip aiohttp's router and middleware chain: `_dispatch` sends them
straight to their handler through the same `_headers` the middleware runs, so
they get the same headers; everything else (and a request with `Expect`,
which the router's expect handler answers) goes through the application.  A
BOSH login is six requests, and the router, match info and middleware chain
were a measurable part of each.
Web sessions are `C2SConnection`s like any other, so the server's graceful stop
ends each of them with `system-shutdown` before this listener closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from chatgate.http import bosh, hostmeta, websocket
from chatgate.http.client_address import ClientAddresses
from chatgate.http.connection_limit import AddressCounter, FactoryTCPSite, shares_ports
from chatgate.http.hooks import PATH as hooks_path
from chatgate.http.hooks import HookEndpoint
from chatgate.http.lane import LaneProtocol, LaneRoutes
from chatgate.http.lane_websocket import LaneWebSocket
from chatgate.http.options import HttpOptions
from chatgate.http.tls import TLS_DETAILS, TlsSite
from chatgate.http.upload import add_upload_routes
from chatgate.modules.upload.slots import PATH_PREFIX as UPLOAD_PATH
from chatgate.vocabulary.facts import ConnectionFacts
from chatgate.xmpp.transports.tcp import LINGER

if TYPE_CHECKING:
    from chatgate.cluster.bosh import BoshForwarding
    from chatgate.context import ServerContext
    from chatgate.http.admin import AdminSite
    from chatgate.xmpp.negotiation import NegotiationSettings
    from chatgate.xmpp.transports.openssl_tls import ServerTls

log = logging.getLogger(__name__)

#: Seconds an HTTP connection may be idle, or take to send a request's headers
#: (aiohttp's keep-alive timeout; its default is 3,630).
KEEPALIVE_TIMEOUT = 15.0

#: the installation secret stream tokens are signed with (key id 1)
STREAM_TOKEN_KEY = "stream-token-key-1"

WEBSOCKET_PATH = "/xmpp-websocket"
BOSH_PATH = "/http-bind"

#: routes `[http] cors_origins` never opens to other sites' pages: the admin API,
#: console and metrics answer their own origin only
ADMIN_PATHS = ("/api/", "/admin", "/metrics")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RawHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def _quiet_parse_errors(record: logging.LogRecord) -> bool:
    """aiohttp logs every request its parser refuses at ERROR with a traceback
    ("Error handling request"): any client could fill the log with one per
    connection.  Such a refusal is the client's fault and answered 400: logged
    here at INFO, in one line."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError) and record.levelno >= logging.ERROR:
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = "HTTP: refused a malformed request from %s: %s", (remote, exc)
        record.exc_info = record.exc_text = None
    return True


class HttpListener:
    """Builds the application, serves it on the configured ports, stops it."""

    def __init__(
        self,
        ctx: ServerContext,
        options: HttpOptions,
        settings: NegotiationSettings,
        tls: ServerTls | None,
    ) -> None:
        self.ctx = ctx
        self.options = options
        self.settings = settings
        self.tls = tls
        self.addresses = ClientAddresses(options.trusted_proxies)
        #: open HTTP(S) connections per peer address, both ports together
        self.connections = AddressCounter(options.max_connections_per_address)
        self._runner: web.AppRunner | None = None
        self._sites: list[object] = []
        #: (scheme, host, port) of each bound port, once started
        self.bound: list[tuple[str, str, int]] = []
        #: what the lane's connections share (made at start)
        self.lane: LaneRoutes | None = None
        #: the media servers' hooks (`[streams] enabled`), made at start
        self.hooks: HookEndpoint | None = None
        #: the API, console and metrics (`[admin] enabled`), made at start
        self.admin: AdminSite | None = None
        self.bosh = None
        if options.bosh.enabled:
            from chatgate.http.bosh import BoshEndpoint

            self.bosh = BoshEndpoint(ctx, settings, options.bosh, self.facts_for)
        #: BOSH requests of sessions held by other nodes (`[cluster] enabled`)
        self.bosh_forwarding: BoshForwarding | None = None
        if ctx.cluster is not None and self.bosh is not None:
            from chatgate.cluster.http_state import bosh_forwarding

            self.bosh_forwarding = bosh_forwarding(ctx.cluster, self.bosh, options)

    # ------------------------------------------------------------ requests

    def facts_for(self, request: web.Request) -> ConnectionFacts:
        """What the XMPP layer knows of the connection a request came on."""
        return self.facts(request.transport, request.headers.get("X-Forwarded-For"))

    def facts(
        self, transport: asyncio.BaseTransport | None, forwarded_for: str | None
    ) -> ConnectionFacts:
        """The connection facts of `transport` (the client address through trusted
        proxies, TLS)."""
        peer = transport.get_extra_info("peername") if transport is not None else None
        address = self.addresses.client(peer[0] if isinstance(peer, tuple) else None, forwarded_for)
        details = transport.get_extra_info(TLS_DETAILS) if transport is not None else None
        if details is None:
            return ConnectionFacts(domain=self.ctx.domain, remote_address=address)
        return ConnectionFacts(
            domain=self.ctx.domain,
            tls_active=True,
            tls_version=details.version,
            channel_bindings=details.channel_bindings,
            peer_certificate_der=details.peer_certificate_der,
            remote_address=address,
        )

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        return await websocket.handle(
            request, self.ctx, self.settings, self.facts_for(request), self.options.websocket
        )

    def _lane_websocket(
        self, transport: asyncio.Transport, forwarded_for: str | None
    ) -> LaneWebSocket:
        """A WebSocket the lane upgraded: an XMPP stream on the one connection driver."""
        return LaneWebSocket(
            self.ctx,
            self.facts(transport, forwarded_for),
            self.options.websocket,
            self.settings,
            transport,
        )

    def _links(self, request: web.Request) -> dict[str, str]:
        return hostmeta.endpoints(
            request,
            BOSH_PATH if self.options.bosh.enabled else None,
            WEBSOCKET_PATH if self.options.websocket.enabled else None,
        )

    async def _host_meta(self, request: web.Request) -> web.Response:
        return web.Response(
            text=hostmeta.xrd(self._links(request)),
            content_type="application/xrd+xml",
            headers=hostmeta.PUBLIC,
        )

    async def _host_meta_json(self, request: web.Request) -> web.Response:
        return web.Response(
            text=hostmeta.jrd(self._links(request)),
            content_type="application/json",
            headers=hostmeta.PUBLIC,
        )

    # ------------------------------------------------------------ middleware

    def _allowed_origin(self, origin: str | None) -> str | None:
        if not origin:
            return None
        allowed = self.options.cors_origins
        if "*" in allowed:
            return "*"
        return origin if origin.rstrip("/") in allowed else None

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Security headers on everything; CORS for allowed origins, preflights answered."""
        if request.path.startswith(ADMIN_PATHS):
            origin = None
        elif request.path.startswith(UPLOAD_PATH) and "Origin" in request.headers:
            # XEP-0363 URLs are capabilities (a signed PUT, an unguessable GET) and
            # carry no cookie: any web client may use them, as any other client may.
            origin = "*"
        else:
            origin = self._allowed_origin(request.headers.get("Origin"))
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            if origin is not None:
                response.headers["Access-Control-Allow-Methods"] = (
                    "GET, PUT, OPTIONS"
                    if request.path.startswith(UPLOAD_PATH)
                    else "GET, POST, OPTIONS"
                )
                response.headers["Access-Control-Allow-Headers"] = "Content-Type"
                response.headers["Access-Control-Max-Age"] = "86400"
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
            if response.prepared:
                return response  # a WebSocket: its headers are gone already
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            if origin != "*":
                response.headers.add("Vary", "Origin")
        if isinstance(response, web.HTTPException):
            raise response
        return response

    def _dispatch(self, app_handler: RawHandler) -> RawHandler:
        """The server's request handler: hot routes straight to their handlers
        (through `_headers`), the rest to the application (`app_handler`)."""
        routes: dict[tuple[str, str], Handler] = {}
        if self.bosh is not None:
            for path in (BOSH_PATH, BOSH_PATH + "/"):
                routes[("POST", path)] = self.bosh.handle
        if self.options.websocket.enabled:
            routes[("GET", WEBSOCKET_PATH)] = self._websocket
        headers = self._headers
        expect = hdrs.EXPECT

        async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
            handler = routes.get((request.method, request.path))
            if handler is None or expect in request.headers:
                return await app_handler(request)
            # the application's request factory made it: a web.Request
            return await headers(cast(web.Request, request), handler)

        return dispatch

    # ------------------------------------------------------------ lifecycle

    def application(self) -> web.Application:
        app = web.Application(
            client_max_size=self.options.max_request_size, middlewares=[self._headers]
        )
        if self.options.websocket.enabled:
            app.router.add_get(WEBSOCKET_PATH, self._websocket)
        if self.bosh is not None:
            for path in (BOSH_PATH, BOSH_PATH + "/"):
                app.router.add_post(path, self.bosh.handle)
                app.router.add_get(path, self.bosh.handle_get)
        if self.hooks is not None:
            app.router.add_route("*", hooks_path, self.hooks.handle)
        app.router.add_get("/.well-known/host-meta", self._host_meta)
        app.router.add_get("/.well-known/host-meta.json", self._host_meta_json)
        add_upload_routes(app, self.ctx)  # XEP-0363, when [modules.upload] is on
        if self.options.chat.enabled:
            from chatgate.http.chat import add_chat_routes

            add_chat_routes(app, self.ctx, self.options, WEBSOCKET_PATH, BOSH_PATH)
        if self.admin is not None:
            from chatgate.http.api.routes import add_api_routes
            from chatgate.http.console.routes import add_console_routes
            from chatgate.http.metrics import add_metrics_route

            add_api_routes(app, self.admin)
            add_console_routes(app, self.admin)
            add_metrics_route(app, self.admin)
            app.middlewares.append(self.admin.middleware)
        return app

    def _make_hooks(self) -> HookEndpoint:
        """The `/hooks/` route on the server's stream authority, with one adapter per
        media server kind (Wowza's only with its shared secret)."""
        from chatgate.streams.adapters.base import Adapter
        from chatgate.streams.adapters.mediamtx import MediaMtxAdapter
        from chatgate.streams.adapters.nginx_rtmp import NginxRtmpAdapter
        from chatgate.streams.adapters.red5 import Red5Adapter
        from chatgate.streams.adapters.srs import SrsAdapter
        from chatgate.streams.adapters.wowza import WowzaTokenAdapter

        service = self.ctx.streams
        assert service is not None, "the server opens the stream service before the listener"
        options = self.ctx.config.streams
        adapters: list[Adapter] = [
            NginxRtmpAdapter(),
            MediaMtxAdapter(),
            SrsAdapter(),
            Red5Adapter(
                application=options.red5_application,
                client_token_required=options.red5_client_token_required,
            ),
        ]
        if options.wowza_shared_secret is not None:
            adapters.append(
                WowzaTokenAdapter(shared_secret=options.wowza_shared_secret.get_secret_value())
            )
        return HookEndpoint(service.authority, {a.name: a for a in adapters}, options.hook_networks)

    async def start(self) -> None:
        logging.getLogger("aiohttp.server").addFilter(_quiet_parse_errors)  # once: same object
        if self.ctx.config.streams.enabled:
            self.hooks = self._make_hooks()
        if self.ctx.config.admin.enabled:
            from chatgate.http.admin import AdminSite

            self.admin = AdminSite(self.ctx, self.ctx.config.admin, self.facts_for)
            await self.admin.start()
        options = self.options
        runner = self._runner = web.AppRunner(
            self.application(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            # An idle connection, or one still sending its request's headers, is
            # closed after this (aiohttp's default is an hour); requests being
            # handled (held BOSH requests, WebSockets) are not touched by it.
            keepalive_timeout=KEEPALIVE_TIMEOUT,
            # What is left of a body nobody reads (over max_request_size, too
            # slow) is read and dropped this long before the connection is closed
            # (aiohttp's default: 10 s), as TCP's LINGER.
            lingering_time=LINGER,
        )
        await runner.setup()
        server = runner.server
        assert server is not None
        # Every connection's aiohttp RequestHandler reads this when it is made.
        server.request_handler = self._dispatch(server.request_handler)
        lane = self.lane = LaneRoutes(
            bosh=self.bosh,
            bosh_paths=frozenset((BOSH_PATH, BOSH_PATH + "/")),
            allowed_origin=self._allowed_origin,
            facts=self.facts,
            websocket_path=WEBSOCKET_PATH if options.websocket.enabled else None,
            websocket=self._lane_websocket if options.websocket.enabled else None,
            aiohttp_protocol=server,
            max_request_size=options.max_request_size,
            keepalive_timeout=KEEPALIVE_TIMEOUT,
            body_timeout=bosh.BODY_TIMEOUT,
            hooks=self.hooks,
        )
        shared = shares_ports(self.ctx.config)
        if options.port is not False:
            counter = self.connections
            site = FactoryTCPSite(
                runner,
                options.host,
                options.port,
                lambda: LaneProtocol(lane, counter),
                backlog=1024,
                reuse_port=shared or None,
            )
            await site.start()
            self._record("http", site)
        if options.tls_port is not False and self.tls is not None:
            tls_site = TlsSite(
                runner,
                options.host,
                options.tls_port,
                self.tls,
                counter=self.connections,
                # the TLS layer counts: the lane must not count again
                protocol_factory=lambda: LaneProtocol(lane, None),
                reuse_port=shared,
            )
            await tls_site.start()
            self.bound.append(("https", options.host, tls_site.port))
        for scheme, host, port in self.bound:
            log.info("web: BOSH and WebSocket on %s://%s:%d", scheme, host, port)
        if options.chat.enabled and self.bound:
            scheme, host, port = self.bound[0]
            log.info("web chat: %s://%s:%d/chat/", scheme, host, port)
        if self.admin is not None and self.bound:
            scheme, host, port = self.bound[0]
            log.info(
                "admin: console %s://%s:%d/admin/, API /api/v1 (methods: %s)",
                scheme,
                host,
                port,
                ", ".join(self.ctx.config.admin.auth),
            )

    def _record(self, scheme: str, site: web.TCPSite) -> None:
        server = site._server  # aiohttp keeps the asyncio server here
        sockets = getattr(server, "sockets", None) or []
        for sock in sockets:
            host, port = sock.getsockname()[:2]
            self.bound.append((scheme, host, port))

    async def stop(self) -> None:
        if self.bosh is not None:
            self.bosh.close_all()
        if self.bosh_forwarding is not None:
            await self.bosh_forwarding.close()
        if self.lane is not None:
            self.lane.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
