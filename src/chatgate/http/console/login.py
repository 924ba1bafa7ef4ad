"""Logging in to the console and out of it.

`/admin/login` is the only console route the HTTP authentication methods see
(`[admin] console_auth`, else `auth`): the browser answers their challenge
(basic or digest: its own password prompt), the route set's `AuthChain`
decides, and a proven principal gets a console session cookie; every other page
checks only that cookie.  Failed logins go through the methods' own brute-force
protection.  A refusal is answered with its status and challenges, and a page
that explains them, so a browser without credentials prompts for them.
"""

from __future__ import annotations

from aiohttp import web

from chatgate.http.auth.base import Refusal
from chatgate.http.console.render import see_other
from chatgate.http.console.session import clear_cookie, set_cookie
from chatgate.http.console.site import BASE, Console, Page


async def login(console: Console, request: web.Request) -> web.StreamResponse:
    if await console.wizard_open(request):
        return see_other(f"{BASE}/setup")
    chain = console.site.chains.get("console")
    if chain is None:
        return console.refused(request, 503, "The console's login methods are not ready.")
    outcome = await chain.authenticate(console.auth_request(request))
    if isinstance(outcome, Refusal):
        response = console.renderer.page(
            "login.html",
            {"status": outcome.status, "message": outcome.message, "login_url": f"{BASE}/login"},
            status=outcome.status,
        )
        for challenge in outcome.challenges:
            response.headers.add("WWW-Authenticate", challenge)
        if outcome.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, round(outcome.retry_after)))
        for name, value in outcome.headers:
            response.headers.add(name, value)
        return response
    value, _ = await console.sessions.create(outcome)
    response = see_other(f"{BASE}/")
    set_cookie(response, value, secure=console.secure(request))
    return response


async def logout(page: Page) -> web.StreamResponse:
    await page.console.sessions.end(page.login)
    response = page.console.renderer.page(
        "logged_out.html", {"login_url": f"{BASE}/login", "name": page.login.principal.name}
    )
    clear_cookie(response, secure=page.console.secure(page.request))
    return response
