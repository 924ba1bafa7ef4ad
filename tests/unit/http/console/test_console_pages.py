"""The console's other pages over a real server: users changed through the
account service, tokens shown once and kept from advUser, the log tail, the
configuration redacted, and the stream page with the authority off."""

from __future__ import annotations

import logging
import re

from chatgate.auth.credentials import derive_all
from chatgate.http.auth.base import Principal

from .conftest import Browser, ConsoleServer

ADMIN = ("ops", "a long admin password")


async def _login(console: ConsoleServer, browser: Browser, groups: list[str]) -> str:
    await console.add_admin(*ADMIN, groups)
    assert (await browser.get("/admin/login", auth=ADMIN)).status == 303
    return (await browser.get("/admin/")).form_token()


async def test_a_user_is_locked_unlocked_and_deleted(
    console: ConsoleServer, browser: Browser
) -> None:
    token = await _login(console, browser, ["advUser"])
    await console.ctx.db.accounts.create(
        "bob", "localhost", derive_all("bobs password", iterations=4096)
    )
    page = await browser.get("/admin/users/bob@localhost")
    assert page.status == 200 and "Lock" in page.text
    assert (await browser.post("/admin/users/bob@localhost/lock", {"csrf": token})).status == 303
    assert await console.ctx.db.accounts.locked("bob", "localhost") is True
    assert (await browser.post("/admin/users/bob@localhost/unlock", {"csrf": token})).status == 303
    assert await console.ctx.db.accounts.locked("bob", "localhost") is False
    unconfirmed = await browser.post("/admin/users/bob@localhost/delete", {"csrf": token})
    assert unconfirmed.status == 303 and await console.ctx.db.accounts.exists("bob", "localhost")
    await browser.post(
        "/admin/users/bob@localhost/delete", {"csrf": token, "confirm": "bob@localhost"}
    )
    assert not await console.ctx.db.accounts.exists("bob", "localhost")
    actions = [e.action for e in await console.site.audit.page()]
    assert actions[:3] == ["account.delete", "account.unlock", "account.lock"]
    assert (await browser.get("/admin/users/nobody@localhost")).status == 404


async def test_a_token_is_shown_once_and_only_to_admin(
    console: ConsoleServer, browser: Browser
) -> None:
    token = await _login(console, browser, ["admin"])
    made = await browser.post(
        "/admin/tokens", {"csrf": token, "label": "backup", "group_readOnly": "on", "days": "1"}
    )
    assert made.status == 303
    shown = await browser.get("/admin/tokens")
    secret = re.search(r'id="created-token">([^<]+)<', shown.text)
    assert secret is not None
    assert await console.site.tokens.check(secret.group(1)) is not None
    again = await browser.get("/admin/tokens")
    assert secret.group(1) not in again.text and "backup" in again.text


async def test_adv_user_may_not_manage_tokens_or_read_the_configuration(
    console: ConsoleServer, browser: Browser
) -> None:
    token = await _login(console, browser, ["advUser"])
    assert (await browser.get("/admin/tokens")).status == 403
    refused = await browser.post(
        "/admin/tokens", {"csrf": token, "label": "x", "group_admin": "on"}
    )
    assert refused.status == 403 and await console.site.tokens.list() == []
    assert (await browser.get("/admin/config")).status == 403


async def test_the_log_and_the_redacted_configuration(
    console: ConsoleServer, browser: Browser
) -> None:
    await _login(console, browser, ["admin"])
    logging.getLogger("chatgate.test").warning("disk <almost> full")
    log = await browser.get("/admin/log?level=WARNING")
    assert log.status == 200 and "chatgate.test: disk &lt;almost&gt; full" in log.text
    config = await browser.get("/admin/config")
    assert config.status == 200 and "&#34;domain&#34;: &#34;localhost&#34;" in config.text
    streams = await browser.get("/admin/streams")
    assert streams.status == 200 and "stream authority is off" in streams.text


async def test_the_audit_page_lists_changes_newest_first_and_pages(
    console: ConsoleServer, browser: Browser
) -> None:
    token = await _login(console, browser, ["readOnly"])
    assert "/admin/audit" in (await browser.get("/admin/")).text  # in the navigation
    audit = console.site.audit
    for n in range(60):
        await audit.record(console_principal(), "127.0.0.1", "account.lock", f"u{n}@localhost")
    await audit.record(console_principal(), "127.0.0.1", "account.delete", "<b>x</b>@localhost")
    page = await browser.get("/admin/audit")
    assert page.status == 200
    assert "&lt;b&gt;x&lt;/b&gt;@localhost" in page.text and "<b>x</b>" not in page.text
    rows = re.findall(r"<td>(u\d+)@localhost</td>", page.text)
    assert rows[:2] == ["u59", "u58"] and len(rows) == 49  # 50 a page, the delete first
    older = re.search(r'href="/admin/audit\?before=(\d+)"', page.text)
    assert older is not None
    rest = await browser.get(f"/admin/audit?before={older.group(1)}")
    assert re.findall(r"<td>(u\d+)@localhost</td>", rest.text)[-1] == "u0"
    only = await browser.get("/admin/audit?action=account.delete")
    assert "u59@localhost" not in only.text and "x&lt;/b&gt;" in only.text
    assert (await browser.get("/admin/audit?before=not-a-number")).status == 200
    assert token  # a readOnly administrator reads it


def console_principal() -> Principal:
    return Principal("ops", frozenset({"admin"}), "console")
