"""Registration: the in-band registration settings (read here, changed in the
configuration file) and the registrations awaiting approval, approved or
rejected through the account service (`administration/registration.py`)."""

from __future__ import annotations

from aiohttp import web

from chatgate.administration import registration
from chatgate.administration.configuration import redact
from chatgate.administration.errors import OperationError
from chatgate.http.auth.base import Access
from chatgate.http.console.site import BASE, Console, Page


async def registration_page(page: Page) -> web.StreamResponse:
    ctx = page.console.ctx
    options = registration.settings(ctx)
    settings = redact(options.model_dump(mode="json", exclude={"invite_tokens"}))
    return page.render(
        "registration.html",
        {
            "title": "Registration",
            "settings": settings,
            "invite_tokens": len(options.invite_tokens),
            "pending": await registration.pending(ctx),
        },
    )


async def decide(page: Page) -> web.StreamResponse:
    jid, verdict = page.form.get("jid", ""), page.request.match_info["verdict"]
    try:
        if verdict == "approve":
            await registration.approve(page.console.ctx, jid)
            page.notice(f"Approved {jid}: the account can log in.")
        elif verdict == "reject":
            await registration.reject(page.console.ctx, jid)
            page.notice(f"Rejected {jid}: the name is free again.")
        else:
            raise web.HTTPNotFound()
    except OperationError as exc:
        page.notice(f"Refused: {exc.message}.")
    else:
        await page.audit(f"registration.{verdict}", jid)
    return page.redirect(f"{BASE}/registration")


def add_registration_routes(app: web.Application, console: Console) -> None:
    app.router.add_get(f"{BASE}/registration", console.guarded(Access.READ, registration_page))
    app.router.add_post(f"{BASE}/registration/{{verdict}}", console.guarded(Access.WRITE, decide))
