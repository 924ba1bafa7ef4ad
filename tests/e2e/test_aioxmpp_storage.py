"""Personal storage with aioxmpp 0.13 as the client: XEP-0049 private XML through
`PrivateXMLService` (stored per namespace and per account, replaced on set, kept
across sessions), and XEP-0048 bookmarks through `BookmarkClient` (set, read
back, updated, removed, seen by the account's next session), which the server
keeps in step with XEP-0402's PEP node (XEP-0411)."""

from __future__ import annotations

from typing import Any

import aioxmpp
import aioxmpp.bookmarks
import aioxmpp.private_xml
import aioxmpp.private_xml.xso as private_xso
import aioxmpp.pubsub
import aioxmpp.pubsub.xso as pubsub_xso
import aioxmpp.xso
import pytest
from aioxmpp.utils import etree

from tests.e2e.aioxmpp_support import Emissions, add_users, aioxmpp_client, aioxmpp_client_with
from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

PASSWORD = "aioxmpp-storage-pass"
SETTINGS = "urn:example:chatgate-tests:settings"
BOOKMARKS2 = "urn:xmpp:bookmarks:1"


@private_xso.Query.as_payload_class
class Settings(aioxmpp.xso.XSO):
    """An application's private settings, the way a client defines them."""

    TAG = (SETTINGS, "settings")
    theme = aioxmpp.xso.Attr("theme", default=None)
    sound = aioxmpp.xso.ChildText((SETTINGS, "sound"), default=None)

    def __init__(self, theme: str | None = None, sound: str | None = None) -> None:
        super().__init__()
        self.theme = theme
        self.sound = sound


@pubsub_xso.as_payload_class
class Conference2(aioxmpp.xso.XSO):
    """A XEP-0402 bookmark (an item of the `urn:xmpp:bookmarks:1` node, whose id is
    the room's JID); aioxmpp 0.13 itself only knows XEP-0048's."""

    TAG = (BOOKMARKS2, "conference")
    name = aioxmpp.xso.Attr("name", default=None)
    autojoin = aioxmpp.xso.Attr("autojoin", type_=aioxmpp.xso.Bool(), default=False)
    nick = aioxmpp.xso.ChildText((BOOKMARKS2, "nick"), default=None)

    def __init__(self, name: str | None = None, autojoin: bool = False, nick: str | None = None):
        super().__init__()
        self.name, self.autojoin, self.nick = name, autojoin, nick


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    add_users(server, ("sx-alice", "sx-bob", "sx-carol"), PASSWORD)


def me(user: str, resource: str = "s") -> str:
    return f"{user}@localhost/{resource}"


async def test_private_xml_is_per_namespace_per_account_and_kept(server: RunningServer) -> None:
    async with aioxmpp_client(server, me("sx-alice", "one"), PASSWORD) as alice:
        storage = alice.summon(aioxmpp.private_xml.PrivateXMLService)
        # nothing stored yet: the empty element asked for (XEP-0049 §2.2)
        empty = await storage.get_private_xml(Settings())
        assert (empty.registered_payload.theme, empty.registered_payload.sound) == (None, None)

        await storage.set_private_xml(Settings("dark", "chime"))
        got = await storage.get_private_xml(Settings())
        assert (got.registered_payload.theme, got.registered_payload.sound) == ("dark", "chime")
        # a set replaces the whole fragment
        await storage.set_private_xml(Settings("light"))
        got = await storage.get_private_xml(Settings())
        assert (got.registered_payload.theme, got.registered_payload.sound) == ("light", None)

    # another session of the account reads it; another account does not
    async with (
        aioxmpp_client(server, me("sx-alice", "two"), PASSWORD) as alice,
        aioxmpp_client(server, me("sx-bob"), PASSWORD) as bob,
    ):
        got = await alice.summon(aioxmpp.private_xml.PrivateXMLService).get_private_xml(Settings())
        assert got.registered_payload.theme == "light"
        theirs = await bob.summon(aioxmpp.private_xml.PrivateXMLService).get_private_xml(Settings())
        assert theirs.registered_payload.theme is None
        # and nobody may read someone else's (XEP-0049 §3: forbidden, the preferable one)
        peek = aioxmpp.IQ(
            type_=aioxmpp.IQType.GET,
            to=alice.local_jid.bare(),
            payload=private_xso.Query(Settings()),
        )
        with pytest.raises(aioxmpp.errors.XMPPAuthError) as refused:
            await bob.send(peek)
        assert refused.value.condition == aioxmpp.errors.ErrorCondition.FORBIDDEN


async def test_private_xml_keeps_any_xml_as_it_was(server: RunningServer) -> None:
    """A fragment aioxmpp has no class for (its `unregistered_payload`, plain
    ElementTree) comes back element for element, attribute for attribute."""
    stored = etree.fromstring(
        '<prefs xmlns="urn:example:chatgate-tests:raw" v="2">'
        '<item key="a">one &amp; two</item><item key="b"/>'
        '<other xmlns="urn:example:chatgate-tests:nested">x</other>'
        "</prefs>"
    )
    async with aioxmpp_client(server, me("sx-carol", "raw"), PASSWORD) as carol:
        query = private_xso.Query(None)
        query.unregistered_payload.append(stored)
        await carol.send(aioxmpp.IQ(type_=aioxmpp.IQType.SET, payload=query))

        ask = private_xso.Query(None)
        ask.unregistered_payload.append(etree.Element("{urn:example:chatgate-tests:raw}prefs"))
        answer = await carol.send(aioxmpp.IQ(type_=aioxmpp.IQType.GET, payload=ask))
        (got,) = answer.unregistered_payload
        assert shape(got) == shape(stored)
        assert shape(got)[3][0] == (
            "{urn:example:chatgate-tests:raw}item",
            {"key": "a"},
            "one & two",
            [],
        )


def shape(element: Any) -> tuple[str, dict[str, str], str, list[Any]]:
    """An element as (name, attributes, text, children), prefixes aside."""
    return (
        element.tag,
        dict(element.attrib),
        element.text or "",
        [shape(child) for child in element],
    )


def coven(**kwargs: object) -> aioxmpp.bookmarks.Conference:
    return aioxmpp.bookmarks.Conference(
        "Coven", aioxmpp.JID.fromstr("coven@conference.localhost"), **kwargs
    )


async def test_bookmarks_set_read_back_and_seen_by_the_next_session(
    server: RunningServer,
) -> None:
    lobby = aioxmpp.bookmarks.Conference(
        "Lobby", aioxmpp.JID.fromstr("lobby@conference.localhost"), autojoin=True, nick="Bob"
    )
    site = aioxmpp.bookmarks.URL("Home", "https://example.org/")
    async with aioxmpp_client_with(
        server, me("sx-bob", "one"), PASSWORD, [aioxmpp.BookmarkClient]
    ) as bob:
        client = bob.summon(aioxmpp.BookmarkClient)
        assert await client.get_bookmarks() == []
        added = Emissions(client.on_bookmark_added)
        await client.add_bookmark(coven())
        (bookmark,), _ = await added.next()
        assert bookmark == coven()
        await client.set_bookmarks([coven(), lobby, site])
        assert await client.get_bookmarks() == [coven(), lobby, site]

        changed = Emissions(client.on_bookmark_changed)
        await client.update_bookmark(coven(), coven(autojoin=True, nick="witch"))
        (old, new), _ = await changed.next()
        assert (old, new) == (coven(), coven(autojoin=True, nick="witch"))

        removed = Emissions(client.on_bookmark_removed)
        await client.discard_bookmark(lobby)
        (bookmark,), _ = await removed.next()
        assert bookmark == lobby

    async with aioxmpp_client_with(
        server, me("sx-bob", "two"), PASSWORD, [aioxmpp.BookmarkClient]
    ) as bob:
        stored = await bob.summon(aioxmpp.BookmarkClient).get_bookmarks()
        assert stored == [coven(autojoin=True, nick="witch"), site]
        # XEP-0411: the server keeps XEP-0402's node in step (conferences only)
        items = await bob.summon(aioxmpp.PubSubClient).get_items(bob.local_jid.bare(), BOOKMARKS2)
        assert [
            (
                str(i.id_),
                i.registered_payload.name,
                i.registered_payload.autojoin,
                i.registered_payload.nick,
            )
            for i in items.payload.items
        ] == [("coven@conference.localhost", "Coven", True, "witch")]


async def test_a_xep_0402_bookmark_reaches_the_xep_0048_client(server: RunningServer) -> None:
    """A modern client (Conversations, Dino) writes the PEP node; an older one
    reading private XML through aioxmpp's BookmarkClient sees the same rooms."""
    async with (
        aioxmpp_client(server, me("sx-carol", "modern"), PASSWORD) as modern,
        aioxmpp_client_with(
            server, me("sx-carol", "old"), PASSWORD, [aioxmpp.BookmarkClient]
        ) as old,
    ):
        pubsub = modern.summon(aioxmpp.PubSubClient)
        await pubsub.publish(
            None,
            BOOKMARKS2,
            Conference2("Team", autojoin=True, nick="Carol"),
            id_="team@conference.localhost",
        )
        team = aioxmpp.bookmarks.Conference(
            "Team", aioxmpp.JID.fromstr("team@conference.localhost"), autojoin=True, nick="Carol"
        )
        assert await old.summon(aioxmpp.BookmarkClient).get_bookmarks() == [team]

        await pubsub.retract(None, BOOKMARKS2, "team@conference.localhost")
        assert await old.summon(aioxmpp.BookmarkClient).get_bookmarks() == []
