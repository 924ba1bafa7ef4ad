"""The console's routes: the login, the setup wizard, the pages, the static files.

`add_console_routes` makes the `Console` (the state the handlers share) and
hooks its lifetime to the application's: the log tail is installed on the root
logger while the listener runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from chatgate.http.auth.base import Access
from chatgate.http.console.audit import add_audit_routes
from chatgate.http.console.dashboard import add_dashboard_routes
from chatgate.http.console.login import login, logout
from chatgate.http.console.registration import add_registration_routes
from chatgate.http.console.render import HEADERS, STATIC, see_other
from chatgate.http.console.sessions import add_session_routes
from chatgate.http.console.site import BASE, Console
from chatgate.http.console.streams import add_stream_routes
from chatgate.http.console.system import add_system_routes
from chatgate.http.console.tokens import add_token_routes
from chatgate.http.console.users import add_user_routes
from chatgate.http.console.wizard import add_wizard_routes

if TYPE_CHECKING:
    from chatgate.http.admin import AdminSite

CONSOLE_KEY = web.AppKey("chatgate.console", Console)


def add_console_routes(app: web.Application, site: AdminSite) -> None:
    """Add `/admin/...` to `app`."""
    console = Console(site)
    app[CONSOLE_KEY] = console

    async def running(_app: web.Application) -> AsyncIterator[None]:
        console.log_tail.install()
        yield
        console.log_tail.remove()

    app.cleanup_ctx.append(running)

    async def to_dashboard(_request: web.Request) -> web.StreamResponse:
        return see_other(f"{BASE}/")

    async def login_route(request: web.Request) -> web.StreamResponse:
        return await login(console, request)

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        response = web.FileResponse(path)
        response.headers.update(HEADERS)
        response.headers["Cache-Control"] = "max-age=300"
        return response

    app.router.add_get(BASE, to_dashboard)
    app.router.add_get(f"{BASE}/login", login_route)
    app.router.add_post(f"{BASE}/logout", console.guarded(Access.READ, logout))
    app.router.add_get(f"{BASE}/static/{{name}}", static)
    add_wizard_routes(app, console)
    add_dashboard_routes(app, console)
    add_user_routes(app, console)
    add_session_routes(app, console)
    add_registration_routes(app, console)
    add_stream_routes(app, console)
    add_token_routes(app, console)
    add_system_routes(app, console)
    add_audit_routes(app, console)
