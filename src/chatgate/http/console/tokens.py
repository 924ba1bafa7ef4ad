"""Tokens: the API's bearer tokens (`admin` only): list, create (the token is
shown once, on the next page; sealed with the login's cookie until then), revoke."""

from __future__ import annotations

from aiohttp import web

from chatgate.http.auth.admins import InvalidAdmin
from chatgate.http.auth.base import GROUPS, Access
from chatgate.http.console.site import BASE, Console, Page

#: the longest lifetime a token may be given, in days (as the API's `ttl`)
MAX_DAYS = 3660


def _lifetime(days: str) -> float | None:
    """Seconds from the form's days (empty: never expires).  ValueError for what is
    not a number of days from above 0 to MAX_DAYS ("inf", "nan", "1e300" too)."""
    if not days:
        return None
    value = float(days)
    if not 0 < value <= MAX_DAYS:  # False for nan as well
        raise ValueError(f"a token lives more than 0 and at most {MAX_DAYS} days")
    return value * 86400


async def tokens_page(page: Page) -> web.StreamResponse:
    return page.render(
        "tokens.html",
        {
            "title": "Tokens",
            "tokens": await page.console.site.tokens.list(),
            "groups": GROUPS,
            "created": page.shown.issued,
        },
    )


async def create(page: Page) -> web.StreamResponse:
    form = page.form
    groups = [g for g in GROUPS if form.get(f"group_{g}") == "on"]
    days = form.get("days", "").strip()
    try:
        ttl = _lifetime(days)
        token, row = await page.console.site.tokens.create(
            form.get("label", ""), groups, page.login.principal.name, ttl
        )
    except (InvalidAdmin, ValueError) as exc:
        page.notice(f"Not created: {exc}.")
        return page.redirect(f"{BASE}/tokens")
    await page.audit("token.create", row.id, f"{row.label} ({', '.join(row.groups)})")
    page.issue(token)
    page.notice(f"Created token {row.id}; copy it now: it is shown once.")
    return page.redirect(f"{BASE}/tokens")


async def revoke(page: Page) -> web.StreamResponse:
    token_id = page.form.get("id", "")
    if await page.console.site.tokens.revoke(token_id):
        await page.audit("token.revoke", token_id)
        page.notice(f"Revoked token {token_id}.")
    else:
        page.notice(f"No token {token_id}.")
    return page.redirect(f"{BASE}/tokens")


def add_token_routes(app: web.Application, console: Console) -> None:
    app.router.add_get(f"{BASE}/tokens", console.guarded(Access.ADMIN, tokens_page))
    app.router.add_post(f"{BASE}/tokens", console.guarded(Access.ADMIN, create))
    app.router.add_post(f"{BASE}/tokens/revoke", console.guarded(Access.ADMIN, revoke))
