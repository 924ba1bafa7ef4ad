"""Sessions: every bound client session of this process, and kicking one
(`administration/sessions.py`: a `policy-violation` stream error ends it; the
account stays and may log in again)."""

from __future__ import annotations

from aiohttp import web

from chatgate.administration.errors import NotFound
from chatgate.administration.sessions import kick, list_sessions
from chatgate.http.auth.base import Access
from chatgate.http.console.site import BASE, Console, Page


async def sessions(page: Page) -> web.StreamResponse:
    listed = list_sessions(page.console.ctx)
    return page.render("sessions.html", {"title": "Sessions", "sessions": listed})


async def kick_session(page: Page) -> web.StreamResponse:
    jid = page.form.get("jid", "")
    try:
        info = kick(page.console.ctx, jid)
    except NotFound as exc:
        page.notice(f"Not kicked: {exc.message}.")
    else:
        await page.audit("session.kick", info.jid, f"{info.transport} from {info.address or '-'}")
        page.notice(f"Ended the session of {info.jid}.")
    back = page.form.get("back", "")
    if not back.startswith(f"{BASE}/") or "//" in back or not back.isprintable():
        # elsewhere, or a control character (CR LF would split the Location header)
        back = f"{BASE}/sessions"
    return page.redirect(back)


def add_session_routes(app: web.Application, console: Console) -> None:
    app.router.add_get(f"{BASE}/sessions", console.guarded(Access.READ, sessions))
    app.router.add_post(f"{BASE}/sessions/kick", console.guarded(Access.WRITE, kick_session))
