"""Group chat in the bundled web chat: `/chat/` as served by the real `chatgate serve`
(MUC and the message archive on, as by default), converse.js in Debian's Chromium, three
accounts made with the CLI, one browser context each.

alice creates a room on conference.localhost from converse's "Add groupchat" modal, bob
joins it the same way, they exchange messages and each page shows both.  Then carol logs
in, alice invites her from the participants' menu (converse sends a XEP-0249 direct
invitation), carol accepts and picks a nickname: the late joiner's page shows the
earlier messages.  They came from the room's archive (XEP-0313): converse asks for no
join history (`<history maxstanzas='0'/>`) from a room that advertises urn:xmpp:mam:2,
and the frames carol's page received carry the messages' text only inside the MAM
results of her query to the room, never as room history or live messages.

A screenshot of each page, the frames each page exchanged and the server log are kept in
``test-artifacts/test_web_chat_muc/<test>/``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.web import start_web_server

from .conftest import DEFAULT_TIMEOUT_MS, PageLog
from .muc_pages import CLIENT, CONFERENCE, MAM, MUC, MUC_USER, ChatPage, Frames, bodies, parse

PASSWORD = "converse-muc-password-1"
ROOM = "team@conference.localhost"
FROM_ALICE = "Morning! The build is green again."
FROM_BOB = "Thanks alice, merging the branch now."
REASON = "we are talking about the release"


async def test_a_room_made_in_the_web_chat_and_its_history_from_the_archive(
    browser: Any,
    tmp_path: Path,
    web_assets: Path,
    artifacts: Path,
    save_screenshot: Callable[[Any, str], Awaitable[Path]],
) -> None:
    started = time.monotonic()
    server = start_web_server(tmp_path, f'[http.chat]\nassets_dir = "{web_assets}"\n')
    contexts: list[Any] = []
    pages: dict[str, ChatPage] = {}
    logs: dict[str, PageLog] = {}

    async def open_page(name: str) -> ChatPage:
        """A new browser context (its own storage) with converse logged in as `name`."""
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        page = await context.new_page()
        log = logs[name] = PageLog()
        page.on("console", lambda m: log.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: log.errors.append(str(e)))
        chat = pages[name] = ChatPage(name, page, Frames())
        chat.frames.attach(page)
        await chat.login(f"http://127.0.0.1:{server.http_port}/chat/", PASSWORD)
        return chat

    try:
        for name in ("alice", "bob", "carol"):
            server.add_user(name, PASSWORD)
        alice = await open_page("alice")
        bob = await open_page("bob")

        # alice creates the room; she is its owner
        await alice.open_room(ROOM, "alice")
        await alice.occupant("alice").wait_for()
        assert "201" in _self_presence_codes(alice), alice.frames.text()  # room created
        # bob joins it; each sees the other among the participants
        await bob.open_room(ROOM, "bob")
        await alice.occupant("bob").wait_for()
        await bob.occupant("alice").wait_for()

        # they talk; each page shows both messages
        await alice.say(FROM_ALICE)
        await bob.message(FROM_ALICE).wait_for()
        await bob.say(FROM_BOB)
        await alice.message(FROM_BOB).wait_for()
        await bob.message(FROM_BOB).wait_for()
        for chat in (alice, bob):
            assert (await chat.messages())[-2:] == [FROM_ALICE, FROM_BOB], chat.name
        # ...live: bob's message reached alice as a groupchat message from the room
        assert [FROM_BOB] in [_live_groupchat_bodies(f) for f in alice.frames.received]

        # carol, the late joiner, logs in; alice invites her and she accepts
        carol = await open_page("carol")
        await alice.invite("carol@localhost", REASON)
        await carol.accept_invitation(ROOM, REASON, "carol")
        await alice.occupant("carol").wait_for()
        await carol.message(FROM_ALICE).wait_for()
        await carol.message(FROM_BOB).wait_for()
        assert (await carol.messages())[-2:] == [FROM_ALICE, FROM_BOB]
        received = [e for e in map(parse, carol.frames.received) if e is not None]
        assert any(e.find(f"{{{CONFERENCE}}}x[@jid='{ROOM}']") is not None for e in received)

        # carol's page got those messages from the room's archive, and only from there
        sent = [e for e in map(parse, carol.frames.sent) if e is not None]
        joins = [e for e in sent if e.tag == f"{CLIENT}presence" and e.get("to") == f"{ROOM}/carol"]
        assert joins, "carol's page sent no join presence"
        history = joins[0].find(f"{{{MUC}}}x/{{{MUC}}}history")
        assert history is not None and history.get("maxstanzas") == "0", carol.frames.text()
        queries = {
            q.get("queryid")
            for e in sent
            if e.tag == f"{CLIENT}iq" and e.get("to") == ROOM
            for q in e.findall(f"{{{MAM}}}query")
        }
        assert queries, "carol's page sent no MAM query to the room"
        from_archive: list[str] = []
        elsewhere: list[str] = []
        for element in received:
            results = element.findall(f"{{{MAM}}}result")
            if element.tag == f"{CLIENT}message" and element.get("from") == ROOM and results:
                assert all(r.get("queryid") in queries for r in results)
                from_archive.extend(bodies(element))
            else:
                elsewhere.extend(bodies(element))
        assert from_archive == [FROM_ALICE, FROM_BOB], carol.frames.text()
        assert not {FROM_ALICE, FROM_BOB} & set(elsewhere), carol.frames.text()
        unparsed = [f for f in carol.frames.received if parse(f) is None]
        assert not [f for f in unparsed if FROM_ALICE in f or FROM_BOB in f]

        for name, chat in pages.items():
            shot = await save_screenshot(chat.page, name)
            assert shot.stat().st_size > 10_000
        for name, log in logs.items():
            assert log.errors == [], (name, log.errors)
        # the whole story, server start included, stays well inside the test's bound
        assert time.monotonic() - started < 60
    except BaseException:
        for name, chat in pages.items():
            try:
                await chat.page.screenshot(path=str(artifacts / f"failure-{name}.png"))
            except Exception as exc:  # the page may be gone; the logs are still kept
                (artifacts / f"failure-{name}.txt").write_text(repr(exc))
        raise
    finally:
        for name, chat in pages.items():
            (artifacts / f"{name}-frames.txt").write_text(chat.frames.text())
            (artifacts / f"{name}-browser.log").write_text(logs[name].text())
        for context in contexts:
            await context.close()
        code = server.stop()
        shutil.copy(server.log, artifacts / "server.log")
    assert code == 0
    assert "Traceback" not in server.log_text(), server.log_text()


def _self_presence_codes(chat: ChatPage) -> set[str]:
    """The status codes of the presences the room sent `chat` from its own nick."""
    codes: set[str] = set()
    for element in map(parse, chat.frames.received):
        if element is not None and element.get("from") == f"{ROOM}/{chat.name}":
            codes.update(s.get("code", "") for s in element.iter(f"{{{MUC_USER}}}status"))
    return codes


def _live_groupchat_bodies(frame: str) -> list[str]:
    """The bodies of a groupchat message from the room (not a MAM result), else []."""
    element = parse(frame)
    if (
        element is None
        or element.tag != f"{CLIENT}message"
        or element.get("type") != "groupchat"
        or not (element.get("from") or "").startswith(ROOM + "/")
        or element.find(f"{{{MAM}}}result") is not None
    ):
        return []
    return list(bodies(element))


pytestmark = pytest.mark.timeout(60)
