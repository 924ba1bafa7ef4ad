"""XEP-0045 core through the real connection and modules: creating and entering
rooms, presence and status codes, groupchat with stanza-id and occupant-id,
history, private messages, nick changes, leaving, subjects, disco, and the
errors of §7.2."""

from __future__ import annotations

from pathlib import Path

from .support import (
    ROOM,
    SERVICE,
    C,
    Client,
    bodies,
    codes,
    error,
    instant,
    item,
    messages,
    presences,
    result,
    running,
)

SID = "{urn:xmpp:sid:0}stanza-id"
OID = "{urn:xmpp:occupant-id:0}occupant-id"


async def test_first_joiner_creates_a_locked_room_and_owns_it(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        bob = await Client.login(srv, "bob")
        got = await alice.join("Alice", configure=False)
        (own,) = presences(got, f"{ROOM}/Alice")
        assert codes(own) == {"110", "201", "170"}
        assert item(own)["affiliation"] == "owner" and item(own)["role"] == "moderator"
        # the subject comes last, empty
        assert got[-1].tag == C + "message" and got[-1].findtext(C + "subject") == ""
        # §10.1.1: locked until configured; it exists for its owner only
        assert error(await bob.join("Bob")) == "item-not-found"
        disco = f"<iq type='get' id='di' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        assert error(await bob.send(disco)) == "item-not-found"
        result(await alice.send(disco), "di")
        ping = f"<iq type='get' id='sp' to='{ROOM}/Alice'><ping xmlns='urn:xmpp:ping'/></iq>"
        result(await alice.send(ping), "sp")
        result(await alice.send(instant()), "instant")
        got = await bob.join("Bob")
        assert [p.get("from") for p in presences(got)] == [f"{ROOM}/Alice", f"{ROOM}/Bob"]
        assert codes(presences(got)[-1]) == {"110", "170"}


async def test_rooms_open_at_once_when_locking_is_off(tmp_path: Path) -> None:
    async with running(tmp_path, lock_new_rooms=False) as srv:
        alice = await Client.login(srv, "alice")
        bob = await Client.login(srv, "bob")
        await alice.join("Alice", configure=False)
        assert codes(presences(await bob.join("Bob"))[-1]) == {"110", "170"}


async def test_semi_anonymous_room_shows_real_jids_to_moderators_only(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        got = await bob.join("Bob")
        # bob (participant) sees no JID of alice; alice (moderator) sees bob's
        assert "jid" not in item(presences(got, f"{ROOM}/Alice")[0])
        (seen,) = presences(alice.received(), f"{ROOM}/Bob")
        assert item(seen)["jid"] == bob.full and item(seen)["role"] == "participant"
        await carol.join("Carol")
        (to_bob,) = presences(bob.received(), f"{ROOM}/Carol")
        assert "jid" not in item(to_bob)
        assert to_bob.find(OID) is not None


async def test_groupchat_is_broadcast_with_the_rooms_ids_and_forgeries_removed(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        alice.received()
        forged = (
            f"<stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='{ROOM}'/>"
            "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/>"
        )
        echo = await bob.send(
            f"<message to='{ROOM}' type='groupchat' id='m1'><body>hello</body>{forged}</message>"
        )
        got = alice.received()
        assert bodies(got) == ["hello"] and bodies(echo) == ["hello"]
        (msg,) = messages(got)
        assert msg.get("from") == f"{ROOM}/Bob" and msg.get("id") == "m1"
        (sid,) = msg.findall(SID)
        assert sid.get("by") == ROOM and sid.get("id") != "forged"
        (oid,) = msg.findall(OID)
        assert oid.get("id") != "forged"
        # the occupant id is the one bob's presence carried, and the same in bob's echo
        assert messages(echo)[0].find(OID).get("id") == oid.get("id")  # type: ignore[union-attr]


async def test_non_occupants_cannot_speak_and_missing_rooms_say_so(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        msg = f"<message to='{ROOM}' type='groupchat' id='x'><body>hi</body></message>"
        assert error(await bob.send(msg)) == "not-acceptable"
        missing = msg.replace("room@", "nowhere@")
        assert error(await bob.send(missing)) == "item-not-found"
        assert error(await bob.send(msg.replace("groupchat", "chat"))) == "bad-request"
        assert messages(alice.received()) == []


async def test_history_is_sent_on_joining_within_the_limits_asked(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        for i in range(5):
            await alice.send(f"<message to='{ROOM}' type='groupchat'><body>m{i}</body></message>")
        got = await bob.join("Bob")
        assert bodies(got) == [f"m{i}" for i in range(5)]
        for msg in messages(got)[:-1]:
            delay = msg.find("{urn:xmpp:delay}delay")
            assert delay is not None and delay.get("from") == ROOM
        # history comes after the presences, the subject after the history
        kinds = [e.tag.split("}")[1] for e in got]
        assert kinds == ["presence", "presence"] + ["message"] * 6
        got = await carol.join("Carol", extra="<history maxstanzas='2'/>")
        assert bodies(got) == ["m3", "m4"]
        dave = await Client.login(srv, "dave")
        assert bodies(await dave.join("Dave", extra="<history maxchars='0'/>")) == []


async def test_history_is_bounded_in_count_and_bytes(tmp_path: Path) -> None:
    async with running(tmp_path, history_messages=3, history_bytes=1000) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        for i in range(5):
            await alice.send(f"<message to='{ROOM}' type='groupchat'><body>m{i}</body></message>")
        await alice.send(
            f"<message to='{ROOM}' type='groupchat'><body>{'x' * 600}</body></message>"
        )
        await alice.send(f"<message to='{ROOM}' type='groupchat'><body>last</body></message>")
        room = srv.module("muc").registry.get(ROOM)
        assert room.history.bytes <= 1000 and len(room.history.entries) <= 3
        assert bodies(await bob.join("Bob"))[-1] == "last"


async def test_private_messages_go_between_occupants_only(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        await bob.join("Bob")
        await bob.send(
            f"<message to='{ROOM}/Alice' type='chat' id='pm'><body>psst</body></message>"
        )
        (pm,) = messages(alice.received())
        assert pm.get("from") == f"{ROOM}/Bob" and pm.get("type") == "chat"
        assert pm.findtext(C + "body") == "psst"
        assert pm.find("{http://jabber.org/protocol/muc#user}x") is not None
        assert error(
            await bob.send(f"<message to='{ROOM}/Nobody' type='chat'><body>?</body></message>")
        ) == ("item-not-found")
        assert error(
            await carol.send(f"<message to='{ROOM}/Alice' type='chat'><body>?</body></message>")
        ) == ("not-acceptable")


async def test_nick_change_and_conflict(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        alice.received()
        # §7.2.9: a nick in use by someone else, case-insensitively too
        assert error(await bob.send(f"<presence to='{ROOM}/alice'/>")) == "conflict"
        carol = await Client.login(srv, "carol")
        assert error(await carol.join("ALICE")) == "conflict"
        # RFC 8266 maps compatibility forms: a fullwidth look-alike is the same nick
        assert error(await carol.join("\uff21lice")) == "conflict"
        got = await bob.send(f"<presence to='{ROOM}/Robert'/>")
        gone, back = presences(got)
        assert gone.get("type") == "unavailable" and codes(gone) == {"110", "303"}
        assert item(gone)["nick"] == "Robert"
        assert back.get("from") == f"{ROOM}/Robert" and codes(back) == {"110"}
        gone, back = presences(alice.received())
        assert codes(gone) == {"303"} and back.get("from") == f"{ROOM}/Robert"
        await alice.send(f"<message to='{ROOM}/Robert' type='chat'><body>hi</body></message>")
        assert bodies(bob.received()) == ["hi"]


async def test_leaving_tells_everyone_and_a_temporary_room_goes_with_its_last_occupant(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        alice.received()
        (own,) = presences(await bob.send(f"<presence to='{ROOM}/Bob' type='unavailable'/>"))
        assert own.get("type") == "unavailable" and codes(own) == {"110"}
        (seen,) = presences(alice.received())
        assert seen.get("type") == "unavailable" and item(seen)["role"] == "none"
        await alice.send(f"<presence to='{ROOM}/Alice' type='unavailable'/>")
        assert srv.module("muc").registry.get(ROOM) is None
        disco = f"<iq type='get' id='d' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        assert error(await bob.send(disco)) == "item-not-found"


async def test_a_closed_session_leaves_every_room(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        other = ROOM.replace("room@", "other@")
        await alice.join("Alice")
        await alice.join("Alice", room=other)
        await bob.join("Bob")
        await bob.join("Bob", room=other)
        alice.received()
        await bob.close()
        await alice.wire.settle()
        gone = presences(alice.received())
        assert sorted(p.get("from") for p in gone) == [f"{other}/Bob", f"{ROOM}/Bob"]
        assert all(p.get("type") == "unavailable" for p in gone)
        assert srv.module("muc").registry.rooms_of(bob.full) == []


async def test_broadcast_unavailable_leaves_every_room_and_the_session_stays(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        alice.received()
        await bob.send("<presence type='unavailable'/>")
        await alice.wire.settle()
        gone = presences(alice.received())
        assert [(p.get("from"), p.get("type")) for p in gone] == [(f"{ROOM}/Bob", "unavailable")]
        assert srv.module("muc").registry.rooms_of(bob.full) == []
        # Still connected: it may come back.
        await bob.join("Bob")
        assert srv.module("muc").registry.rooms_of(bob.full) != []


async def test_subject_changes_need_permission_and_joiners_get_it(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        await bob.join("Bob")
        subject = f"<message to='{ROOM}' type='groupchat'><subject>Topic</subject></message>"
        assert error(await bob.send(subject)) == "forbidden"
        await alice.send(subject)
        (msg,) = messages(bob.received())
        assert msg.findtext(C + "subject") == "Topic" and msg.get("from") == f"{ROOM}/Alice"
        got = await carol.join("Carol")
        assert got[-1].findtext(C + "subject") == "Topic"


async def test_several_sessions_share_one_nick(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        phone = await Client.login(srv, "alice", "phone")
        bob = await Client.login(srv, "bob")
        await alice.join("Alice")
        got = await phone.join("Alice")
        assert codes(presences(got)[-1]) >= {"110"}
        await bob.join("Bob")
        await bob.send(f"<message to='{ROOM}' type='groupchat'><body>both</body></message>")
        assert bodies(alice.received()) == ["both"] and bodies(phone.received()) == ["both"]
        # one session leaving keeps the nick
        await phone.send(f"<presence to='{ROOM}/Alice' type='unavailable'/>")
        assert presences(bob.received()) == []


async def test_disco_of_the_service_and_rooms(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        got = await alice.send(
            f"<iq type='get' id='i' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
        query = result(got, "i")[0]
        identity = query.find("{http://jabber.org/protocol/disco#info}identity")
        assert identity is not None and identity.get("category") == "conference"
        # the host lists the service
        got = await alice.send(
            "<iq type='get' id='h' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        )
        assert SERVICE in [i.get("jid") for i in result(got, "h")[0]]
        await alice.join("Alice")
        got = await alice.send(
            f"<iq type='get' id='it' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        )
        assert [i.get("jid") for i in result(got, "it")[0]] == [ROOM]
        got = await alice.send(
            f"<iq type='get' id='ri' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
        features = {f.get("var") for f in result(got, "ri")[0] if f.tag.endswith("feature")}
        assert {
            "http://jabber.org/protocol/muc",
            "muc_public",
            "muc_temporary",
            "muc_open",
        } <= features
        assert {
            "muc_unmoderated",
            "muc_semianonymous",
            "muc_unsecured",
            "urn:xmpp:occupant-id:0",
        } <= features
        form = result(got, "ri")[0].find("{jabber:x:data}x")
        assert form is not None
        values = {f.get("var"): f.findtext("{jabber:x:data}value") for f in form}
        assert values["FORM_TYPE"] == "http://jabber.org/protocol/muc#roominfo"
        assert values["muc#roominfo_occupants"] == "1"


async def test_join_errors_are_precise(tmp_path: Path) -> None:
    async with running(tmp_path, max_nick_length=20) as srv:
        bob = await Client.login(srv, "bob")
        # §7.2.1: no nick
        assert error(
            await bob.send(
                f"<presence to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
            )
        ) == ("jid-malformed")
        assert error(await bob.join("x" * 21)) == "jid-malformed"
        # a nickname that is empty once RFC 8266 has trimmed it
        assert error(await bob.join("   ")) == "jid-malformed"
        # an error presence carries <x xmlns='…muc'/> (§7.2.6) and comes from the room JID
        got = await bob.join("y" * 21)
        assert got[0].find("{http://jabber.org/protocol/muc}x") is not None
        # leaving a room one is not in, or a missing one, is ignored
        assert await bob.send(f"<presence to='nowhere@{SERVICE}/Bob' type='unavailable'/>") == []
        assert srv.module("muc").registry.get(f"nowhere@{SERVICE}") is None


async def test_a_join_from_a_session_already_in_the_room_gets_the_room_again(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await alice.send(f"<message to='{ROOM}' type='groupchat'><body>before</body></message>")
        await bob.join("Bob")
        alice.received()
        # bob's client lost track (XEP-0410 §4) and joins again under the same nick
        got = await bob.join("Bob")
        assert [p.get("from") for p in presences(got)] == [f"{ROOM}/Alice", f"{ROOM}/Bob"]
        assert "110" in codes(presences(got)[-1])
        assert bodies(got) == ["before"] and got[-1].find(C + "subject") is not None
        # the others see a status update, not a second occupant
        (update,) = presences(alice.received())
        assert update.get("type") is None and codes(update) == set()
        room = srv.module("muc").registry.get(ROOM)
        assert len(room.occupants) == 2


async def test_an_unconfigured_room_is_not_kept_even_if_rooms_start_persistent(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, persistent_by_default=True) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice", configure=False)
        await alice.send(f"<presence to='{ROOM}/Alice' type='unavailable'/>")
        assert srv.module("muc").registry.get(ROOM) is None
        # configured, it stays (and is stored)
        await alice.join("Alice")
        await alice.send(f"<presence to='{ROOM}/Alice' type='unavailable'/>")
        assert srv.module("muc").registry.get(ROOM) is not None


async def test_a_session_lost_with_another_cluster_node_leaves_its_rooms(tmp_path: Path) -> None:
    from chatgate.xmpp.events import RemoteSessionLost

    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        alice.received()
        await srv.ctx.hooks.notify(RemoteSessionLost(bob.full, "bob@localhost", True))
        await alice.wire.settle()
        (gone,) = presences(alice.received())
        assert gone.get("from") == f"{ROOM}/Bob" and gone.get("type") == "unavailable"


async def test_the_same_room_in_every_feeding_mode(tmp_path: Path, mode: str) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice", mode=mode)
        bob = await Client.login(srv, "bob", mode=mode)
        await alice.join("Alice")
        got = await bob.join("Bob")
        assert [p.get("from") for p in presences(got)] == [f"{ROOM}/Alice", f"{ROOM}/Bob"]
        await bob.send(f"<message to='{ROOM}' type='groupchat'><body>ü &amp; ✓</body></message>")
        assert bodies(alice.received()) == ["ü & ✓"]


async def test_leaving_carries_the_status_and_history_by_time(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        await alice.send(f"<message to='{ROOM}' type='groupchat'><body>recent</body></message>")
        # seconds and since: all of it is recent; an unreadable date limits nothing
        got = await bob.join("Bob", extra="<history seconds='60'/>")
        assert bodies(got) == ["recent"]
        got = await carol.join("Carol", extra="<history since='2000-01-01T00:00:00Z'/>")
        assert bodies(got) == ["recent"]
        await carol.send(f"<presence to='{ROOM}/Carol' type='unavailable'/>")
        got = await carol.join("Carol", extra="<history since='yesterday'/>")
        assert bodies(got) == ["recent"]
        await carol.send(f"<presence to='{ROOM}/Carol' type='unavailable'/>")
        future = await carol.join("Carol", extra="<history since='2999-01-01T00:00:00Z'/>")
        assert bodies(future) == []
        bob.received()
        await carol.send(
            f"<presence to='{ROOM}/Carol' type='unavailable'><status>bye now</status></presence>"
        )
        (gone,) = presences(bob.received())
        assert gone.findtext(C + "status") == "bye now"


async def test_all_rooms_histories_share_one_byte_budget(tmp_path: Path) -> None:
    async with running(tmp_path, history_total_bytes=2000, history_bytes=1500) as srv:
        alice = await Client.login(srv, "alice")
        other = ROOM.replace("room@", "other@")
        await alice.join("Alice")
        await alice.join("Alice", room=other)
        for i in range(20):
            for room in (ROOM, other):
                await alice.send(
                    f"<message to='{room}' type='groupchat'><body>{i:03} {'x' * 80}</body></message>"
                )
        service = srv.module("muc").service
        registry = srv.module("muc").registry
        first, second = registry.get(ROOM), registry.get(other)
        assert service.history_budget.used == first.history.bytes + second.history.bytes
        assert service.history_budget.used <= 2000
        assert first.history.entries and second.history.entries
        # each keeps its newest
        assert "019" in first.history.entries[-1].stanza.find("body", "jabber:client").text
        # a room that goes gives its bytes back
        await alice.send(f"<presence to='{other}/Alice' type='unavailable'/>")
        assert service.history_budget.used == first.history.bytes


async def test_every_virtual_host_gets_its_own_service(tmp_path: Path) -> None:
    from chatgate.modules.muc.module import MultiUserChat
    from chatgate.vhost import VirtualHost

    async with running(tmp_path, domain_prefix="rooms") as srv:
        ctx = srv.ctx
        ctx.hosts["example.net"] = VirtualHost(
            "example.net", ctx.config.host("example.net"), ctx.provider, None, False
        )
        ctx.unload("muc")
        ctx.load(MultiUserChat())
        services = {s.domain: s.parent for s in ctx.services if s.domain.startswith("rooms.")}
        assert services == {"rooms.localhost": "localhost", "rooms.example.net": "example.net"}
        alice = await Client.login(srv, "alice")
        got = await alice.join("Alice", room="team@rooms.example.net")
        assert "110" in codes(presences(got)[-1])
        # rooms of one service are not the other's
        disco = "<iq type='get' id='i' to='rooms.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        assert list(result(await alice.send(disco), "i")[0]) == []
