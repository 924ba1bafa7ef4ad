"""What the console's handlers share: the admin site, login sessions, the renderer,
the log tail, the dashboard's history, and the guard every page goes through.

`Console.guarded(access, handler)` turns a page function into an aiohttp handler
that finds the request's console session (none: to the login, or to the setup
wizard when that applies), refuses a group that may not do `access`, and checks
a POST's origin and CSRF token before the page sees it.  A page gets a `Page`:
the request, the login, and what every template needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from chatgate.http.admin import auth_request, is_loopback
from chatgate.http.auth.base import Access, Principal
from chatgate.http.console.logtail import LogTail
from chatgate.http.console.pending import Pending
from chatgate.http.console.render import Renderer, see_other
from chatgate.http.console.session import (
    CSRF_FIELD,
    ConsoleLogin,
    ConsoleSessions,
    csrf_matches,
    same_origin,
)

if TYPE_CHECKING:
    from chatgate.http.admin import AdminSite
    from chatgate.http.auth.base import AuthRequest

log = logging.getLogger(__name__)

BASE = "/admin"

#: the navigation: (path, label, access needed to see it)
NAV: tuple[tuple[str, str, Access], ...] = (
    ("/admin/", "Dashboard", Access.READ),
    ("/admin/users", "Users", Access.READ),
    ("/admin/sessions", "Sessions", Access.READ),
    ("/admin/registration", "Registration", Access.READ),
    ("/admin/streams", "Streams", Access.READ),
    ("/admin/tokens", "Tokens", Access.ADMIN),
    ("/admin/audit", "Audit", Access.READ),
    ("/admin/log", "Log", Access.READ),
    ("/admin/config", "Configuration", Access.ADMIN),
)


@dataclass
class Page:
    """A guarded request: who is logged in, and its form when it was a POST.

    `shown` is what waited for this page (a GET): the notices every template
    shows and a secret just made, shown once.  `notice` and `issue` add to what
    the login's next page shows (`later`), kept in the database by the guard after
    the handler (`pending.py`): the page after the redirect may be served by
    another worker or node."""

    console: Console
    request: web.Request
    login: ConsoleLogin
    form: Mapping[str, str] = field(default_factory=dict)
    shown: Pending = field(default_factory=Pending)
    later: Pending = field(default_factory=Pending)

    def render(
        self, template: str, values: Mapping[str, Any], *, status: int = 200
    ) -> web.Response:
        return self.console.renderer.page(template, {**self.common(), **values}, status=status)

    def common(self) -> dict[str, Any]:
        principal = self.login.principal
        return {
            "principal": principal,
            "csrf_field": CSRF_FIELD,
            "csrf": self.login.csrf_token,
            "can_write": principal.allows(Access.WRITE),
            "is_admin": principal.allows(Access.ADMIN),
            "nav": [(p, label) for p, label, a in NAV if principal.allows(a)],
            "path": self.request.path,
            "notices": self.shown.notices,
        }

    def notice(self, text: str) -> None:
        """A line shown on the next page this login sees (after the redirect)."""
        self.later = self.later.merged(Pending([text]))

    def issue(self, secret: str) -> None:
        """A secret just made (a token), shown once on the login's next page, then
        gone; never in a URL, never logged, sealed while it waits."""
        self.later = self.later.merged(Pending(issued=secret))

    def redirect(self, location: str) -> web.Response:
        return see_other(location)

    async def audit(self, action: str, target: str | None, detail: str | None = None) -> None:
        await self.console.audit(self.request, self.login, action, target, detail)


PageHandler = Callable[[Page], Awaitable[web.StreamResponse]]


class Console:
    """The console's shared state; made by `add_console_routes`."""

    def __init__(self, site: AdminSite, clock: Callable[[], float] = time.time) -> None:
        self.site = site
        self.ctx = site.ctx
        self.options = site.options
        self.clock = clock
        self.sessions = ConsoleSessions(site.ctx.db, site.options.session_timeout, clock)
        self.renderer = Renderer()
        self.log_tail = LogTail()

    def auth_request(self, request: web.Request) -> AuthRequest:
        return auth_request(request, self.site.facts(request), self.site.ctx.config.served_domains)

    def secure(self, request: web.Request) -> bool:
        """Whether the request came over TLS (the cookie is then Secure)."""
        return self.site.facts(request).tls_active

    async def wizard_open(self, request: web.Request) -> bool:
        """The setup wizard is served: no administrator yet, `[admin] setup_wizard`
        on, and the client on a loopback address."""
        if self.options.setup_wizard == "off":
            return False
        if not is_loopback(self.site.facts(request).remote_address):
            return False
        return await self.site.admins.count() == 0

    async def audit(
        self,
        request: web.Request,
        login: ConsoleLogin,
        action: str,
        target: str | None,
        detail: str | None = None,
    ) -> None:
        """Record a change in the audit log (the site's), naming the console's login."""
        # the audit log names how the change was made: through a console login
        principal = Principal(login.principal.name, login.principal.groups, "console")
        address = self.site.facts(request).remote_address
        await self.site.audit.record(principal, address, action, target, detail)

    def refused(self, request: web.Request, status: int, message: str) -> web.Response:
        return self.renderer.page(
            "refused.html",
            {"status": status, "message": message, "login_url": f"{BASE}/login"},
            status=status,
        )

    def guarded(
        self, access: Access, handler: PageHandler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guard(request: web.Request) -> web.StreamResponse:
            login = await self.sessions.find(request)
            posting = request.method == "POST"
            if login is None:
                if posting:
                    return self.refused(request, 403, "Your console session ended: log in again.")
                if await self.wizard_open(request):
                    return see_other(f"{BASE}/setup")
                return see_other(f"{BASE}/login")
            form: Mapping[str, str] = {}
            if posting:
                if not same_origin(request):
                    return self.refused(
                        request,
                        403,
                        "Refused: the form was not sent from this console's own pages.",
                    )
                try:
                    posted = await request.post()
                except ValueError:  # undecodable text, a broken multipart body
                    return self.refused(request, 400, "Refused: the form could not be read.")
                form = {k: v for k, v in posted.items() if isinstance(v, str)}
                if not csrf_matches(login.csrf_token, form.get(CSRF_FIELD)):
                    return self.refused(
                        request,
                        403,
                        "Refused: the form's security token did not match. Reload the page"
                        " and try again.",
                    )
            if not login.allows(access):
                groups = ", ".join(sorted(login.principal.groups)) or "readOnly"
                return self.refused(
                    request,
                    403,
                    f"{login.principal.name} ({groups}) may not {access.value} here.",
                )
            page = Page(self, request, login, form)
            if not posting:
                page.shown = await self.sessions.take_pending(login)
            response = await handler(page)
            if page.later:
                await self.sessions.keep_pending(login, page.later)
            return response

        guard.__name__ = getattr(handler, "__name__", "page")
        return guard
