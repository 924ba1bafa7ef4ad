"""Room archives (XEP-0313 on rooms) through the MAM module: groupchat messages are
archived under the stanza-id the occupants saw, queries sent to the room are
answered from the room, members-only archives are for members, a moderated
message leaves a tombstone, and a destroyed room's archive goes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import cast

from chatgate.modules.muc.service import MucService
from chatgate.xml.framed import parse_fragment
from tests.unit.modules.wire import Server

from .support import MUC, ROOM, Client, configure, error, instant, messages, result, running

MAM = "{urn:xmpp:mam:2}"
FWD = "{urn:xmpp:forward:0}"
QUERY = f"<iq type='set' id='q' to='{ROOM}'><query xmlns='urn:xmpp:mam:2' queryid='f'/></iq>"


def archived(els: list[ET.Element]) -> list[ET.Element]:
    """The archived messages in the query's result messages, in order."""
    found = []
    for msg in messages(els):
        res = msg.find(MAM + "result")
        if res is not None:
            assert msg.get("from") == ROOM and res.get("queryid") == "f"
            inner = res.find(f"{FWD}forwarded/{{jabber:client}}message")
            assert inner is not None
            found.append(inner)
    return found


async def test_a_late_joiner_reads_the_room_archive(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        sent = []
        for i in range(3):
            echo = await alice.send(
                f"<message to='{ROOM}' type='groupchat'><body>m{i}</body></message>"
            )
            sid = messages(echo)[0].find("{urn:xmpp:sid:0}stanza-id")
            assert sid is not None
            sent.append(sid.get("id"))
        # not joined, but the room is open: the archive answers
        got = await bob.send(QUERY)
        assert result(got, "q").get("from") == ROOM
        found = archived(got)
        assert [m.findtext("{jabber:client}body") for m in found] == ["m0", "m1", "m2"]
        assert [m.get("from") for m in found] == [f"{ROOM}/Alice"] * 3
        results = [
            m.find(MAM + "result").get("id")
            for m in messages(got)
            if m.find(MAM + "result") is not None
        ]  # type: ignore[union-attr]
        assert results == sent


async def test_members_only_archives_are_for_members(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await alice.send(configure({"muc#roomconfig_membersonly": "1"}))
        await alice.send(f"<message to='{ROOM}' type='groupchat'><body>secret</body></message>")
        assert error(await bob.send(QUERY)) == "forbidden"
        assert [m.findtext("{jabber:client}body") for m in archived(await alice.send(QUERY))] == [
            "secret"
        ]


async def test_a_room_without_logging_has_no_archive(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice")
        await alice.send(configure({"muc#roomconfig_enablelogging": "0"}))
        await alice.send(
            f"<message to='{ROOM}' type='groupchat'><body>off the record</body></message>"
        )
        assert error(await alice.send(QUERY)) == "service-unavailable"


async def test_a_moderated_message_leaves_a_tombstone_in_the_archive(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        echo = await bob.send(f"<message to='{ROOM}' type='groupchat'><body>spam</body></message>")
        stanza_id = messages(echo)[0].find("{urn:xmpp:sid:0}stanza-id").get("id")  # type: ignore[union-attr]
        moderate = (
            f"<iq type='set' id='mod' to='{ROOM}'><moderate xmlns='urn:xmpp:message-moderate:1' "
            f"id='{stanza_id}'><retract xmlns='urn:xmpp:message-retract:1'/>"
            "<reason>spam</reason></moderate></iq>"
        )
        result(await alice.send(moderate), "mod")
        (tomb,) = archived(await alice.send(QUERY))
        assert tomb.findtext("{jabber:client}body") is None
        retracted = tomb.find("{urn:xmpp:message-retract:1}retracted")
        assert retracted is not None
        moderated = retracted.find("{urn:xmpp:message-moderate:1}moderated")
        assert moderated is not None and moderated.get("by") == f"{ROOM}/Alice"
        assert retracted.findtext("{urn:xmpp:message-retract:1}reason") == "spam"
        # XEP-0425 0.2's tombstone too, for clients reading the legacy form
        legacy = tomb.find("{urn:xmpp:message-moderate:0}moderated")
        assert legacy is not None and legacy.get("by") == f"{ROOM}/Alice"
        stamp = legacy.find("{urn:xmpp:message-retract:0}retracted")
        assert stamp is not None and stamp.get("stamp") == retracted.get("stamp")
        assert legacy.findtext("{urn:xmpp:message-moderate:0}reason") == "spam"


async def test_a_destroyed_rooms_archive_is_gone(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice")
        await alice.send(f"<message to='{ROOM}' type='groupchat'><body>old</body></message>")
        await alice.send(f"<presence to='{ROOM}/Alice' type='unavailable'/>")
        await alice.wire.settle()
        # a new room of the same name starts with an empty archive
        await alice.join("Alice")
        assert archived(await alice.send(QUERY)) == []


def muc_service(srv: Server) -> MucService:
    assert srv.ctx is not None
    record = srv.ctx.modules.get("muc")
    assert record is not None
    service = record.module.service  # type: ignore[attr-defined]
    assert service is not None
    return cast(MucService, service)


async def test_a_new_room_does_not_serve_what_an_earlier_one_left(tmp_path: Path) -> None:
    """An earlier temporary room of this name left messages in the archive without
    ending (its owner node killed, or the server): the room made anew is not
    theirs, and whoever makes it must not read them."""
    async with running(tmp_path) as srv:
        archive = muc_service(srv).archive
        assert archive is not None
        left = parse_fragment(
            f"<message xmlns='jabber:client' from='{ROOM}/Bob' type='groupchat'>"
            "<body>the plan</body></message>".encode()
        )
        archive.append(ROOM, left, archive.new_id(), "Bob", "bob@localhost")
        mallory = await Client.login(srv, "alice")
        await mallory.join("Alice")
        await mallory.wire.settle()
        await mallory.send(f"<message to='{ROOM}' type='groupchat'><body>mine</body></message>")
        found = archived(await mallory.send(QUERY))
        assert [m.findtext("{jabber:client}body") for m in found] == ["mine"]


async def test_a_room_made_again_at_once_keeps_its_own_messages(tmp_path: Path) -> None:
    """The earlier room's archive goes, as it empties; the new room's first
    messages, sent before that deletion ran, stay."""
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice")
        await alice.send(f"<message to='{ROOM}' type='groupchat'><body>old</body></message>")
        # leave, join again and speak in one read: before the deletions ran
        await alice.wire.send(
            f"<presence to='{ROOM}/Alice' type='unavailable'/>"
            f"<presence to='{ROOM}/Alice'><x xmlns='{MUC}'/></presence>{instant()}"
            f"<message to='{ROOM}' type='groupchat'><body>new</body></message>"
        )
        await alice.wire.settle()
        found = archived(await alice.send(QUERY))
        assert [m.findtext("{jabber:client}body") for m in found] == ["new"]
