"""Self-ping (XEP-0410), moderated retraction (XEP-0425), IQs between occupants, and
the attacks: join floods, huge and forged input, rooms that do not exist."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..wire import Server
from .support import (
    ROOM,
    SERVICE,
    Client,
    bodies,
    error,
    messages,
    presences,
    result,
    running,
)

PING = "<ping xmlns='urn:xmpp:ping'/>"
SID = "{urn:xmpp:sid:0}stanza-id"
FASTEN = "urn:xmpp:fasten:0"
MODERATE_0 = "urn:xmpp:message-moderate:0"
RETRACT_0 = "urn:xmpp:message-retract:0"


def legacy_moderate(iq_id: str, stanza_id: str | None, inner: str) -> str:
    """A XEP-0425 0.2 request: <apply-to/> (XEP-0422) around <moderate/>."""
    id_attr = f" id='{stanza_id}'" if stanza_id is not None else ""
    return (
        f"<iq type='set' id='{iq_id}' to='{ROOM}'><apply-to xmlns='{FASTEN}'{id_attr}>"
        f"<moderate xmlns='{MODERATE_0}'>{inner}</moderate></apply-to></iq>"
    )


def assert_legacy_announcement(msg: ET.Element, stanza_id: str, by: str, reason: str) -> None:
    """XEP-0425 0.2's announcement, as current Prosody sends it beside the 0.3 one."""
    apply_to = msg.find(f"{{{FASTEN}}}apply-to")
    assert apply_to is not None and apply_to.get("id") == stanza_id
    moderated = apply_to.find(f"{{{MODERATE_0}}}moderated")
    assert moderated is not None and moderated.get("by") == by
    assert moderated.find(f"{{{RETRACT_0}}}retract") is not None
    assert moderated.findtext(f"{{{MODERATE_0}}}reason") == reason


async def test_self_ping_is_answered_by_the_service(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        ping = f"<iq type='get' id='p' to='{ROOM}/Alice'>{PING}</iq>"
        got = await alice.send(ping)
        assert result(got, "p").get("from") == f"{ROOM}/Alice"
        # not joined: not-acceptable (XEP-0410 §3), whatever the nick
        assert error(await bob.send(ping)) == "not-acceptable"
        await alice.send(f"<presence to='{ROOM}/Alice' type='unavailable'/>")
        assert error(await alice.send(ping)) == "item-not-found"  # the room is gone


async def test_iqs_between_occupants_hide_real_jids(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        alice.received()
        await bob.send(
            f"<iq type='get' id='v' to='{ROOM}/Alice'><query xmlns='jabber:iq:version'/></iq>"
        )
        (asked,) = [e for e in alice.received() if e.tag.endswith("iq")]
        assert asked.get("from") == f"{ROOM}/Bob" and asked.get("id") == "v"
        await alice.send(f"<iq type='result' id='v' to='{ROOM}/Bob'/>")
        (answer,) = [e for e in bob.received() if e.tag.endswith("iq")]
        assert answer.get("from") == f"{ROOM}/Alice" and answer.get("type") == "result"


async def test_a_moderator_retracts_a_message_for_everyone(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        await bob.join("Bob")
        await bob.send(f"<message to='{ROOM}' type='groupchat'><body>spam</body></message>")
        (msg,) = messages(alice.received())
        stanza_id = msg.find(SID).get("id")  # type: ignore[union-attr]
        moderate = (
            f"<iq type='set' id='mod' to='{ROOM}'><moderate xmlns='urn:xmpp:message-moderate:1' "
            f"id='{stanza_id}'><retract xmlns='urn:xmpp:message-retract:1'/>"
            "<reason>spam</reason></moderate></iq>"
        )
        assert error(await bob.send(moderate)) == "forbidden"
        got = await alice.send(moderate)
        result(got, "mod")
        (retraction,) = messages(bob.received())
        retract = retraction.find("{urn:xmpp:message-retract:1}retract")
        assert retract is not None and retract.get("id") == stanza_id
        moderated = retract.find("{urn:xmpp:message-moderate:1}moderated")
        assert moderated is not None and moderated.get("by") == f"{ROOM}/Alice"
        assert retract.findtext("{urn:xmpp:message-retract:1}reason") == "spam"
        assert_legacy_announcement(retraction, stanza_id or "?", f"{ROOM}/Alice", "spam")
        # the history forgot it
        assert bodies(await carol.join("Carol")) == []
        unknown = moderate.replace("id='mod'", "id='m2'").replace(
            stanza_id or "?", "01NOSUCHID00000000000000AA"
        )
        assert error(await alice.send(unknown)) == "item-not-found"


async def test_the_legacy_apply_to_request_retracts_too(tmp_path: Path) -> None:
    """XEP-0425 0.2 (what older clients send): accepted, announced in both forms;
    a non-moderator is refused, a malformed request is a bad-request."""
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        await bob.join("Bob")
        await bob.send(f"<message to='{ROOM}' type='groupchat'><body>spam</body></message>")
        (msg,) = messages(alice.received())
        stanza_id = msg.find(SID).get("id") or "?"  # type: ignore[union-attr]
        retract = f"<retract xmlns='{RETRACT_0}'/><reason>bad words</reason>"
        assert error(await bob.send(legacy_moderate("b", stanza_id, retract))) == "forbidden"
        # malformed: no stanza-id, no retract, a retract of the 0.3 namespace
        assert error(await alice.send(legacy_moderate("m1", None, retract))) == "bad-request"
        assert error(await alice.send(legacy_moderate("m2", stanza_id, ""))) == "bad-request"
        wrong = "<retract xmlns='urn:xmpp:message-retract:1'/>"
        assert error(await alice.send(legacy_moderate("m3", stanza_id, wrong))) == "bad-request"
        # another kind of fastening is not served here
        other = (
            f"<iq type='set' id='o' to='{ROOM}'><apply-to xmlns='{FASTEN}' id='{stanza_id}'>"
            "<something xmlns='urn:example'/></apply-to></iq>"
        )
        assert error(await alice.send(other)) == "service-unavailable"
        assert messages(bob.received()) == []  # nothing announced so far
        result(await alice.send(legacy_moderate("mod", stanza_id, retract)), "mod")
        (announced,) = messages(bob.received())
        assert announced.get("from") == ROOM and announced.get("type") == "groupchat"
        assert_legacy_announcement(announced, stanza_id, f"{ROOM}/Alice", "bad words")
        current = announced.find("{urn:xmpp:message-retract:1}retract")
        assert current is not None and current.get("id") == stanza_id
        assert current.findtext("{urn:xmpp:message-retract:1}reason") == "bad words"
        assert bodies(await carol.join("Carol")) == []
        unknown = legacy_moderate("m4", "01NOSUCHID00000000000000AA", retract)
        assert error(await alice.send(unknown)) == "item-not-found"


async def test_a_retraction_without_reason_has_no_reason(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        await bob.send(f"<message to='{ROOM}' type='groupchat'><body>oops</body></message>")
        (msg,) = messages(alice.received())
        stanza_id = msg.find(SID).get("id") or "?"  # type: ignore[union-attr]
        no_id = (
            f"<iq type='set' id='n' to='{ROOM}'><moderate xmlns='urn:xmpp:message-moderate:1'>"
            "<retract xmlns='urn:xmpp:message-retract:1'/></moderate></iq>"
        )
        assert error(await alice.send(no_id)) == "bad-request"
        request = legacy_moderate("mod", stanza_id, f"<retract xmlns='{RETRACT_0}'/>")
        result(await alice.send(request), "mod")
        (announced,) = messages(bob.received())
        moderated = announced.find(f"{{{FASTEN}}}apply-to/{{{MODERATE_0}}}moderated")
        assert moderated is not None and moderated.find(f"{{{MODERATE_0}}}reason") is None
        current = announced.find("{urn:xmpp:message-retract:1}retract")
        assert current is not None and current.find("{urn:xmpp:message-retract:1}reason") is None


async def test_without_an_archive_the_legacy_request_works_from_the_history(
    tmp_path: Path,
) -> None:
    """The MAM module off: the message is found in the room's history only."""
    srv = await Server.start(tmp_path, {"mam": {"enabled": False}})
    try:
        for name in ("alice", "bob"):
            await srv.add_user(name, f"{name}-pw")
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        await bob.send(f"<message to='{ROOM}' type='groupchat'><body>spam</body></message>")
        (msg,) = messages(alice.received())
        stanza_id = msg.find(SID).get("id") or "?"  # type: ignore[union-attr]
        request = legacy_moderate("mod", stanza_id, f"<retract xmlns='{RETRACT_0}'/>")
        result(await alice.send(request), "mod")
        (announced,) = messages(bob.received())
        moderated = announced.find(f"{{{FASTEN}}}apply-to/{{{MODERATE_0}}}moderated")
        assert moderated is not None and moderated.get("by") == f"{ROOM}/Alice"
        # gone from the history: a second time there is nothing to retract
        assert error(await alice.send(request.replace("'mod'", "'m2'"))) == "item-not-found"
    finally:
        await srv.stop()


async def test_the_room_advertises_both_moderation_forms(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice")
        got = await alice.send(
            f"<iq type='get' id='ri' to='{ROOM}'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
        features = {f.get("var") for f in result(got, "ri")[0] if f.tag.endswith("feature")}
        assert {"urn:xmpp:message-moderate:1", MODERATE_0} <= features


async def test_a_join_flood_is_bounded_per_session_and_per_service(tmp_path: Path) -> None:
    async with running(tmp_path, max_rooms_per_session=3, max_rooms=5, lock_new_rooms=False) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        for i in range(3):
            await alice.join("A", room=f"r{i}@{SERVICE}")
        assert error(await alice.join("A", room=f"r9@{SERVICE}")) == "resource-constraint"
        await bob.join("B", room=f"b0@{SERVICE}")
        await bob.join("B", room=f"b1@{SERVICE}")
        assert error(await bob.join("B", room=f"b2@{SERVICE}")) == "resource-constraint"
        # entering an existing room is still fine
        assert presences(await bob.join("B", room=f"r0@{SERVICE}"))


async def test_a_full_room_at_the_service_limit(tmp_path: Path) -> None:
    async with running(tmp_path, max_occupants=2, lock_new_rooms=False) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("A")
        await bob.join("B")
        assert error(await carol.join("C")) == "service-unavailable"


async def test_huge_and_malformed_input_gets_precise_errors(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        assert error(await bob.join("n" * 1000)) == "jid-malformed"
        # a resource over 1023 bytes is no JID at all: the router refuses it
        assert error(await bob.join("n" * 1100)) == "jid-malformed"
        assert error(await bob.send(f"<message to='{SERVICE}'><body>hi</body></message>")) == (
            "service-unavailable"
        )
        unknown = f"<iq type='get' id='u' to='{SERVICE}'><query xmlns='urn:example'/></iq>"
        assert error(await bob.send(unknown)) == "service-unavailable"
        assert error(await bob.send(unknown.replace(SERVICE, ROOM))) == "service-unavailable"
        assert error(await bob.send(f"<iq type='get' id='n' to='{ROOM}'/>")) == "bad-request"
        # a subject too long
        long_subject = (
            f"<message to='{ROOM}' type='groupchat'><subject>{'s' * 2000}</subject></message>"
        )
        assert error(await alice.send(long_subject)) == "not-acceptable"
        # an invitation to nowhere, and one without 'to'
        bad = (
            f"<message to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'>"
            "<invite to='x@remote.example'/></x></message>"
        )
        assert error(await alice.send(bad)) == "remote-server-not-found"
        assert error(await alice.send(bad.replace(" to='x@remote.example'", ""))) == "jid-malformed"
        # the room is undisturbed
        await bob.join("Bob")
        await alice.send(f"<message to='{ROOM}' type='groupchat'><body>still here</body></message>")
        assert bodies(bob.received()) == ["still here"]


async def test_the_from_is_always_the_senders_own(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        alice.received()
        # bob claims to be alice: the server stamps 'from', so it is bob who speaks
        await bob.send(
            f"<message from='alice@localhost/r' to='{ROOM}' type='groupchat'><body>I am alice</body></message>"
        )
        (msg,) = messages(alice.received())
        assert msg.get("from") == f"{ROOM}/Bob"
        # and bob cannot make alice leave: the unavailable presence is bob's own
        await bob.send(f"<presence from='alice@localhost/r' to='{ROOM}/Alice' type='unavailable'/>")
        assert [p.get("from") for p in presences(alice.received())] == [f"{ROOM}/Bob"]
        room = srv.module("muc").registry.get(ROOM)
        assert [o.nick for o in room.occupants.values()] == ["Alice"]


async def test_a_disabled_service_does_not_exist(tmp_path: Path) -> None:
    async with running(tmp_path, enabled=False) as srv:
        alice = await Client.login(srv, "alice")
        got = await alice.join("Alice")
        assert error(got) in ("remote-server-not-found", "service-unavailable")
        assert [s.domain for s in srv.ctx.services if s.domain.startswith("conference.")] == []


async def test_a_huge_presence_is_refused_and_not_kept(tmp_path: Path) -> None:
    async with running(tmp_path, max_presence_bytes=2048) as srv:
        alice = await Client.login(srv, "alice")
        big = f"<status>{'s' * 3000}</status>"
        join = f"<presence to='{ROOM}/Alice'><x xmlns='http://jabber.org/protocol/muc'/>{big}</presence>"
        assert error(await alice.send(join)) == "policy-violation"
        assert srv.module("muc").registry.get(ROOM) is None
        await alice.join("Alice")
        # a status update that is too big is refused; the occupant keeps its old presence
        assert (
            error(await alice.send(f"<presence to='{ROOM}/Alice'>{big}</presence>"))
            == "policy-violation"
        )
        room = srv.module("muc").registry.get(ROOM)
        assert room.occupants["alice"].presence.find("status", "jabber:client") is None
