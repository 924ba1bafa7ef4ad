"""Users: search, create, change a password, lock and unlock, delete.

The console calls the operations the API calls (`administration/accounts.py`,
over the account service: its policy, its credential-cache notice, its closing
of sessions), shows their refusals as notices, and records each change in the
audit log.  Reading needs any group; changing needs `advUser` or `admin`.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from chatgate.administration import accounts
from chatgate.administration.errors import OperationError
from chatgate.administration.sessions import list_sessions
from chatgate.http.auth.base import Access
from chatgate.http.console.site import BASE, Console, Page

#: accounts listed on one page
PAGE_SIZE = 100


def user_url(jid: str) -> str:
    return f"{BASE}/users/{quote(jid, safe='@')}"


async def users(page: Page) -> web.StreamResponse:
    query = page.request.query.get("q", "").strip()
    after = page.request.query.get("after") or None
    try:
        listed = await accounts.list_accounts(
            page.console.ctx, search=query or None, after=after, limit=PAGE_SIZE
        )
    except OperationError as exc:
        page.notice(exc.message)
        listed = accounts.AccountPage([], None, 0)
    more = None
    if listed.next_after is not None:
        more = f"{BASE}/users?q={quote(query)}&after={quote(listed.next_after)}"
    return page.render(
        "users.html",
        {
            "title": "Users",
            "rows": [(a, user_url(a.jid)) for a in listed.items],
            "query": query,
            "total": listed.total,
            "more": more,
            "domains": list(page.console.ctx.hosts),
        },
    )


async def create(page: Page) -> web.StreamResponse:
    form = page.form
    try:
        created = await accounts.create_account(
            page.console.ctx,
            form.get("username", "").strip(),
            form.get("password", ""),
            domain=form.get("domain") or None,
            allow_reserved=form.get("allow_reserved") == "on",
        )
    except OperationError as exc:
        page.notice(f"Not created: {exc.message}.")
        return page.redirect(f"{BASE}/users")
    await page.audit("account.create", created.jid)
    page.notice(f"Created {created.jid}.")
    return page.redirect(f"{BASE}/users?q={quote(created.jid)}")


async def user(page: Page) -> web.StreamResponse:
    jid = page.request.match_info["jid"]
    try:
        account = await accounts.get_account(page.console.ctx, jid)
    except OperationError as exc:
        raise web.HTTPNotFound(text=exc.message) from None
    return page.render(
        "user.html",
        {
            "title": account.jid,
            "account": account,
            "url": user_url(account.jid),
            "sessions": list_sessions(page.console.ctx, account.jid),
        },
    )


async def change(page: Page) -> web.StreamResponse:
    """POST /admin/users/{jid}/{password,lock,unlock,delete}."""
    jid, action = page.request.match_info["jid"], page.request.match_info["action"]
    ctx = page.console.ctx
    back = user_url(jid)
    try:
        if action == "password":
            password = page.form.get("password", "")
            if password != page.form.get("password2", ""):
                page.notice("The two passwords differ: the password was not changed.")
                return page.redirect(back)
            await accounts.change_password(ctx, jid, password)
            await page.audit("account.password", jid)
            page.notice(f"Changed the password of {jid}.")
        elif action in ("lock", "unlock"):
            changed = await accounts.set_locked(ctx, jid, action == "lock")
            await page.audit(f"account.{action}", jid, None if changed else "no change")
            if action == "lock":
                page.notice(f"Locked {jid}: no login succeeds, and its sessions were ended.")
            else:
                page.notice(f"Unlocked {jid}.")
        elif action == "delete":
            if page.form.get("confirm", "").strip() != jid:
                page.notice(f"Not deleted: type {jid} to confirm.")
                return page.redirect(back)
            await accounts.delete_account(ctx, jid)
            await page.audit("account.delete", jid)
            page.notice(f"Deleted {jid} and everything it owned.")
            return page.redirect(f"{BASE}/users")
        else:
            raise web.HTTPNotFound()
    except OperationError as exc:
        page.notice(f"Refused: {exc.message}.")
    return page.redirect(back)


def add_user_routes(app: web.Application, console: Console) -> None:
    read, write = Access.READ, Access.WRITE
    app.router.add_get(f"{BASE}/users", console.guarded(read, users))
    app.router.add_post(f"{BASE}/users", console.guarded(write, create))
    app.router.add_get(f"{BASE}/users/{{jid}}", console.guarded(read, user))
    app.router.add_post(f"{BASE}/users/{{jid}}/{{action}}", console.guarded(write, change))
