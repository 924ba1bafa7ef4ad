"""Reserved nicknames through the real connection: XEP-0045 §7.10 registration
(jabber:iq:register with the muc#register form), §7.12 the x-roomuser-item node,
the reservation enforced on joins and nick changes, listed in the member list,
kept by a persistent room across a restart, gone with a ban; garbage refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .support import (
    ROOM,
    Client,
    admin,
    codes,
    configure,
    error,
    item,
    presences,
    result,
    running,
)

REG = "{jabber:iq:register}"
FORM = "{jabber:x:data}"
INFO = "{http://jabber.org/protocol/disco#info}"
ADMIN = "{http://jabber.org/protocol/muc#admin}"


def register(nick: str, iq_id: str = "reg", form_type: str = "muc#register") -> str:
    return (
        f"<iq type='set' id='{iq_id}' to='{ROOM}'><query xmlns='jabber:iq:register'>"
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
        f"http://jabber.org/protocol/{form_type}</value></field>"
        f"<field var='muc#register_roomnick'><value>{nick}</value></field></x></query></iq>"
    )


GET = f"<iq type='get' id='g' to='{ROOM}'><query xmlns='jabber:iq:register'/></iq>"
ROOMUSER = (
    f"<iq type='get' id='ru' to='{ROOM}'>"
    "<query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/></iq>"
)


def entered(els: list[ET.Element], nick: str) -> bool:
    """The join went through: the self-presence (110) under `nick` came."""
    return any(
        p.get("from") == f"{ROOM}/{nick}" and p.get("type") is None and "110" in codes(p)
        for p in presences(els)
    )


def reserved_nick(els: list[ET.Element]) -> str | None:
    query = result(els, "ru").find(INFO + "query")
    assert query is not None and query.get("node") == "x-roomuser-item"
    identity = query.find(INFO + "identity")
    return None if identity is None else identity.get("name")


async def test_a_user_registers_a_nick_which_is_reserved_for_them(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        # the form, then nothing registered yet (§7.12: no identity)
        form = result(await bob.send(GET), "g").find(f"{REG}query/{FORM}x")
        assert form is not None and form.get("type") == "form"
        assert "muc#register_roomnick" in {f.get("var") for f in form.findall(FORM + "field")}
        assert reserved_nick(await bob.send(ROOMUSER)) is None
        # bob registers "Bobby" (without being in the room): he is a member now
        result(await bob.send(register("Bobby")), "reg")
        room = srv.module("muc").registry.get(ROOM)
        assert room.affiliations["bob@localhost"] == "member"
        assert reserved_nick(await bob.send(ROOMUSER)) == "Bobby"
        again = result(await bob.send(GET), "g").find(REG + "query")
        assert again is not None and again.find(REG + "registered") is not None
        assert again.findtext(REG + "username") == "Bobby"
        # nobody else takes it, in any case (RFC 8266 case mapping)
        assert error(await carol.join("bobby")) == "conflict"
        assert error(await carol.send(register("BOBBY"))) == "conflict"
        await carol.join("Carol")
        assert error(await carol.send(f"<presence to='{ROOM}/Bobby'/>")) == "conflict"
        # a nick in use by another occupant cannot be registered either
        assert error(await bob.send(register("Carol", "r2"))) == "conflict"
        # bob enters under it; the owner sees it in the member list
        joined = await bob.join("Bobby")
        assert entered(joined, "Bobby")
        assert item(presences(joined)[-1])["affiliation"] == "member"
        got = result(await alice.send(admin("<item affiliation='member'/>", iq_type="get")), "adm")
        (listed,) = got.findall(f"{ADMIN}query/{ADMIN}item")
        assert listed.get("jid") == "bob@localhost" and listed.get("nick") == "Bobby"
        # the room says it registers (disco#info feature)
        info = result(
            await carol.send(
                f"<iq type='get' id='i' to='{ROOM}'>"
                "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            ),
            "i",
        )
        assert "jabber:iq:register" in {
            f.get("var") for f in info.findall(f"{INFO}query/{INFO}feature")
        }
        # <remove/> frees it (the membership stays)
        remove = (
            f"<iq type='set' id='rm' to='{ROOM}'><query xmlns='jabber:iq:register'>"
            "<remove/></query></iq>"
        )
        result(await bob.send(remove), "rm")
        assert reserved_nick(await bob.send(ROOMUSER)) is None
        assert room.affiliations["bob@localhost"] == "member"
        assert error(await bob.send(remove)) == "item-not-found"
        await bob.send(f"<presence to='{ROOM}/Bobby' type='unavailable'/>")
        assert entered(await carol.join("Bobby"), "Bobby")


async def test_a_ban_frees_the_nick_and_strangers_may_not_register_in_members_only(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as srv:
        alice, bob, carol = [await Client.login(srv, u) for u in ("alice", "bob", "carol")]
        await alice.join("Alice")
        result(await bob.send(register("Bobby")), "reg")
        result(await alice.send(admin("<item affiliation='outcast' jid='bob@localhost'/>")), "adm")
        assert error(await bob.send(register("Bobby"))) == "forbidden"
        assert error(await bob.send(GET)) == "forbidden"
        assert entered(await carol.join("Bobby"), "Bobby")  # free again
        result(await alice.send(configure({"muc#roomconfig_membersonly": "1"})), "cfg")
        dave = await Client.login(srv, "dave")
        assert error(await dave.send(register("Dave"))) == "registration-required"
        assert error(await dave.send(GET)) == "registration-required"
        result(await alice.send(admin("<item affiliation='member' jid='dave@localhost'/>")), "adm")
        result(await dave.send(register("Dave")), "reg")


async def test_garbage_registrations_change_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, max_nick_length=10) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        room = srv.module("muc").registry.get(ROOM)
        for bad, condition in (
            (register("x" * 11), "jid-malformed"),
            (register(""), "jid-malformed"),
            (register("Bob", form_type="muc#roomconfig"), "bad-request"),
            (register("Bob").replace("type='submit'", "type='form'"), "bad-request"),
            (
                register("Bob").replace("<field var='muc#register_roomnick'>", "<field>"),
                "bad-request",
            ),
            (
                f"<iq type='set' id='n' to='{ROOM}'><query xmlns='jabber:iq:register'/></iq>",
                "bad-request",
            ),
        ):
            assert error(await bob.send(bad)) == condition, bad
        assert room.nicks == {} and "bob@localhost" not in room.affiliations
        cancel = register("Bob").replace("type='submit'", "type='cancel'")
        result(await bob.send(cancel), "reg")
        assert room.nicks == {}


async def test_a_persistent_room_keeps_registered_nicks_across_a_restart(tmp_path: Path) -> None:
    async with running(tmp_path) as srv:
        alice, bob = [await Client.login(srv, u) for u in ("alice", "bob")]
        await alice.join("Alice")
        result(await alice.send(configure({"muc#roomconfig_persistentroom": "1"})), "cfg")
        result(await bob.send(register("Bobby")), "reg")
        await srv.module("muc").service.written(ROOM)
    async with running(tmp_path) as srv:
        room = srv.module("muc").registry.get(ROOM)
        assert room is not None and room.nicks == {"bob@localhost": "Bobby"}
        assert room.affiliations["bob@localhost"] == "member"
        carol, bob = [await Client.login(srv, u) for u in ("carol", "bob")]
        assert error(await carol.join("Bobby")) == "conflict"
        assert reserved_nick(await bob.send(ROOMUSER)) == "Bobby"
        assert entered(await bob.join("Bobby"), "Bobby")


async def test_an_admin_reserves_a_nick_with_a_member(tmp_path: Path) -> None:
    """§9.3: the item making a member may carry the nick the room keeps for them;
    one taken by someone else is a conflict and the whole request changes nothing."""
    async with running(tmp_path) as srv:
        alice, carol = [await Client.login(srv, u) for u in ("alice", "carol")]
        await alice.join("Alice")
        room = srv.module("muc").registry.get(ROOM)
        result(
            await alice.send(
                admin("<item affiliation='member' jid='bob@localhost' nick='Bobby'/>")
            ),
            "adm",
        )
        assert room.nicks == {"bob@localhost": "Bobby"}
        assert error(await carol.join("BOBBY")) == "conflict"
        both = (
            "<item affiliation='member' jid='dave@localhost' nick='Dave'/>"
            "<item affiliation='member' jid='carol@localhost' nick='bobby'/>"
        )
        assert error(await alice.send(admin(both))) == "conflict"
        assert "dave@localhost" not in room.affiliations and "dave@localhost" not in room.nicks
        # a ban takes the nick away
        result(await alice.send(admin("<item affiliation='outcast' jid='bob@localhost'/>")), "adm")
        assert room.nicks == {} and room.reserved == {}
