"""Bookmarks through the real connection: XEP-0048 in private XML storage, XEP-0402
on PEP and XEP-0048 on PEP kept in step (XEP-0411), whichever a client writes; the
XEP-0402 node is whitelist (a contact cannot read it)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from chatgate.modules.bookmarks import legacy_conferences, legacy_storage
from chatgate.xml.framed import parse_fragment

from .pep.client import EVENT, OWNER, PUBSUB, error_of, login, pep_server, publish
from .wire import Server

NATIVE = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
PRIVATE = "jabber:iq:private"

LEGACY_SET = (
    f"<query xmlns='{PRIVATE}'><storage xmlns='{LEGACY}'>"
    "<conference jid='council@conference.localhost' name='Council' autojoin='true'><nick>Puck</nick></conference>"
    "<conference jid='orchard@conference.localhost'/>"
    "<url name='Docs' url='https://example.org/'/>"
    "</storage></query>"
)


def native_items(reply: ET.Element) -> dict[str, ET.Element]:
    return {
        item.get("id", ""): item.find(f"{{{NATIVE}}}conference")  # type: ignore[misc]
        for item in reply.iter(f"{{{PUBSUB}}}item")
    }


def legacy_rooms(reply: ET.Element) -> dict[str, ET.Element]:
    return {c.get("jid", ""): c for c in reply.iter(f"{{{LEGACY}}}conference")}


ITEMS = f"<pubsub xmlns='{PUBSUB}'><items node='{NATIVE}'/></pubsub>"
GET_LEGACY = f"<query xmlns='{PRIVATE}'><storage xmlns='{LEGACY}'/></query>"


async def test_private_xml_bookmarks_appear_in_pep_and_back(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        other = await login(srv, "alice", "other")
        await alice.available([])
        await other.available([NATIVE + "+notify"])
        other.take()
        assert (await alice.iq("set", LEGACY_SET)).get("type") == "result"
        native = native_items(await alice.iq("get", ITEMS, iq_id="i2"))
        assert set(native) == {"council@conference.localhost", "orchard@conference.localhost"}
        council = native["council@conference.localhost"]
        assert council.get("name") == "Council" and council.get("autojoin") == "true"
        assert council.findtext(f"{{{NATIVE}}}nick") == "Puck"
        # the resource that asked for XEP-0402 events heard them
        heard = {i.get("id") for m in other.events() for i in m.iter(f"{{{EVENT}}}item")}
        assert heard == set(native)
        # the node is the owner's only (XEP-0402 §5: whitelist)
        config = await alice.iq(
            "get", f"<pubsub xmlns='{OWNER}'><configure node='{NATIVE}'/></pubsub>", iq_id="i3"
        )
        access = [
            f.findtext("{jabber:x:data}value")
            for f in config.iter("{jabber:x:data}field")
            if f.get("var") == "pubsub#access_model"
        ]
        assert access == ["whitelist"]
        bob = await login(srv, "bob")
        assert error_of(await bob.iq("get", ITEMS, to="alice@localhost")) == (
            "not-allowed",
            "closed-node",
        )

        # XEP-0402 client removes one and adds one: private XML follows, URL kept
        retract = (
            f"<pubsub xmlns='{PUBSUB}'><retract node='{NATIVE}' notify='true'>"
            "<item id='orchard@conference.localhost'/></retract></pubsub>"
        )
        assert (await other.iq("set", retract, iq_id="r1")).get("type") == "result"
        added = publish(
            NATIVE,
            f"<conference xmlns='{NATIVE}' name='Garden' autojoin='1'><nick>P</nick></conference>",
            "garden@conference.localhost",
        )
        assert (await other.iq("set", added, iq_id="p1")).get("type") == "result"
        stored = await alice.iq("get", GET_LEGACY, iq_id="g1")
        rooms = legacy_rooms(stored)
        assert set(rooms) == {"council@conference.localhost", "garden@conference.localhost"}
        assert rooms["garden@conference.localhost"].get("autojoin") == "true"
        assert rooms["garden@conference.localhost"].findtext(f"{{{LEGACY}}}nick") == "P"
        assert [u.get("url") for u in stored.iter(f"{{{LEGACY}}}url")] == ["https://example.org/"]


async def test_xep0048_over_pep_is_kept_in_step_too(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.available([])
        storage = (
            f"<storage xmlns='{LEGACY}'><conference jid='hall@conference.localhost' "
            "autojoin='true' name='Hall'/></storage>"
        )
        options = {"pubsub#persist_items": "true", "pubsub#access_model": "whitelist"}
        assert (await alice.iq("set", publish(LEGACY, storage, "current", options))).get(
            "type"
        ) == "result"
        assert set(native_items(await alice.iq("get", ITEMS, iq_id="i2"))) == {
            "hall@conference.localhost"
        }
        assert set(legacy_rooms(await alice.iq("get", GET_LEGACY, iq_id="g"))) == {
            "hall@conference.localhost"
        }
        # and a private XML write now reaches the XEP-0048 PEP node as well
        await alice.iq("set", LEGACY_SET, iq_id="s2")
        node = await alice.iq(
            "get", f"<pubsub xmlns='{PUBSUB}'><items node='{LEGACY}'/></pubsub>", iq_id="i3"
        )
        assert set(legacy_rooms(node)) == {
            "council@conference.localhost",
            "orchard@conference.localhost",
        }
        assert "hall@conference.localhost" not in native_items(
            await alice.iq("get", ITEMS, iq_id="i4")
        )


async def test_conversion_is_advertised_on_the_account(tmp_path: Path) -> None:
    async with pep_server(tmp_path) as srv:
        alice = await login(srv, "alice")
        info = await alice.iq(
            "get", "<query xmlns='http://jabber.org/protocol/disco#info'/>", to="alice@localhost"
        )
        features = {
            f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")
        }
        assert {"urn:xmpp:bookmarks-conversion:0", "urn:xmpp:bookmarks:1#compat"} <= features


async def test_disabled_bookmarks_leave_the_stores_apart(tmp_path: Path) -> None:
    srv2 = await Server.start(tmp_path, {"bookmarks": {"enabled": False}})
    try:
        await srv2.add_user("alice", "alice-pw")
        alice = await login(srv2, "alice")
        await alice.iq("set", LEGACY_SET)
        missing = await alice.iq("get", ITEMS, iq_id="i2")
        assert error_of(missing) == ("item-not-found", None)
    finally:
        await srv2.stop()


def test_conversion_round_trip() -> None:
    storage = parse_fragment(
        (
            f"<storage xmlns='{LEGACY}'><conference jid='a@b' name='A' autojoin='1'>"
            "<nick>n</nick><password>p</password></conference>"
            "<conference jid='not a jid@@'/><url url='u'/></storage>"
        ).encode(),
        "",
    )
    native = legacy_conferences(storage)
    assert list(native) == ["a@b"]
    assert native["a@b"].get("autojoin") == "true"
    back = legacy_storage(native, storage.find_all("url", LEGACY))
    (conference,) = back.find_all("conference", LEGACY)
    assert conference.attrs == {"jid": "a@b", "name": "A", "autojoin": "true"}
    assert conference.find("password", LEGACY).text == "p"  # type: ignore[union-attr]
    assert [u.get("url") for u in back.find_all("url", LEGACY)] == ["u"]
