"""The setup wizard over a real server: served only to loopback clients while no
administrator exists, its database test, and its end: the administrator made at
once, the configuration file edited in place (comments kept, `.bak` beside it)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from .conftest import Browser, ConsoleServer, start_console

ADMIN = ("root-admin", "correct horse battery")


async def _step(browser: Browser, step: str, data: dict[str, str]) -> None:
    page = await browser.get(f"/admin/setup/{step}")
    assert page.status == 200, page.text
    reply = await browser.post(f"/admin/setup/{step}", {"csrf": page.form_token(), **data})
    assert reply.status == 303, reply.text


async def test_a_fresh_server_sends_the_console_to_the_wizard(browser: Browser) -> None:
    reply = await browser.get("/admin/")
    assert reply.status == 303 and reply.headers["Location"] == "/admin/setup"
    wizard = await browser.get("/admin/setup")
    assert wizard.status == 200 and 'id="setup-domain"' in wizard.text
    assert "chatgate_setup" in browser.cookies


async def test_the_wizard_is_refused_to_a_client_not_on_loopback(browser: Browser) -> None:
    # the listener trusts 127.0.0.1 as a proxy: the client is the forwarded address
    away = {"X-Forwarded-For": "203.0.113.9"}
    reply = await browser.get("/admin/setup/domain", headers=away)
    assert reply.status == 403 and "loopback" in reply.text
    assert "chatgate_setup" not in browser.cookies
    reply = await browser.get("/admin/", headers=away)
    assert reply.headers["Location"] == "/admin/login"


async def test_the_wizard_is_gone_once_an_administrator_exists(
    console: ConsoleServer, browser: Browser
) -> None:
    await console.add_admin("ops", "long enough password", ["admin"])
    reply = await browser.get("/admin/setup/domain")
    assert reply.status == 303 and reply.headers["Location"] == "/admin/login"
    assert (await browser.get("/admin/")).headers["Location"] == "/admin/login"


async def test_a_wizard_post_needs_its_token_and_origin(browser: Browser) -> None:
    page = await browser.get("/admin/setup/domain")
    token = page.form_token()
    wrong = await browser.post("/admin/setup/domain", {"csrf": "x" * 43, "domain": "a.example"})
    assert wrong.status == 403
    forged = await browser.post(
        "/admin/setup/domain", {"csrf": token, "domain": "a.example"}, origin="http://evil.test"
    )
    assert forged.status == 403
    ok = await browser.post("/admin/setup/domain", {"csrf": token, "domain": "a.example"})
    assert ok.status == 303 and ok.headers["Location"] == "/admin/setup/certificate"


async def test_the_database_test_reports_a_postgresql_failure(browser: Browser) -> None:
    await _step(browser, "domain", {"domain": "localhost"})
    await _step(browser, "certificate", {"mode": "generate"})
    page = await browser.get("/admin/setup/database")
    reply = await browser.post(
        "/admin/setup/database",
        {
            "csrf": page.form_token(),
            "kind": "postgresql",
            "postgres_url": "postgresql://chatgate:secret-pw@127.0.0.1:1/chatgate",
            "action": "test",
        },
    )
    assert reply.status == 422
    # asyncpg is a dependency: the refused connection is reported, and the
    # password is never repeated.
    assert "failed" in reply.text, reply.text
    assert "secret-pw" not in reply.text.split('name="postgres_url"')[0]
    bad = await browser.post(
        "/admin/setup/database",
        {"csrf": page.form_token(), "kind": "postgresql", "postgres_url": "nonsense"},
    )
    assert bad.status == 422 and "not a database URL" in bad.text


async def test_finishing_the_wizard_creates_the_administrator_and_edits_the_file(
    console: ConsoleServer, browser: Browser, tmp_path: Path
) -> None:
    await _step(browser, "domain", {"domain": "chat.example.org"})
    await _step(browser, "certificate", {"mode": "generate"})
    await _step(
        browser, "database", {"kind": "sqlite", "sqlite_path": str(tmp_path / "chatgate.db")}
    )
    page = await browser.get("/admin/setup/administrator")
    short = await browser.post(
        "/admin/setup/administrator",
        {"csrf": page.form_token(), "name": ADMIN[0], "password": "short", "password2": "short"},
    )
    assert short.status == 422 and "at least 8" in short.text
    differ = await browser.post(
        "/admin/setup/administrator",
        {"csrf": page.form_token(), "name": ADMIN[0], "password": ADMIN[1], "password2": "x" * 12},
    )
    assert differ.status == 422 and "differ" in differ.text
    assert await console.site.admins.count() == 0
    before = console.config_path.read_text()
    done = await browser.post(
        "/admin/setup/administrator",
        {"csrf": page.form_token(), "name": ADMIN[0], "password": ADMIN[1], "password2": ADMIN[1]},
    )
    assert done.status == 200 and 'id="created"' in done.text, done.text
    row = await console.site.admins.verify(*ADMIN)
    assert row is not None and row.groups == ("admin",)
    # the file: the domain changed in place, everything else kept, the old one beside it
    text = console.config_path.read_text()
    assert text.startswith("# the operator's own comment: kept by the wizard\n")
    assert 'domain = "chat.example.org"' in text
    assert Path(str(console.config_path) + ".bak").read_text() == before
    parsed, old = tomllib.loads(text), tomllib.loads(before)
    assert parsed["server"] == {**old["server"], "domain": "chat.example.org"}
    assert {k: v for k, v in parsed.items() if k != "server"} == {
        k: v for k, v in old.items() if k != "server"
    }
    assert 'domain = "chat.example.org"  # the domain\n' in text
    assert "[server] domain = chat.example.org" in done.text  # needs a restart
    assert "[storage]" not in done.text.split('id="restart"')[1]  # the same database
    # and the wizard is gone
    assert (await browser.get("/admin/setup")).headers["Location"] == "/admin/login"


async def test_with_the_wizard_off_there_is_none(tmp_path: Path) -> None:
    running = await start_console(tmp_path, 'setup_wizard = "off"')
    try:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            browser = Browser(running.base, http)
            assert (await browser.get("/admin/setup")).status == 404
            assert (await browser.get("/admin/")).headers["Location"] == "/admin/login"
    finally:
        await running.server.stop()


async def test_a_server_without_administrators_says_where_to_make_one(
    caplog: pytest.LogCaptureFixture, console: ConsoleServer
) -> None:
    said = [r.getMessage() for r in caplog.get_records("setup") if r.name == "chatgate.http.admin"]
    assert any("no administrator yet" in m and "admin user add" in m for m in said), said
