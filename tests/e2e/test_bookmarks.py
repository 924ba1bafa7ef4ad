"""Bookmarks conversion (XEP-0411) with slixmpp against the real `chatgate serve`:
bookmarks a XEP-0048 client stores in private XML appear to a XEP-0402 client on
PEP, and what the XEP-0402 client publishes appears in private XML."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp.plugins.xep_0048.stanza import Bookmarks
from slixmpp.plugins.xep_0402.stanza import Conference

from .conftest import RunningServer
from .test_pep import connect_with

pytestmark = pytest.mark.e2e

NATIVE = "urn:xmpp:bookmarks:1"
PLUGINS = ("xep_0049", "xep_0048", "xep_0060", "xep_0163", "xep_0402", "xep_0004")


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    server.add_user("alice", "alice-password")


async def test_conversion_both_ways(server: RunningServer) -> None:
    old = await connect_with(server, "alice@localhost/old", PLUGINS)
    new = await connect_with(server, "alice@localhost/new", PLUGINS)
    try:
        info = await new.plugin["xep_0030"].get_info("alice@localhost", timeout=10)
        assert "urn:xmpp:bookmarks-conversion:0" in info["disco_info"]["features"]

        legacy = Bookmarks()
        legacy.add_conference("council@conference.localhost", "Puck", name="Council", autojoin=True)
        await old.plugin["xep_0048"].set_bookmarks(legacy, method="xep_0049", timeout=10)
        items = await new.plugin["xep_0060"].get_items("alice@localhost", NATIVE, timeout=10)
        found = {i["id"]: i["conference"] for i in items["pubsub"]["items"]}
        assert set(found) == {"council@conference.localhost"}
        assert found["council@conference.localhost"]["nick"] == "Puck"
        assert found["council@conference.localhost"]["autojoin"] is True

        conference = Conference()
        conference["name"] = "Garden"
        conference["autojoin"] = True
        conference["nick"] = "P"
        form = new.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(
            var="FORM_TYPE",
            ftype="hidden",
            value="http://jabber.org/protocol/pubsub#publish-options",
        )
        form.add_field(var="pubsub#persist_items", value="true")
        form.add_field(var="pubsub#access_model", value="whitelist")
        await new.plugin["xep_0060"].publish(
            None,
            NATIVE,
            id="garden@conference.localhost",
            payload=conference.xml,
            options=form,
            timeout=10,
        )
        got = await old.plugin["xep_0048"].get_bookmarks(method="xep_0049", timeout=10)
        rooms = {c["jid"]: c for c in got["private"]["bookmarks"]["conferences"]}
        assert set(rooms) == {"council@conference.localhost", "garden@conference.localhost"}
        assert rooms["garden@conference.localhost"]["nick"] == "P"
    finally:
        for client in (old, new):
            await asyncio.wait_for(client.disconnect(), 5)
