"""XEP-0045 owners and admins through the real connection: the configuration form,
persistent rooms surviving a restart, members-only, moderated, password and size
limits, anonymity, affiliations and roles (kick, ban, voice), invitations and
destruction; garbage in forms and admin requests gets precise errors."""

from __future__ import annotations

from pathlib import Path

from .support import (
    ROOM,
    USER,
    C,
    Client,
    admin,
    bodies,
    codes,
    configure,
    error,
    item,
    messages,
    presences,
    result,
    running,
)

OWNER_NS = "{http://jabber.org/protocol/muc#owner}"
FORM = "{jabber:x:data}"


async def test_the_owner_gets_the_form_and_others_are_forbidden(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        get = f"<iq type='get' id='f' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"
        form = result(await alice.send(get), "f").find(f"{OWNER_NS}query/{FORM}x")
        assert form is not None and form.get("type") == "form"
        fields = {f.get("var") for f in form.findall(FORM + "field")}
        assert {
            "muc#roomconfig_persistentroom",
            "muc#roomconfig_membersonly",
            "muc#roomconfig_whois",
        } <= fields
        assert error(await bob.send(get)) == "forbidden"
        assert error(await bob.send(configure({"muc#roomconfig_roomname": "x"}))) == "forbidden"


async def test_garbage_in_the_configuration_form_changes_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, max_occupants=50) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice")
        room = srv.module("muc").registry.get(ROOM)
        before = room.config
        for fields in (
            {"muc#roomconfig_persistentroom": "maybe"},
            {"muc#roomconfig_maxusers": "51"},
            {"muc#roomconfig_maxusers": "-1"},
            {"muc#roomconfig_whois": "everybody"},
            {"muc#roomconfig_roomname": "n" * 5000},
            {"muc#roomconfig_roomname": "ok", "muc#roomconfig_allowpm": "robots"},
            {"muc#roomconfig_passwordprotectedroom": "1"},  # and no password
        ):
            assert error(await alice.send(configure(fields))) == "not-acceptable", fields
        assert room.config == before
        wrong = configure({"x": "y"}).replace("muc#roomconfig<", "muc#register<")
        assert error(await alice.send(wrong)) == "bad-request"
        no_var = configure({}).replace("</x>", "<field><value>1</value></field></x>")
        assert error(await alice.send(no_var)) == "bad-request"
        empty = f"<iq type='set' id='e' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"
        assert error(await alice.send(empty)) == "bad-request"


async def test_a_persistent_room_survives_a_restart_with_its_affiliations(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice")
        fields = {
            "muc#roomconfig_persistentroom": "1",
            "muc#roomconfig_roomname": "Team",
            "muc#roomconfig_membersonly": "1",
        }
        result(await alice.send(configure(fields)), "cfg")
        result(await alice.send(admin("<item affiliation='member' jid='bob@localhost'/>")), "adm")
        await alice.send(
            f"<message to='{ROOM}' type='groupchat'><subject>Plans</subject></message>"
        )
        await alice.send(f"<presence to='{ROOM}/Alice' type='unavailable'/>")
        assert srv.module("muc").registry.get(ROOM) is not None  # empty, kept
    async with running(tmp_path) as srv:
        room = srv.module("muc").registry.get(ROOM)
        assert room is not None and room.config.name == "Team" and room.config.members_only
        assert room.affiliations == {"alice@localhost": "owner", "bob@localhost": "member"}
        bob, carol = [await Client.login(srv, u) for u in ("bob", "carol")]
        got = await bob.join("Bob")
        assert got[-1].findtext(C + "subject") == "Plans"
        assert error(await carol.join("Carol")) == "registration-required"


async def test_a_room_made_temporary_again_is_forgotten_by_storage(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice")
        await alice.send(configure({"muc#roomconfig_persistentroom": "1"}))
        await alice.send(configure({"muc#roomconfig_persistentroom": "0"}, iq_id="c2"))
    async with running(tmp_path) as srv:
        assert srv.module("muc").registry.get(ROOM) is None


async def test_members_only_refuses_strangers_and_an_invitation_makes_a_member(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        await alice.send(configure({"muc#roomconfig_membersonly": "1"}))
        assert error(await bob.join("Bob")) == "registration-required"
        invite = (
            f"<message to='{ROOM}' id='inv'><x xmlns='http://jabber.org/protocol/muc#user'>"
            "<invite to='bob@localhost'><reason>join us</reason></invite></x></message>"
        )
        assert await alice.send(invite) == []
        (msg,) = messages(bob.received())
        assert msg.get("from") == ROOM
        invited = msg.find(f"{USER}x/{USER}invite")
        assert invited is not None and invited.get("from") == "alice@localhost"
        assert invited.findtext(USER + "reason") == "join us"
        assert item(presences(await bob.join("Bob"))[-1])["affiliation"] == "member"
        # a member may not invite in a members-only room unless the owner allows it
        assert error(await bob.send(invite.replace("bob@", "carol@"))) == "forbidden"
        # bob declines nothing; carol, never invited, declines: alice hears it
        decline = (
            f"<message to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'>"
            "<decline to='alice@localhost'><reason>busy</reason></decline></x></message>"
        )
        await carol.send(decline)
        (msg,) = messages(alice.received())
        declined = msg.find(f"{USER}x/{USER}decline")
        assert declined is not None and declined.get("from") == "carol@localhost"


async def test_becoming_members_only_removes_non_members(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        await alice.send(configure({"muc#roomconfig_membersonly": "1"}))
        (gone,) = presences(bob.received())
        assert gone.get("type") == "unavailable" and codes(gone) == {"110", "322"}


async def test_password_protected_room(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        fields = {
            "muc#roomconfig_passwordprotectedroom": "1",
            "muc#roomconfig_roomsecret": "s3cret",
        }
        result(await alice.send(configure(fields)), "cfg")
        assert error(await bob.join("Bob")) == "not-authorized"
        assert error(await bob.join("Bob", extra="<password>wrong</password>")) == "not-authorized"
        assert codes(presences(await bob.join("Bob", extra="<password>s3cret</password>"))[-1]) == {
            "110",
            "170",
        }


async def test_a_full_room_refuses_one_more(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        result(await alice.send(configure({"muc#roomconfig_maxusers": "2"})), "cfg")
        await bob.join("Bob")
        assert error(await carol.join("Carol")) == "service-unavailable"


async def test_non_anonymous_rooms_show_everyone_real_jids(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        await bob.join("Bob")
        await alice.send(configure({"muc#roomconfig_whois": "anyone"}))
        (notice,) = messages(bob.received())
        assert codes(notice) == {"104", "172"}
        got = await carol.join("Carol")
        assert item(presences(got, f"{ROOM}/Bob")[0])["jid"] == bob.full
        assert codes(presences(got)[-1]) == {"110", "100", "170"}


async def test_kick_tells_everyone_with_307_and_admins_cannot_be_kicked(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        await bob.join("Bob")
        await carol.join("Carol")
        bob.received()
        kick = admin("<item nick='Bob' role='none'><reason>spam</reason></item>")
        assert error(await carol.send(kick)) == "forbidden"
        result(await alice.send(kick), "adm")
        (gone,) = presences(bob.received())
        assert gone.get("type") == "unavailable" and codes(gone) == {"110", "307"}
        kicked = gone.find(f"{USER}x/{USER}item")
        assert kicked is not None and kicked.findtext(USER + "reason") == "spam"
        assert kicked.find(USER + "actor").get("nick") == "Alice"  # type: ignore[union-attr]
        (seen,) = presences(carol.received())
        assert codes(seen) == {"307"}
        # bob may come back (a kick is no ban); the owner cannot be kicked
        await bob.join("Bob")
        result(await alice.send(admin("<item nick='Carol' role='moderator'/>")), "adm")
        assert error(await carol.send(admin("<item nick='Alice' role='none'/>"))) == "not-allowed"


async def test_ban_removes_and_keeps_out(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        result(await alice.send(admin("<item affiliation='outcast' jid='bob@localhost'/>")), "adm")
        (gone,) = presences(bob.received())
        assert codes(gone) == {"110", "301"} and item(gone)["affiliation"] == "outcast"
        assert error(await bob.join("Bob")) == "forbidden"
        listing = result(
            await alice.send(admin("<item affiliation='outcast'/>", iq_type="get")), "adm"
        )
        assert [i.get("jid") for i in listing[0]] == ["bob@localhost"]
        # the last owner cannot leave the room without an owner
        assert (
            error(await alice.send(admin("<item affiliation='none' jid='alice@localhost'/>")))
            == "conflict"
        )


async def test_admins_change_what_is_below_them_only(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        result(await alice.send(admin("<item affiliation='admin' jid='bob@localhost'/>")), "adm")
        (promoted,) = presences(bob.received())
        assert item(promoted)["role"] == "moderator" and item(promoted)["affiliation"] == "admin"
        assert (
            error(await bob.send(admin("<item affiliation='owner' jid='bob@localhost'/>")))
            == "forbidden"
        )
        assert (
            error(await bob.send(admin("<item affiliation='outcast' jid='alice@localhost'/>")))
            == "not-allowed"
        )
        result(await bob.send(admin("<item affiliation='member' jid='carol@localhost'/>")), "adm")
        # an invalid request changes nothing at all, even its valid items
        mixed = "<item affiliation='member' jid='dave@localhost'/><item affiliation='king' jid='x@localhost'/>"
        assert error(await alice.send(admin(mixed))) == "bad-request"
        room = srv.module("muc").registry.get(ROOM)
        assert "dave@localhost" not in room.affiliations
        assert (
            error(await alice.send(admin("<item affiliation='member' jid='@@'/>")))
            == "jid-malformed"
        )
        assert (
            error(await alice.send(admin("<item nick='Nobody' role='visitor'/>")))
            == "item-not-found"
        )
        assert error(await alice.send(admin("<nothing/>"))) == "bad-request"


async def test_voice_in_a_moderated_room(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await alice.send(configure({"muc#roomconfig_moderatedroom": "1"}))
        got = await bob.join("Bob")
        assert item(presences(got)[-1])["role"] == "visitor"
        speak = f"<message to='{ROOM}' type='groupchat'><body>may I?</body></message>"
        assert error(await bob.send(speak)) == "forbidden"
        result(await alice.send(admin("<item nick='Bob' role='participant'/>")), "adm")
        assert item(presences(bob.received())[-1])["role"] == "participant"
        await bob.send(speak)
        assert bodies(alice.received()) == ["may I?"]
        voices = admin("<item role='participant'/>", iq_type="get")
        assert [i.get("nick") for i in result(await alice.send(voices), "adm")[0]] == ["Bob"]
        assert error(await bob.send(voices)) == "forbidden"


async def test_destroying_a_room_sends_everyone_away(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await alice.send(configure({"muc#roomconfig_persistentroom": "1"}))
        await bob.join("Bob")
        destroy = (
            f"<iq type='set' id='d' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
            "<destroy jid='new@conference.localhost'><reason>moved</reason></destroy></query></iq>"
        )
        assert error(await bob.send(destroy)) == "forbidden"
        result(await alice.send(destroy), "d")
        (gone,) = presences(bob.received())
        venue = gone.find(f"{USER}x/{USER}destroy")
        assert gone.get("type") == "unavailable" and venue is not None
        assert (
            venue.get("jid") == "new@conference.localhost"
            and venue.findtext(USER + "reason") == "moved"
        )
        assert srv.module("muc").registry.get(ROOM) is None
        assert srv.module("muc").registry.rooms_of(bob.full) == []
    async with running(tmp_path) as srv:
        assert srv.module("muc").registry.get(ROOM) is None


async def test_cancelling_the_first_configuration_destroys_the_new_room(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice", configure=False)
        cancel = (
            f"<iq type='set' id='c' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
            "<x xmlns='jabber:x:data' type='cancel'/></query></iq>"
        )
        got = await alice.send(cancel)
        result(got, "c")
        assert [p.get("type") for p in presences(got)] == ["unavailable"]
        assert srv.module("muc").registry.get(ROOM) is None


async def test_an_occupant_can_be_banned_by_nick(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await bob.join("Bob")
        result(await alice.send(admin("<item affiliation='outcast' nick='Bob'/>")), "adm")
        assert srv.module("muc").registry.get(ROOM).affiliations["bob@localhost"] == "outcast"
        assert error(await alice.send(admin("<item affiliation='outcast' nick='Nobody'/>"))) == (
            "item-not-found"
        )


async def test_a_visitor_asks_for_voice_and_a_moderator_grants_it(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        await alice.send(configure({"muc#roomconfig_moderatedroom": "1"}))
        await bob.join("Bob")
        alice.received()
        ask = (
            f"<message to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
            "<field var='muc#role'><value>participant</value></field></x></message>"
        )
        assert await bob.send(ask) == []
        (request,) = messages(alice.received())
        form = request.find("{jabber:x:data}x")
        assert form is not None
        values = {f.get("var"): f.findtext("{jabber:x:data}value") for f in form}
        assert values["muc#roomnick"] == "Bob" and values["muc#jid"] == "bob@localhost"
        # asking again at once is a flood
        assert error(await bob.send(ask)) == "resource-constraint"
        # a visitor cannot answer its own request
        grant = (
            f"<message to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
            "<field var='muc#roomnick'><value>Bob</value></field>"
            "<field var='muc#request_allow'><value>true</value></field></x></message>"
        )
        assert error(await bob.send(grant)) == "forbidden"
        await alice.send(grant)
        assert item(presences(bob.received())[-1])["role"] == "participant"
        garbage = ask.replace("muc#request<", "muc#nonsense<")
        assert error(await bob.send(garbage)) == "bad-request"


async def test_an_owner_outside_the_room_configures_it_and_an_empty_room_made_temporary_goes(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice")
        result(await alice.send(configure({"muc#roomconfig_persistentroom": "1"})), "cfg")
        await alice.send(f"<presence to='{ROOM}/Alice' type='unavailable'/>")
        result(await alice.send(configure({"muc#roomconfig_roomname": "Quiet"}, iq_id="c2")), "c2")
        assert srv.module("muc").registry.get(ROOM).config.name == "Quiet"
        result(
            await alice.send(configure({"muc#roomconfig_persistentroom": "0"}, iq_id="c3")), "c3"
        )
        assert srv.module("muc").registry.get(ROOM) is None
    async with running(tmp_path) as srv:
        assert srv.module("muc").registry.get(ROOM) is None
