"""The admin routes on the HTTP listener: `/api/v1` (REST API), `/admin/`
(web console) and `/metrics`, each behind its set of authentication methods.

`AdminSite` is what they share: the server context, `[admin]`, one `AuthChain`
per route set, and the audit log.  A handler declares what it needs with
`@requires(Access.X)`; the site's middleware authenticates the request first
(for the routes under its prefixes only, so BOSH, WebSocket and the hooks never
pay for it) and leaves the `Principal` in `request[PRINCIPAL]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from chatgate.http.admin_options import AdminOptions
from chatgate.http.auth.base import (
    Access,
    AuthChain,
    AuthRequest,
    HttpAuthenticator,
    Principal,
    Refusal,
)
from chatgate.http.console.local_names import names_this_machine

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.vocabulary.facts import ConnectionFacts

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
CONSOLE_PREFIX = "/admin"
METRICS_PATH = "/metrics"
#: seconds between sweeps of idle console sessions, expired tokens, old audit entries
SWEEP_INTERVAL = 300.0

RouteSet = Literal["api", "console", "metrics"]

#: the request key handlers read the principal from
PRINCIPAL_KEY = web.RequestKey("chatgate.principal", Principal)
#: the handler attribute naming the access it needs (set by `requires`, `public`)
_ACCESS_ATTR = "_chatgate_access"
_PUBLIC = "public"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def requires(access: Access) -> Callable[[Handler], Handler]:
    """Declare the access a handler needs; the site refuses others with 403."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, _ACCESS_ATTR, access)
        return handler

    return mark


def public(handler: Handler) -> Handler:
    """Mark an API handler as needing no authentication (the OpenAPI document).
    An API handler marked neither way needs `Access.ADMIN`: forgetting is safe."""
    setattr(handler, _ACCESS_ATTR, _PUBLIC)
    return handler


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL_KEY)
    assert isinstance(principal, Principal), "the admin middleware ran"
    return principal


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def auth_request(
    request: web.Request, facts: ConnectionFacts, served: Collection[str] = ()
) -> AuthRequest:
    """What authentication sees of `request`; `served` are the server's domains (a
    `Host` naming one of them names this machine)."""
    loopback = is_loopback(facts.remote_address)
    return AuthRequest(
        method=request.method,
        target=request.raw_path,
        authorization=request.headers.get("Authorization"),
        address=facts.remote_address,
        secure=facts.tls_active or loopback,
        loopback=loopback,
        local_host=names_this_machine(request.host, served),
    )


def refusal_response(refusal: Refusal) -> web.Response:
    """A refusal in the API's error shape (the console renders its own)."""
    from chatgate.http.api.errors import error_response

    response = error_response(refusal.status, _code(refusal.status), refusal.message)
    for challenge in refusal.challenges:
        response.headers.add("WWW-Authenticate", challenge)
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(refusal.retry_after)))
    for name, value in refusal.headers:
        response.headers.add(name, value)
    return response


def _code(status: int) -> str:
    return {
        401: "unauthenticated",
        403: "forbidden",
        429: "too_many_attempts",
        503: "unavailable",
    }.get(status, "refused")


class AdminSite:
    """Everything the admin routes share; made and started by the HTTP listener."""

    def __init__(
        self,
        ctx: ServerContext,
        options: AdminOptions,
        facts: Callable[[web.Request], ConnectionFacts],
    ) -> None:
        self.ctx = ctx
        self.options = options
        self.facts = facts
        self.chains: dict[RouteSet, AuthChain] = {}
        self._sweeper: asyncio.Task[None] | None = None
        #: each method once, whatever route sets name it (closed at close)
        self._methods: dict[str, HttpAuthenticator] = {}
        from chatgate.http.api.audit import AuditLog
        from chatgate.http.auth.admins import AdminAccounts
        from chatgate.http.auth.tokens import BearerTokens

        #: administrators chatgate keeps (`basic`, `digest`; the wizard's first one)
        self.admins = AdminAccounts(ctx.db, options)
        #: bearer tokens for automation
        self.tokens = BearerTokens(ctx.db)
        #: who changed what
        self.audit = AuditLog(ctx.db)

    async def start(self) -> None:
        """Build each route set's methods (raises ConfigError on a bad combination)."""
        from chatgate.http.auth.registry import build_chain

        chains: dict[tuple[str, ...], AuthChain] = {}
        methods = self._methods
        for route_set in ("api", "console", "metrics"):
            names = tuple(self.options.methods_for(route_set))
            if names not in chains:
                chains[names] = await build_chain(self.ctx, self.options, names, methods)
            self.chains[route_set] = chains[names]
        self._sweeper = asyncio.create_task(self._sweep_forever())
        if await self.admins.count() == 0:
            log.warning(
                "admin: no administrator yet: open /admin/ on the HTTP listener for the setup"
                " wizard (%s), or run `chatgate admin user add NAME`",
                "loopback clients only"
                if self.options.setup_wizard == "loopback"
                else "off: [admin] setup_wizard",
            )

    async def sweep(self, now: int | None = None) -> None:
        """Forget idle console sessions, expired bearer tokens and audit entries past
        `audit_retention_days` (a shared database: every process may sweep; the
        deletes are idempotent)."""
        now = int(time.time()) if now is None else now
        db = self.ctx.db
        await db.console_sessions.forget_idle(now - int(self.options.session_timeout))
        await db.admin_tokens.forget_expired(now)
        await db.audit.forget_before(now - self.options.audit_retention_days * 86400)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # a database hiccup must not end the sweeping
                log.exception("admin: sweeping expired sessions, tokens and audit entries failed")
            await asyncio.sleep(SWEEP_INTERVAL)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for method in self._methods.values():
            await method.close()
        self._methods.clear()

    def route_set(self, path: str) -> RouteSet | None:
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return "api"
        if path == METRICS_PATH:
            return "metrics"
        return None  # the console authenticates with its own cookie (console/session.py)

    def _open_metrics(self, request: web.Request, auth: AuthRequest) -> bool:
        """`/metrics` without credentials: to a loopback client that named this
        machine (another site's page in a browser here, its name pointed at
        127.0.0.1, must not read it: DNS rebinding)."""
        return self.options.metrics_open_on_loopback and auth.loopback and auth.local_host

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate API and metrics requests; refuse what the principal may not do."""
        route_set = self.route_set(request.path)
        if route_set is None:
            return await handler(request)
        if request.match_info.http_exception is not None:
            return await handler(request)  # a 404 or 405 the router made
        access = getattr(request.match_info.handler, _ACCESS_ATTR, Access.ADMIN)
        if access == _PUBLIC:
            return await handler(request)
        facts = self.facts(request)
        auth = auth_request(request, facts, self.ctx.config.served_domains)
        if route_set == "metrics" and self._open_metrics(request, auth):
            request[PRINCIPAL_KEY] = Principal("loopback", frozenset({"readOnly"}), "none")
            return await handler(request)
        outcome = await self.chains[route_set].authenticate(auth)
        if isinstance(outcome, Refusal):
            return refusal_response(outcome)
        if not outcome.allows(access):
            return refusal_response(
                Refusal(
                    403,
                    f"{outcome.name} may not {access.value} here (groups: "
                    f"{', '.join(sorted(outcome.groups)) or 'readOnly'})",
                )
            )
        request[PRINCIPAL_KEY] = outcome
        return await handler(request)
