"""What a console login is shown once after a change (its notices, a token just
created) reaches the next page whichever process serves it: two real servers on
one database (as `serve --workers 2`), the POST on one, the next page on the
other.  The database holds it sealed with the login's cookie, never readable, and
no log line carries it."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator

import pytest

from chatgate.config import load_config
from chatgate.http.console.pending import (
    MAX_NOTICES,
    PENDING_LIFETIME,
    Pending,
    seal,
    sealing_key,
    unseal,
)
from chatgate.http.console.session import digest
from chatgate.server import Server

from .conftest import Browser, ConsoleServer
from .test_console_pages import _login


@pytest.fixture
async def second(console: ConsoleServer) -> AsyncIterator[ConsoleServer]:
    """Another server of the same configuration: the same database, its own port."""
    server = Server(load_config(console.config_path))
    await server.start()
    assert server.http is not None
    scheme, host, port = server.http.bound[0]
    try:
        yield ConsoleServer(server, console.config_path, f"{scheme}://{host}:{port}")
    finally:
        await server.stop()


def created_token(text: str) -> str | None:
    found = re.search(r'id="created-token">([^<]+)<', text)
    return None if found is None else found.group(1)


async def test_a_token_made_on_one_server_is_shown_once_by_the_other(
    console: ConsoleServer,
    second: ConsoleServer,
    browser: Browser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    csrf = await _login(console, browser, ["admin"])
    caplog.set_level(logging.DEBUG)
    made = await browser.post(
        "/admin/tokens", {"csrf": csrf, "label": "backup", "group_readOnly": "on", "days": "1"}
    )
    assert made.status == 303
    cookie = browser.cookies["chatgate_console"]
    row = await console.ctx.db.console_sessions.get(digest(cookie))
    assert row is not None and row.pending is not None  # waiting in the database

    browser.base = second.base  # the redirect lands on the other worker
    shown = await browser.get("/admin/tokens")
    assert shown.status == 200
    secret = created_token(shown.text)
    assert secret is not None, shown.text
    assert await console.site.tokens.check(secret) is not None
    assert "copy it now: it is shown once" in shown.text  # the notice came along

    assert secret not in row.pending  # sealed while it waited
    assert unseal(row.pending, sealing_key(cookie), time.time()).issued == secret
    assert not [r for r in caplog.records if secret in r.getMessage()]

    for base in (second.base, console.base):  # shown once: on neither server again
        browser.base = base
        again = await browser.get("/admin/tokens")
        assert created_token(again.text) is None and "copy it now" not in again.text
    row = await console.ctx.db.console_sessions.get(digest(cookie))
    assert row is not None and row.pending is None


async def test_notices_of_several_posts_wait_together(
    console: ConsoleServer, second: ConsoleServer, browser: Browser
) -> None:
    csrf = await _login(console, browser, ["admin"])
    for token_id in ("t-one", "t-two"):
        browser.base = console.base if token_id == "t-one" else second.base
        await browser.post("/admin/tokens/revoke", {"csrf": csrf, "id": token_id})
    page = await browser.get("/admin/")
    assert "No token t-one." in page.text and "No token t-two." in page.text
    assert "No token t-one." not in (await browser.get("/admin/")).text


def test_sealed_values_open_only_with_their_cookie_and_in_time() -> None:
    key = sealing_key("cookie value")
    sealed = seal(Pending(["made"], "secret-token"), key, now=1000.0)
    assert "secret-token" not in sealed
    assert unseal(sealed, key, 1000.0 + PENDING_LIFETIME - 1) == Pending(["made"], "secret-token")
    assert not unseal(sealed, key, 1000.0 + PENDING_LIFETIME)  # expired
    assert not unseal(sealed, sealing_key("another cookie"), 1000.0)
    assert not unseal(sealed[:-4] + "AAAA", key, 1000.0)  # tampered with
    assert not unseal("not base64 at all!", key, 1000.0)


def test_merged_keeps_the_newest_notices_and_secret() -> None:
    merged = Pending([f"n{i}" for i in range(MAX_NOTICES)], "old").merged(Pending(["last"], "new"))
    assert merged.notices[-1] == "last" and len(merged.notices) == MAX_NOTICES
    assert merged.issued == "new"
    assert Pending([], "kept").merged(Pending(["a"])).issued == "kept"
