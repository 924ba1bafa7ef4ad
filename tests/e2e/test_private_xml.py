"""XEP-0049 private XML storage with slixmpp against the real `chatgate serve`:
what a client stores comes back to another of its sessions, another account
cannot read or write it, and an oversized fragment is refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0048.stanza import Bookmarks
from slixmpp.xmlstream import ET

from .conftest import Client, RunningServer
from .test_pep import connect_with

pytestmark = pytest.mark.e2e

PRIVATE_PLUGINS = ("xep_0049", "xep_0048", "xep_0060", "xep_0163")


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    for name in ("alice", "mallory"):
        server.add_user(name, f"{name}-password")


@contextlib.asynccontextmanager
async def private_client(server: RunningServer, jid: str) -> AsyncIterator[Client]:
    client = await connect_with(server, jid, PRIVATE_PLUGINS)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)


async def test_stored_bookmarks_come_back_to_another_session(server: RunningServer) -> None:
    async with private_client(server, "alice@localhost/one") as one:
        bookmarks = Bookmarks()
        bookmarks.add_conference("room@conference.localhost", "Alice", name="Room", autojoin=True)
        bookmarks.add_url("https://example.org/", name="Example")
        await one.plugin["xep_0048"].set_bookmarks(bookmarks, method="xep_0049", timeout=10)
    async with private_client(server, "alice@localhost/two") as two:
        got = await two.plugin["xep_0048"].get_bookmarks(method="xep_0049", timeout=10)
        conferences = got["private"]["bookmarks"]["conferences"]
        assert [(c["jid"], c["nick"], c["name"], c["autojoin"]) for c in conferences] == [
            ("room@conference.localhost", "Alice", "Room", True)
        ]
        assert [u["url"] for u in got["private"]["bookmarks"]["urls"]] == ["https://example.org/"]


async def test_another_account_cannot_reach_it_and_large_fragments_are_refused(
    server: RunningServer,
) -> None:
    async with private_client(server, "mallory@localhost/x") as mallory:
        iq = mallory.make_iq_get(ito="alice@localhost")
        iq["private"].enable("bookmarks")
        with pytest.raises(IqError) as refused:
            await iq.send(timeout=10)
        assert refused.value.condition == "forbidden"

        big = ET.Element("{urn:example:big}blob")
        big.text = "x" * 70_000
        with pytest.raises(IqError) as too_big:
            await mallory.plugin["xep_0049"].store(big, timeout=10)
        assert too_big.value.condition == "not-acceptable"
