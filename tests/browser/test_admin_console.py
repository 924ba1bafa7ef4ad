"""The web console as an operator meets it, in Debian's Chromium: a fresh server
shows the setup wizard; the operator completes it (a PostgreSQL connection test
with a bad URL shows its error, SQLite is chosen), logs in with the browser's own
HTTP password prompt (basic), creates a user; slixmpp logs in as that user; the
sessions page lists the session, the operator kicks it, and the client is
disconnected.  Every page's screenshot is kept as a test artifact."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import connect
from tests.e2e.web import start_web_server

from .conftest import DEFAULT_TIMEOUT_MS, PageLog

ADMIN = ("operator", "operator-password-1")
USER_PASSWORD = "alice-password-1"
ADMIN_CONFIG = '\n[admin]\nenabled = true\nauth = ["basic"]\n'


async def test_the_operator_sets_up_the_server_and_kicks_a_session(
    browser: Any,
    page: Any,
    page_log: PageLog,
    tmp_path: Path,
    save_screenshot: Callable[[Any, str], Awaitable[Path]],
) -> None:
    server = start_web_server(tmp_path, ADMIN_CONFIG)
    try:
        origin = f"http://127.0.0.1:{server.http_port}"
        # -- the wizard (no administrator yet, the browser is on loopback)
        await page.goto(origin + "/admin/")
        assert page.url == origin + "/admin/setup"
        await save_screenshot(page, "01-setup-domain")
        await page.fill("input[name=domain]", "localhost")
        await page.click("#setup-domain button[type=submit]")
        await page.wait_for_url("**/admin/setup/certificate")
        await save_screenshot(page, "02-setup-certificate")
        await page.check("input[name=mode][value=generate]")
        await page.click("#setup-certificate button[type=submit]")
        await page.wait_for_url("**/admin/setup/database")
        await page.check("input[name=kind][value=postgresql]")
        await page.fill("input[name=postgres_url]", "postgresql://chatgate:pw@127.0.0.1:1/chatgate")
        await page.click("button[name=action][value=test]")
        error = page.locator("#check.error")
        await error.wait_for()
        # asyncpg is a dependency: the refused connection itself is reported
        assert "failed" in await error.inner_text()
        await save_screenshot(page, "03-setup-database-postgresql-error")
        await page.check("input[name=kind][value=sqlite]")
        await page.click("button[name=action][value=next]")
        await page.wait_for_url("**/admin/setup/administrator")
        await save_screenshot(page, "04-setup-administrator")
        await page.fill("input[name=name]", ADMIN[0])
        await page.fill("input[name=password]", ADMIN[1])
        await page.fill("input[name=password2]", ADMIN[1])
        await page.click("#setup-administrator button[type=submit]")
        await page.locator("#created").wait_for()
        assert await page.locator("#written").count() == 1
        await save_screenshot(page, "05-setup-done")
        assert Path(str(server.config) + ".bak").exists()
        # the wizard is gone: its address now leads to the login
        gone = await page.request.get(origin + "/admin/setup", max_redirects=0)
        assert gone.status == 303 and gone.headers["location"] == "/admin/login"

        # -- log in: the browser answers the basic challenge with the operator's password
        context = await browser.new_context(
            viewport={"width": 1280, "height": 800},
            http_credentials={"username": ADMIN[0], "password": ADMIN[1]},
        )
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        try:
            console = await context.new_page()
            console.on("pageerror", lambda e: page_log.errors.append(str(e)))
            await console.goto(origin + "/admin/login")
            assert console.url == origin + "/admin/"
            cookies = {c["name"]: c for c in await context.cookies()}
            session_cookie = cookies["chatgate_console"]
            assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Strict"
            await console.locator("h1", has_text="Dashboard").wait_for()
            assert await console.locator("svg.chart").count() == 2
            await save_screenshot(console, "06-dashboard")

            # -- create a user
            await console.click("nav >> text=Users")
            await console.fill("#create-user input[name=username]", "alice")
            await console.fill("#create-user input[name=password]", USER_PASSWORD)
            await console.click("#create-user button[type=submit]")
            await console.locator(".notice", has_text="Created alice@localhost").wait_for()
            await console.locator("tr[data-jid='alice@localhost']").wait_for()
            await save_screenshot(console, "07-users")

            # -- the user logs in with slixmpp; the sessions page lists the session
            client = await connect(server, "alice@localhost", USER_PASSWORD)
            disconnected = asyncio.Event()
            client.add_event_handler("disconnected", lambda _e: disconnected.set())
            try:
                await console.click("nav >> text=Sessions")
                row = console.locator("tr[data-jid^='alice@localhost/']")
                await row.wait_for()
                assert "tcp" in await row.inner_text()
                await save_screenshot(console, "08-sessions")
                await console.click("tr[data-jid^='alice@localhost/'] >> text=Kick")
                await console.locator(".notice", has_text="Ended the session").wait_for()
                await asyncio.wait_for(disconnected.wait(), 10)
                stream_error = await asyncio.wait_for(client.stream_errors.get(), 5)
                assert stream_error["condition"] == "policy-violation"  # type: ignore[index]
                await save_screenshot(console, "09-sessions-after-kick")
                assert await console.locator("tr[data-jid^='alice@localhost/']").count() == 0
            finally:
                await asyncio.wait_for(client.disconnect(), 5)

            # -- the user's own page, and every other page of the console
            await console.goto(origin + "/admin/users/alice@localhost")
            await console.locator("h1", has_text="alice@localhost").wait_for()
            await save_screenshot(console, "10-user")
            for number, (path, name) in enumerate(
                [
                    ("/admin/registration", "registration"),
                    ("/admin/streams", "streams"),
                    ("/admin/tokens", "tokens"),
                    ("/admin/log", "log"),
                    ("/admin/config", "configuration"),
                    ("/admin/audit", "audit"),
                ],
                start=11,
            ):
                response = await console.goto(origin + path)
                assert response is not None and response.status == 200, path
                await save_screenshot(console, f"{number}-{name}")
            # the audit page shows the kick, newest first, with the client's transport
            audit = await console.inner_text("#audit")
            assert "session.kick" in audit and "alice@localhost/" in audit, audit
        finally:
            await context.close()
        assert page_log.errors == []
    finally:
        assert server.stop() == 0
    log = server.log_text()
    assert "Traceback" not in log, log
    assert "setup wizard: administrator operator created" in log
