"""Multi-user chat (XEP-0045) on the real `chatgate serve`, with slixmpp's xep_0045
plugin as the client: three users create a room, join, chat, send a private
message, change nick, kick and ban; members-only rooms and invitations; a
persistent room survives a restart; join floods and huge nicks are refused
precisely while the room keeps working; a registered nick is reserved (§7.10,
§7.12); the room list pages with RSM (XEP-0059)."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import slixmpp
from slixmpp.exceptions import IqError, PresenceError

from .conftest import Client, RunningServer, connect, serve, start_server

pytestmark = pytest.mark.e2e

SERVICE = "conference.localhost"
USERS = ("alice", "bob", "carol")


def _start(tmp: Path, options: str = "") -> RunningServer:
    # start_server writes `extra` under [auth]; a new table after it is the module's
    extra = f"\n[modules.muc]\n{options}\n" if options else ""
    server = start_server(tmp, extra)
    return server


@pytest.fixture(scope="module")
def muc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = _start(tmp_path_factory.mktemp("muc"), "max_rooms_per_session = 20")
    for user in USERS:
        srv.add_user(user, f"{user}-password")
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


@contextlib.asynccontextmanager
async def users(server: RunningServer, *names: str) -> AsyncIterator[list[Client]]:
    clients = []
    try:
        for name in names:
            client = await connect(server, f"{name}@localhost/muc", f"{name}-password")
            client.register_plugin("xep_0004")
            client.register_plugin("xep_0045")
            clients.append(client)
        yield clients
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)


async def create(owner: Client, room: str, nick: str, **config: object) -> None:
    """Join as the first occupant (201) and accept the instant room, or submit `config`."""
    muc = owner.plugin["xep_0045"]
    presence, _subject, _occupants, _history = await muc.join_muc_wait(room, nick, timeout=10)
    assert 201 in presence["muc"]["status_codes"]
    form = (
        await muc.get_room_config(room, timeout=10)
        if config
        else owner.plugin["xep_0004"].make_form(ftype="submit")
    )
    if config:
        for var, value in config.items():
            form.field[var]["value"] = value
    await muc.set_room_config(room, form, timeout=10)


def events(client: slixmpp.ClientXMPP, name: str) -> asyncio.Queue[slixmpp.Message]:
    queue: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
    client.add_event_handler(name, queue.put_nowait)
    return queue


async def next_event(queue: asyncio.Queue[slixmpp.Message], timeout: float = 10) -> slixmpp.Message:
    return await asyncio.wait_for(queue.get(), timeout)


async def test_three_users_chat_nick_change_private_message_kick_and_ban(
    muc_server: RunningServer,
) -> None:
    room = f"team@{SERVICE}"
    async with users(muc_server, *USERS) as (alice, bob, carol):
        await create(alice, room, "Alice")
        for client, nick in ((bob, "Bob"), (carol, "Carol")):
            presence, _subject, _occupants, _history = await client.plugin[
                "xep_0045"
            ].join_muc_wait(room, nick, timeout=10)
            assert 110 in presence["muc"]["status_codes"]
        assert sorted(carol.plugin["xep_0045"].get_roster(room)) == ["Alice", "Bob", "Carol"]
        # groupchat: everyone gets it, from room/nick, with the room's stanza-id
        bob_msgs, carol_msgs = events(bob, "groupchat_message"), events(carol, "groupchat_message")
        alice.send_message(mto=room, mbody="hello room", mtype="groupchat")
        for queue in (bob_msgs, carol_msgs):
            msg = await next_event(queue)
            assert msg["body"] == "hello room" and msg["from"] == f"{room}/Alice"
            sid = msg.xml.find("{urn:xmpp:sid:0}stanza-id")
            assert sid is not None and sid.get("by") == room
        # a private message through the room
        alice_msgs = events(alice, "message")
        bob.send_message(mto=f"{room}/Alice", mbody="just for you", mtype="chat")
        private = await next_event(alice_msgs)
        assert private["from"] == f"{room}/Bob" and private["type"] == "chat"
        # nick change
        assert (
            await carol.plugin["xep_0045"].set_self_nick(room, "Caroline", timeout=10) == "Caroline"
        )
        # kick: carol goes with 307
        carol_out = events(carol, f"muc::{room}::presence")
        await alice.plugin["xep_0045"].set_role(
            room, "Caroline", "none", reason="enough", timeout=10
        )
        gone = await next_event(carol_out)
        while gone["type"] != "unavailable":
            gone = await next_event(carol_out)
        assert {110, 307} <= set(gone["muc"]["status_codes"])
        # ban: bob goes with 301 and cannot come back
        bob_out = events(bob, f"muc::{room}::presence")
        await alice.plugin["xep_0045"].set_affiliation(
            room, "outcast", jid="bob@localhost", timeout=10
        )
        gone = await next_event(bob_out)
        while gone["type"] != "unavailable":
            gone = await next_event(bob_out)
        assert 301 in gone["muc"]["status_codes"]
        with pytest.raises(PresenceError) as refused:
            await bob.plugin["xep_0045"].join_muc_wait(room, "Bob", timeout=10)
        assert refused.value.condition == "forbidden"
        # and carol, kicked but not banned, may come back
        await carol.plugin["xep_0045"].join_muc_wait(room, "Carol", timeout=10)


async def test_members_only_room_and_a_mediated_invitation(muc_server: RunningServer) -> None:
    room = f"private@{SERVICE}"
    async with users(muc_server, "alice", "bob") as (alice, bob):
        await create(alice, room, "Alice", **{"muc#roomconfig_membersonly": True})
        with pytest.raises(PresenceError) as refused:
            await bob.plugin["xep_0045"].join_muc_wait(room, "Bob", timeout=10)
        assert refused.value.condition == "registration-required"
        # slixmpp raises groupchat_invite only for rooms it has not tried to join;
        # bob just tried, so the invitation is read from the plain message event
        invites = events(bob, "message")
        alice.plugin["xep_0045"].invite(room, "bob@localhost", reason="come in")
        invite = await next_event(invites)
        assert invite["from"] == room
        assert invite["muc"]["invite"]["from"] == "alice@localhost"
        presence, *_ = await bob.plugin["xep_0045"].join_muc_wait(room, "Bob", timeout=10)
        assert presence["muc"]["affiliation"] == "member"
        members = await alice.plugin["xep_0045"].get_affiliation_list(room, "member", timeout=10)
        assert [str(j) for j in members] == ["bob@localhost"]


async def test_history_for_a_late_joiner(muc_server: RunningServer) -> None:
    room = f"history@{SERVICE}"
    async with users(muc_server, "alice", "bob") as (alice, bob):
        await create(alice, room, "Alice")
        for i in range(4):
            alice.send_message(mto=room, mbody=f"line {i}", mtype="groupchat")
        # a ping round trip makes sure the four are in before bob joins
        await alice.plugin["xep_0199"].send_ping(SERVICE, timeout=10)
        _presence, _subject, occupants, history = await bob.plugin["xep_0045"].join_muc_wait(
            room, "Bob", maxstanzas=3, timeout=10
        )
        assert [m["body"] for m in history] == ["line 1", "line 2", "line 3"]
        # slixmpp's list ends with the joiner's own presence, which comes after the others'
        assert [p["from"].resource for p in occupants] == ["Alice", "Bob"]


async def test_attacks_get_precise_errors_and_the_room_keeps_working(
    muc_server: RunningServer,
) -> None:
    room = f"sturdy@{SERVICE}"
    async with users(muc_server, "alice", "bob") as (alice, bob):
        await create(alice, room, "Alice")
        muc = bob.plugin["xep_0045"]
        # a huge nick
        with pytest.raises(PresenceError) as refused:
            await muc.join_muc_wait(room, "N" * 500, timeout=10)
        assert refused.value.condition == "jid-malformed"
        # a join flood: 20 rooms per session here, the 21st is refused
        for i in range(20):
            await muc.join_muc_wait(f"flood{i}@{SERVICE}", "Bob", timeout=10)
        with pytest.raises(PresenceError) as refused:
            await muc.join_muc_wait(f"flood20@{SERVICE}", "Bob", timeout=10)
        assert refused.value.condition == "resource-constraint"
        # garbage in a configuration form, from its owner
        form = alice.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="muc#roomconfig_maxusers", value="lots")
        with pytest.raises(IqError) as bad:
            await alice.plugin["xep_0045"].set_room_config(room, form, timeout=10)
        assert bad.value.condition == "not-acceptable"
        # an IQ to a room that does not exist
        with pytest.raises(IqError) as missing:
            await bob.plugin["xep_0030"].get_info(jid=f"nowhere@{SERVICE}", timeout=10)
        assert missing.value.condition == "item-not-found"
        # the room still works
        for i in range(20):
            muc.leave_muc(f"flood{i}@{SERVICE}", "Bob")
        await muc.join_muc_wait(room, "Bob", timeout=10)
        got = events(bob, "groupchat_message")
        alice.send_message(mto=room, mbody="still fine", mtype="groupchat")
        msg = await next_event(got)
        while msg["body"] != "still fine":
            msg = await next_event(got)


async def test_a_persistent_room_survives_a_restart(tmp_path: Path) -> None:
    server = _start(tmp_path)
    try:
        for user in ("alice", "bob"):
            server.add_user(user, f"{user}-password")
        room = f"kept@{SERVICE}"
        async with users(server, "alice") as (alice,):
            await create(
                alice,
                room,
                "Alice",
                **{"muc#roomconfig_persistentroom": True, "muc#roomconfig_roomname": "Kept"},
            )
            await alice.plugin["xep_0045"].set_affiliation(
                room, "member", jid="bob@localhost", timeout=10
            )
            alice.plugin["xep_0045"].set_subject(room, "Still here")
            await alice.plugin["xep_0199"].send_ping(SERVICE, timeout=10)
        assert server.stop() == 0
        ports = (server.starttls_port, server.direct_tls_port, server.plain_port)
        server = serve(server.config, server.data_dir, ports)
        async with users(server, "alice", "bob") as (alice, bob):
            info = await bob.plugin["xep_0030"].get_info(jid=room, timeout=10)
            assert "muc_persistent" in info["disco_info"]["features"]
            assert ("conference", "text", None, "Kept") in info["disco_info"]["identities"]
            _presence, subject, _occupants, _history = await bob.plugin["xep_0045"].join_muc_wait(
                room, "Bob", timeout=10
            )
            assert subject["subject"] == "Still here"
            assert _presence["muc"]["affiliation"] == "member"
            owners = await alice.plugin["xep_0045"].get_affiliation_list(room, "owner", timeout=10)
            assert [str(j) for j in owners] == ["alice@localhost"]
    finally:
        code = server.stop()
    assert code == 0 and "Traceback" not in server.log_text(), server.log_text()


async def test_a_late_joiner_reads_the_room_archive_with_mam(muc_server: RunningServer) -> None:
    room = f"archived@{SERVICE}"
    async with users(muc_server, "alice", "bob") as (alice, bob):
        await create(alice, room, "Alice")
        for i in range(3):
            alice.send_message(mto=room, mbody=f"archived {i}", mtype="groupchat")
        await alice.plugin["xep_0199"].send_ping(SERVICE, timeout=10)
        bob.register_plugin("xep_0313")
        answer = await bob.plugin["xep_0313"].retrieve(jid=room, timeout=10)
        found = [r["mam_result"]["forwarded"]["stanza"] for r in answer["mam"]["results"]]
        assert [m["body"] for m in found] == [f"archived {i}" for i in range(3)]
        assert {str(m["from"]) for m in found} == {f"{room}/Alice"}


async def test_a_direct_invitation_passes_through(muc_server: RunningServer) -> None:
    room = f"direct@{SERVICE}"
    async with users(muc_server, "alice", "bob") as (alice, bob):
        await create(alice, room, "Alice")
        for client in (alice, bob):
            client.register_plugin("xep_0249")
        invites = events(bob, "groupchat_direct_invite")
        alice.plugin["xep_0249"].send_invitation("bob@localhost", room, reason="see you there")
        invite = await next_event(invites)
        assert invite["groupchat_invite"]["jid"] == room
        assert invite["groupchat_invite"]["reason"] == "see you there"
        await bob.plugin["xep_0045"].join_muc_wait(room, "Bob", timeout=10)


async def test_a_registered_nick_is_reserved(muc_server: RunningServer) -> None:
    """XEP-0045 §7.10 and §7.12 with slixmpp: Bob registers a nick with the room (the
    muc#register form), Carol cannot take it, the member list and the
    x-roomuser-item node name it."""
    room = f"reserved@{SERVICE}"
    async with users(muc_server, "alice", "bob", "carol") as (alice, bob, carol):
        await create(alice, room, "Alice")
        ask = bob.make_iq_get(queryxmlns="jabber:iq:register", ito=room)
        form_reply = await ask.send(timeout=10)
        x = form_reply.xml.find("{jabber:iq:register}query/{jabber:x:data}x")
        assert x is not None and x.get("type") == "form"
        submit = bob.make_iq_set(ito=room)
        query = ET.SubElement(submit.xml, "{jabber:iq:register}query")
        form = bob.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", value="http://jabber.org/protocol/muc#register")
        form.add_field(var="muc#register_roomnick", value="Bobby")
        query.append(form.xml)
        await submit.send(timeout=10)
        info = await bob.plugin["xep_0030"].get_info(jid=room, node="x-roomuser-item", timeout=10)
        assert [i[3] for i in info["disco_info"]["identities"]] == ["Bobby"]
        with pytest.raises(PresenceError) as taken:
            await carol.plugin["xep_0045"].join_muc_wait(room, "bobby", timeout=10)
        assert taken.value.condition == "conflict"
        members = await alice.plugin["xep_0045"].get_affiliation_list(room, "member", timeout=10)
        assert [str(j) for j in members] == ["bob@localhost"]
        presence, *_ = await bob.plugin["xep_0045"].join_muc_wait(room, "Bobby", timeout=10)
        assert presence["muc"]["affiliation"] == "member"


async def test_the_room_list_pages_with_rsm(tmp_path: Path) -> None:
    """XEP-0059 paging of the service's rooms with slixmpp's result set iterator;
    without RSM the answer stops at room_list_max."""
    server = _start(tmp_path, "room_list_max = 3")
    try:
        server.add_user("alice", "alice-password")
        rooms = sorted(f"paged{i}@{SERVICE}" for i in range(7))
        async with users(server, "alice") as (alice,):
            for room in rooms:
                await create(alice, room, "Alice")
            alice.register_plugin("xep_0059")
            plain = await alice.plugin["xep_0030"].get_items(jid=SERVICE, timeout=10)
            # (slixmpp gives the items as a set: their order is checked in the unit tests)
            assert sorted(i[0] for i in plain["disco_items"]["items"]) == rooms[:3]
            iq = alice.make_iq_get(ito=SERVICE)
            iq["disco_items"]["node"] = ""
            seen: list[str] = []
            async for page in alice.plugin["xep_0059"].iterate(iq, "disco_items", amount=2):
                got = sorted(i[0] for i in page["disco_items"]["items"])
                assert 0 < len(got) <= 2
                assert str(page["disco_items"]["rsm"]["count"]) == "7"
                seen += got
            assert seen == rooms
    finally:
        code = server.stop()
    assert code == 0 and "Traceback" not in server.log_text(), server.log_text()
