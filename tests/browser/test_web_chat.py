"""The bundled web chat: `/chat/` as served by the real server, converse.js in Debian's
Chromium.  A new user logs in through converse's own form, opens the chat with a
contact on slixmpp (TCP) from converse's contact list, and a message goes each way and renders.  The screenshot is kept."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import logged_in
from tests.e2e.web import start_web_server

from .conftest import PageLog

PASSWORD = "converse-password-1"


async def test_the_web_chat_logs_in_and_chats(
    page: Any,
    page_log: PageLog,
    tmp_path: Path,
    web_assets: Path,
    save_screenshot: Callable[[Any, str], Awaitable[Path]],
) -> None:
    server = start_web_server(tmp_path, f'[http.chat]\nassets_dir = "{web_assets}"\n')
    try:
        for name in ("alice", "bob"):
            server.add_user(name, PASSWORD)
        # bob is in alice's roster (put there from another client), as a contact
        # a new user would have added: the web chat lists him
        async with logged_in(server, "alice@localhost", PASSWORD) as other_device:
            await other_device.update_roster("bob@localhost", name="Bob")
        origin = f"http://127.0.0.1:{server.http_port}"
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        await page.goto(origin + "/chat/")
        form = page.locator("converse-root form#converse-login")
        await form.locator("input[name=jid]").fill("alice")
        await form.locator("input[name=password]").fill(PASSWORD)
        await form.locator("[type=submit]").click()
        # logged in: converse shows the roster pane (controlbox) of a connected user
        await page.wait_for_selector(
            "converse-roster, .controlbox-section#chatrooms, converse-user-profile", timeout=20_000
        )
        assert "alice@localhost authenticated with" in server.log_text()
        async with logged_in(server, "bob@localhost", PASSWORD) as bob:
            await page.locator("a.open-chat[data-jid='bob@localhost']").click()
            textarea = page.locator(".chat-textarea").first
            await textarea.fill("hello bob, from the web chat")
            await textarea.press("Enter")
            got = await asyncio.wait_for(bob.messages.get(), 10)
            assert got["body"] == "hello bob, from the web chat"
            assert str(got["from"]).startswith("alice@localhost/")
            bob.send_message(mto=got["from"], mbody="hello alice, from slixmpp", mtype="chat")
            await page.locator(".chat-msg__text", has_text="hello alice, from slixmpp").wait_for()
            await page.locator(
                ".chat-msg__text", has_text="hello bob, from the web chat"
            ).wait_for()
            shot = await save_screenshot(page, "web-chat")
            assert shot.stat().st_size > 10_000
        # everything came from the server itself: no CDN, no outside host
        assert all(u.startswith((origin, "ws://127.0.0.1", "data:", "blob:")) for u in requested), [
            u for u in requested if not u.startswith(origin)
        ]
        assert page_log.errors == []
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log_text(), server.log_text()
