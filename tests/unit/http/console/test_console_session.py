"""Console logins over a real server: the login route answers the browser's basic
credentials with a hashed-cookie session; every page checks that cookie, its idle
timeout, the group's rights, and on a POST the CSRF token and the origin."""

from __future__ import annotations

import hashlib

from .conftest import Browser, ConsoleServer

ADMIN = ("ops", "a long admin password")
VIEWER = ("viewer", "a long viewer password")


async def _login(console: ConsoleServer, browser: Browser, who: tuple[str, str], groups: list[str]):  # type: ignore[no-untyped-def]
    await console.add_admin(who[0], who[1], groups)
    reply = await browser.get("/admin/login", auth=who)
    assert reply.status == 303 and reply.headers["Location"] == "/admin/", reply.text
    return reply


async def test_login_without_credentials_is_challenged(
    console: ConsoleServer, browser: Browser
) -> None:
    await console.add_admin(*ADMIN, ["admin"])
    reply = await browser.get("/admin/login")
    assert reply.status == 401
    assert reply.headers.getall("WWW-Authenticate")[0].startswith("Basic ")
    wrong = await browser.get("/admin/login", auth=(ADMIN[0], "not the password"))
    assert wrong.status == 401 and "chatgate_console" not in browser.cookies


async def test_a_login_makes_a_strict_httponly_cookie_stored_only_as_a_hash(
    console: ConsoleServer, browser: Browser
) -> None:
    reply = await _login(console, browser, ADMIN, ["admin"])
    morsel = reply.cookies["chatgate_console"]
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/admin/"
    assert not morsel["secure"]  # plain HTTP on loopback; over TLS it is Secure
    value = morsel.value
    assert await console.ctx.db.console_sessions.get(value) is None
    row = await console.ctx.db.console_sessions.get(hashlib.sha256(value.encode()).hexdigest())
    assert row is not None and row.admin == ADMIN[0]
    page = await browser.get("/admin/")
    assert page.status == 200 and "Dashboard" in page.text and "<svg" in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


async def test_a_post_without_the_csrf_token_or_from_elsewhere_is_refused(
    console: ConsoleServer, browser: Browser
) -> None:
    await _login(console, browser, ADMIN, ["admin"])
    page = await browser.get("/admin/users")
    token = page.form_token()
    new = {"username": "carol", "password": "carols password", "domain": "localhost"}
    assert (await browser.post("/admin/users", new)).status == 403
    assert (await browser.post("/admin/users", {**new, "csrf": "forged"})).status == 403
    forged = await browser.post("/admin/users", {**new, "csrf": token}, origin="http://evil.test")
    assert forged.status == 403
    headless = await browser.post("/admin/users", {**new, "csrf": token}, origin=None)
    assert headless.status == 403
    assert not await console.ctx.db.accounts.exists("carol", "localhost")
    made = await browser.post("/admin/users", {**new, "csrf": token})
    assert made.status == 303
    assert await console.ctx.db.accounts.exists("carol", "localhost")
    entries = await console.site.audit.page()
    assert [(e.actor, e.method, e.action, e.target) for e in entries][:1] == [
        (ADMIN[0], "console", "account.create", "carol@localhost")
    ]


async def test_an_idle_session_times_out(console: ConsoleServer, browser: Browser) -> None:
    reply = await _login(console, browser, ADMIN, ["admin"])
    id_hash = hashlib.sha256(reply.cookies["chatgate_console"].value.encode()).hexdigest()
    assert (await browser.get("/admin/sessions")).status == 200
    row = await console.ctx.db.console_sessions.get(id_hash)
    idle = int(console.site.options.session_timeout) + 5
    await console.ctx.db.console_sessions.seen(id_hash, row.last_seen_at - idle)
    expired = await browser.get("/admin/sessions")
    assert expired.status == 303 and expired.headers["Location"] == "/admin/login"
    assert await console.ctx.db.console_sessions.get(id_hash) is None


async def test_read_only_sees_but_cannot_change(console: ConsoleServer, browser: Browser) -> None:
    await _login(console, browser, VIEWER, ["readOnly"])
    page = await browser.get("/admin/users")
    assert page.status == 200 and 'id="create-user"' not in page.text
    token = page.form_token()  # the logout form carries it
    refused = await browser.post(
        "/admin/users", {"csrf": token, "username": "mallory", "password": "mallorys password"}
    )
    assert refused.status == 403 and "may not write" in refused.text
    assert not await console.ctx.db.accounts.exists("mallory", "localhost")
    kick = await browser.post("/admin/sessions/kick", {"csrf": token, "jid": "a@localhost/x"})
    assert kick.status == 403
    assert (await browser.get("/admin/config")).status in (403, 404)


async def test_logout_ends_the_session(console: ConsoleServer, browser: Browser) -> None:
    reply = await _login(console, browser, ADMIN, ["admin"])
    id_hash = hashlib.sha256(reply.cookies["chatgate_console"].value.encode()).hexdigest()
    old_cookie = dict(browser.cookies)
    page = await browser.get("/admin/")
    out = await browser.post("/admin/logout", {"csrf": page.form_token()})
    assert out.status == 200 and "Logged out" in out.text
    assert await console.ctx.db.console_sessions.get(id_hash) is None
    browser.cookies = old_cookie  # a copy of the old cookie opens nothing
    assert (await browser.get("/admin/")).headers["Location"] == "/admin/login"
