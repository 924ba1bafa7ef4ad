"""XEP-0045 group chat on `conference.localhost` with aioxmpp 0.13's `MUCClient`
as the client: a room created and unlocked by its owner, occupants joining,
talking, changing nicks, setting the subject and leaving; kicks and bans through
the room's API; a members-only room entered after an invitation; history for a
late joiner. Each test has its own room on the module's server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aioxmpp
import aioxmpp.forms
import aioxmpp.im
import aioxmpp.muc
import aioxmpp.muc.xso as muc_xso
import aioxmpp.tracking
import pytest

from tests.e2e.aioxmpp_support import (
    Emissions,
    Inbox,
    add_users,
    aioxmpp_client,
    text_of,
    wait_until,
)
from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

PASSWORD = "aioxmpp-muc-pass"
USERS = ("mx-alice", "mx-bob", "mx-carol")


def room_jid(name: str) -> aioxmpp.JID:
    return aioxmpp.JID.fromstr(f"{name}@conference.localhost")


@pytest.fixture(scope="module")
def users(server: RunningServer) -> tuple[str, ...]:
    add_users(server, USERS, PASSWORD)
    return USERS


@contextlib.asynccontextmanager
async def clients(
    server: RunningServer, *names: str
) -> AsyncIterator[list[aioxmpp.PresenceManagedClient]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                aioxmpp_client(server, f"{name}@localhost/muc", PASSWORD)
            )
            for name in names
        ]


async def create_room(
    client: aioxmpp.Client, jid: aioxmpp.JID, nick: str, *, members_only: bool = False
) -> tuple[aioxmpp.muc.Room, frozenset[int]]:
    """Join `jid` as its creator and unlock it (XEP-0045 §10.1): the instant room,
    or the owner's form with members-only set. Returns the room and the status
    codes of the self-presence that entered it."""
    muc = client.summon(aioxmpp.MUCClient)
    room, joined = muc.join(jid, nick)
    entered = Emissions(room.on_muc_enter)
    await asyncio.wait_for(joined, 10)
    _, kwargs = await entered.next()
    await muc.set_room_config(
        jid, submission({"muc#roomconfig_membersonly": "1"} if members_only else {})
    )
    return room, frozenset(int(code) for code in kwargs["muc_status_codes"])


def submission(values: dict[str, str]) -> aioxmpp.forms.Data:
    """A muc#roomconfig submission of `values` (none: the instant room, §10.1.2),
    built field by field (see `test_configuration_form_template` for why not
    through aioxmpp's `ConfigurationForm`)."""
    form = aioxmpp.forms.Data(aioxmpp.forms.DataType.SUBMIT)
    if values:
        values = {"FORM_TYPE": "http://jabber.org/protocol/muc#roomconfig", **values}
    for var, value in values.items():
        form.fields.append(aioxmpp.forms.Field(var=var, values=[value]))
    return form


async def join(
    client: aioxmpp.Client, jid: aioxmpp.JID, nick: str, **kwargs: object
) -> aioxmpp.muc.Room:
    room, joined = client.summon(aioxmpp.MUCClient).join(jid, nick, **kwargs)
    await asyncio.wait_for(joined, 10)
    return room


async def next_error(inbox: Inbox) -> aioxmpp.Message:
    """The next error message in `inbox` (the room's own groupchat messages, such as
    the subject after a join, come through the same dispatcher)."""
    while True:
        message = await inbox.next()
        if message.type_ == aioxmpp.MessageType.ERROR:
            return message


async def occupant(room: aioxmpp.muc.Room, nick: str) -> aioxmpp.muc.Occupant:
    """The occupant `nick` as `room` knows it, once its presence has come (a joiner's
    own join completes before the others have processed its presence)."""
    await wait_until(lambda: any(m.nick == nick for m in room.members))
    return next(m for m in room.members if m.nick == nick)


async def test_room_created_joined_and_messages_both_ways(
    server: RunningServer, users: tuple[str, ...]
) -> None:
    jid = room_jid("ax-lobby")
    async with clients(server, "mx-alice", "mx-bob") as (alice, bob):
        alice_room, codes = await create_room(alice, jid, "Alice")
        assert {201, 110} <= codes  # created, and this is us
        assert alice_room.me.affiliation == "owner" and alice_room.me.role == "moderator"
        joins = Emissions(alice_room.on_join)
        bob_room = await join(bob, jid, "Bob")
        (member,), _ = await joins.next()
        assert member.nick == "Bob"
        assert member.conversation_jid == jid.replace(resource="Bob")
        assert member.affiliation == "none" and member.role == "participant"
        assert {m.nick for m in bob_room.members} == {"Alice", "Bob"}

        bob_hears, alice_hears = Emissions(bob_room.on_message), Emissions(alice_room.on_message)
        msg = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
        msg.body[None] = "welcome, Bob"
        alice_room.send_message(msg)
        (message, sender, _source), _ = await bob_hears.next()
        assert text_of(message) == "welcome, Bob"
        assert message.from_ == jid.replace(resource="Alice") and sender.nick == "Alice"
        reply = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
        reply.body[None] = "thanks, Alice"
        bob_room.send_message(reply)
        got: list[tuple[str, str]] = []
        while len(got) < 2:  # Alice gets her own message back, then Bob's
            (message, sender, _source), _ = await alice_hears.next()
            got.append((sender.nick, text_of(message)))
        assert got == [("Alice", "welcome, Bob"), ("Bob", "thanks, Alice")]

        # tracking: the room reflects a message with its id (XEP-0045 §7.4), which
        # aioxmpp takes as delivered
        tracked = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
        tracked.body[None] = "did it arrive?"
        _, tracker = bob_room.send_message_tracked(tracked)
        delivered = Emissions(tracker.on_state_changed)
        while tracker.state != aioxmpp.tracking.MessageState.DELIVERED_TO_RECIPIENT:
            await delivered.next()
        assert tracker.response.id_ == tracked.id_
        assert tracker.response.from_ == jid.replace(resource="Bob")
        (message, sender, _source), _ = await alice_hears.next()
        assert (sender.nick, text_of(message)) == ("Bob", "did it arrive?")


async def test_nick_change_subject_and_leave(server: RunningServer, users: tuple[str, ...]) -> None:
    jid = room_jid("ax-talk")
    async with clients(server, "mx-alice", "mx-bob") as (alice, bob):
        alice_room, _ = await create_room(alice, jid, "Alice")
        bob_room = await join(bob, jid, "Bob")

        seen_by_alice = Emissions(alice_room.on_nick_changed)
        seen_by_bob = Emissions(bob_room.on_nick_changed)
        await bob_room.set_nick("Robert")
        (member, old, new), _ = await seen_by_alice.next()
        assert (member.nick, old, new) == ("Robert", "Bob", "Robert")
        (member, old, new), _ = await seen_by_bob.next()
        assert member is bob_room.me and (old, new) == ("Bob", "Robert")
        assert {m.nick for m in alice_room.members} == {"Alice", "Robert"}

        topics = Emissions(bob_room.on_topic_changed)
        await alice_room.set_topic({None: "plans for Friday"})
        (setter, topic), kwargs = await topics.next()
        assert setter.nick == "Alice"
        assert topic.any() == "plans for Friday" and kwargs["muc_nick"] == "Alice"
        assert bob_room.muc_subject.any() == "plans for Friday"
        assert bob_room.muc_subject_setter == "Alice"

        # a subject from a participant is refused (the default config: only moderators)
        inbox = Inbox(bob)
        subject = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT, to=jid)
        subject.subject[None] = "hijacked"
        await bob.send(subject)
        refused = await next_error(inbox)
        assert refused.from_ == jid
        assert refused.error.condition == aioxmpp.errors.ErrorCondition.FORBIDDEN
        assert bob_room.muc_subject.any() == "plans for Friday"

        leaves = Emissions(alice_room.on_leave)
        await asyncio.wait_for(bob_room.leave(), 10)
        assert not bob_room.muc_joined
        (member,), kwargs = await leaves.next()
        assert member.nick == "Robert"
        assert kwargs["muc_leave_mode"] == aioxmpp.muc.LeaveMode.NORMAL
        assert {m.nick for m in alice_room.members} == {"Alice"}


async def test_kick_and_ban_through_the_room(server: RunningServer, users: tuple[str, ...]) -> None:
    jid = room_jid("ax-strict")
    async with clients(server, "mx-alice", "mx-bob") as (alice, bob):
        alice_room, _ = await create_room(alice, jid, "Alice")
        muc = alice.summon(aioxmpp.MUCClient)

        bob_room = await join(bob, jid, "Bob")
        exits, leaves = Emissions(bob_room.on_exit), Emissions(alice_room.on_leave)
        bob_member = await occupant(alice_room, "Bob")
        assert bob_member.direct_jid.bare() == bob.local_jid.bare()  # moderators see it
        await alice_room.kick(bob_member, "calm down")
        _, kwargs = await exits.next()
        assert kwargs["muc_leave_mode"] == aioxmpp.muc.LeaveMode.KICKED
        assert kwargs["muc_reason"] == "calm down"
        (member,), kwargs = await leaves.next()
        assert member.nick == "Bob"
        assert kwargs["muc_leave_mode"] == aioxmpp.muc.LeaveMode.KICKED

        # a kicked user may come back; a banned one may not
        bob_room = await join(bob, jid, "Bob")
        exits = Emissions(bob_room.on_exit)
        bob_member = await occupant(alice_room, "Bob")
        await alice_room.ban(bob_member, "enough")
        _, kwargs = await exits.next()
        assert kwargs["muc_leave_mode"] == aioxmpp.muc.LeaveMode.BANNED
        assert await muc.get_affiliated(jid, "outcast") == [bob.local_jid.bare()]
        with pytest.raises(aioxmpp.errors.XMPPAuthError) as refused:
            await join(bob, jid, "Bob")
        assert refused.value.condition == aioxmpp.errors.ErrorCondition.FORBIDDEN

        # and a participant may not kick the owner
        await muc.set_affiliation(jid, bob.local_jid.bare(), "none")
        bob_room = await join(bob, jid, "Bob")
        alice_member = await occupant(bob_room, "Alice")
        with pytest.raises(aioxmpp.errors.XMPPAuthError):
            await bob_room.kick(alice_member, "coup")
        await occupant(alice_room, "Bob")
        assert {m.nick for m in alice_room.members} == {"Alice", "Bob"}


async def test_members_only_room_entered_after_an_invitation(
    server: RunningServer, users: tuple[str, ...]
) -> None:
    jid = room_jid("ax-private")
    async with clients(server, "mx-alice", "mx-bob", "mx-carol") as (alice, bob, carol):
        alice_room, _ = await create_room(alice, jid, "Alice", members_only=True)
        muc = alice.summon(aioxmpp.MUCClient)
        shown = {f.var: f.values for f in (await muc.get_room_config(jid)).fields}
        assert shown["muc#roomconfig_membersonly"] == ["1"]

        with pytest.raises(aioxmpp.errors.XMPPAuthError) as refused:
            await join(carol, jid, "Carol")
        assert refused.value.condition == aioxmpp.errors.ErrorCondition.REGISTRATION_REQUIRED

        # a mediated invitation (XEP-0045 §7.8.2) comes from the room, and makes Carol a member
        invitations = Emissions(carol.summon(aioxmpp.MUCClient).on_muc_invitation)
        token, _ = await alice_room.invite(
            carol.local_jid, "come in", mode=aioxmpp.im.InviteMode.MEDIATED
        )
        await token
        (stanza, address, inviter, mode), kwargs = await invitations.next()
        assert mode == aioxmpp.im.InviteMode.MEDIATED
        assert address == jid and stanza.from_.bare() == jid
        assert inviter.bare() == alice.local_jid.bare()
        assert kwargs["reason"] == "come in"
        assert carol.local_jid.bare() in await muc.get_affiliated(jid, "member")
        carol_room = await join(carol, jid, "Carol")
        assert carol_room.me.affiliation == "member"

        # a direct invitation (XEP-0249) goes from client to client
        invitations = Emissions(bob.summon(aioxmpp.MUCClient).on_muc_invitation)
        token, _ = await alice_room.invite(bob.local_jid, "you too")
        await token
        (stanza, address, inviter, mode), kwargs = await invitations.next()
        assert mode == aioxmpp.im.InviteMode.DIRECT
        assert address == jid and inviter.bare() == alice.local_jid.bare()
        assert kwargs["reason"] == "you too"
        # ... and gives no membership: Bob is still kept out
        with pytest.raises(aioxmpp.errors.XMPPAuthError) as refused:
            await join(bob, jid, "Bob")
        assert refused.value.condition == aioxmpp.errors.ErrorCondition.REGISTRATION_REQUIRED


async def test_history_on_join(server: RunningServer, users: tuple[str, ...]) -> None:
    jid = room_jid("ax-history")
    async with clients(server, "mx-alice") as (alice,):
        alice_room, _ = await create_room(alice, jid, "Alice")
        echoes = Emissions(alice_room.on_message)
        for n in range(4):
            msg = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
            msg.body[None] = f"line {n}"
            alice_room.send_message(msg)
            await echoes.next()  # in order, and in the room's history
        async with clients(server, "mx-bob", "mx-carol") as (bob, carol):
            # Bob asks for the last two; Carol for none
            bob_room, joined = bob.summon(aioxmpp.MUCClient).join(
                jid, "Bob", history=muc_xso.History(maxstanzas=2)
            )
            bob_hears = Emissions(bob_room.on_message)
            await asyncio.wait_for(joined, 10)
            replayed = [await bob_hears.next() for _ in range(2)]
            assert [text_of(message) for (message, _, _), _ in replayed] == ["line 2", "line 3"]
            for (message, sender, _), _ in replayed:
                assert sender.nick == "Alice"
                assert message.xep0203_delay and message.xep0203_delay[0].from_ == jid
            assert await bob_hears.silent()

            carol_room, joined = carol.summon(aioxmpp.MUCClient).join(
                jid, "Carol", history=muc_xso.History(maxstanzas=0)
            )
            carol_hears = Emissions(carol_room.on_message)
            await asyncio.wait_for(joined, 10)
            assert await carol_hears.silent()


async def test_configuration_form_template(server: RunningServer, users: tuple[str, ...]) -> None:
    """An owner changes the room through aioxmpp's `ConfigurationForm` template, the
    way its documentation shows, and reads the new values back."""
    jid = room_jid("ax-configured")
    async with clients(server, "mx-alice") as (alice,):
        await create_room(alice, jid, "Alice")
        muc = alice.summon(aioxmpp.MUCClient)
        form = aioxmpp.muc.ConfigurationForm.from_xso(await muc.get_room_config(jid))
        form.roomname.value = "Configured"
        form.moderatedroom.value = True
        await muc.set_room_config(jid, form.render_reply())
        again = aioxmpp.muc.ConfigurationForm.from_xso(await muc.get_room_config(jid))
        assert again.roomname.value == "Configured"
        assert again.moderatedroom.value is True


async def test_room_info_through_disco(server: RunningServer, users: tuple[str, ...]) -> None:
    """What a client shows before joining: the room's disco#info, identity,
    features and the muc#roominfo form (XEP-0045 §6.4), read through aioxmpp's
    `InfoForm` template."""
    jid = room_jid("ax-info")
    async with clients(server, "mx-alice", "mx-carol") as (alice, carol):
        room, _ = await create_room(alice, jid, "Alice")
        await alice.summon(aioxmpp.MUCClient).set_room_config(
            jid,
            submission(
                {"muc#roomconfig_roomname": "Info desk", "muc#roomconfig_roomdesc": "Ask here"}
            ),
        )
        await room.set_topic({None: "open 9-5"})
        await wait_until(lambda: room.muc_subject is not None and bool(room.muc_subject))

        disco = carol.summon(aioxmpp.DiscoClient)
        info = await disco.query_info(jid, require_fresh=True)
        assert [(i.category, i.type_, i.name) for i in info.identities] == [
            ("conference", "text", "Info desk")
        ]
        assert {
            "http://jabber.org/protocol/muc",
            "muc_public",
            "muc_open",
            "muc_unmoderated",
            "muc_temporary",
            "muc_semianonymous",
            "muc_unsecured",
        } <= info.features
        (form,) = [f for f in info.exts if f.get_form_type() == aioxmpp.muc.InfoForm.FORM_TYPE]
        roominfo = aioxmpp.muc.InfoForm.from_xso(form)
        assert roominfo.description.value == "Ask here"
        assert roominfo.subject.value == "open 9-5"
        assert roominfo.occupants.value == "1"

        # and the service lists it
        items = await disco.query_items(jid.replace(localpart=None), require_fresh=True)
        assert (jid, "Info desk") in {(i.jid, i.name) for i in items.items}


async def test_voice_request_in_a_moderated_room(
    server: RunningServer, users: tuple[str, ...]
) -> None:
    """A visitor asks for voice (XEP-0045 §7.13), the moderator approves it through
    the approval form aioxmpp hands over (§8.6), and the visitor may speak."""
    jid = room_jid("ax-moderated")
    async with clients(server, "mx-alice", "mx-bob") as (alice, bob):
        alice_room, _ = await create_room(alice, jid, "Alice")
        await alice.summon(aioxmpp.MUCClient).set_room_config(
            jid, submission({"muc#roomconfig_moderatedroom": "1"})
        )
        bob_room = await join(bob, jid, "Bob")
        assert bob_room.me.role == "visitor"
        inbox = Inbox(bob)
        muted = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT, to=jid)
        muted.body[None] = "can anyone hear me?"
        await bob.send(muted)
        refused = await next_error(inbox)
        assert refused.error.condition == aioxmpp.errors.ErrorCondition.FORBIDDEN

        requests = Emissions(alice_room.on_muc_role_request)
        roles = Emissions(alice_room.on_muc_role_changed)
        await bob_room.muc_request_voice()
        (form, decision), _ = await requests.next()
        assert form.roomnick.value == "Bob" and form.role.value == "participant"
        assert form.jid.value.bare() == bob.local_jid.bare()
        form.request_allow.value = True
        decision.set_result(form.render_reply())
        (presence, who), _ = await roles.next()
        assert presence.from_ == jid.replace(resource="Bob")
        assert who.nick == "Bob" and who.role == "participant"

        hears = Emissions(alice_room.on_message)
        spoken = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
        spoken.body[None] = "thank you"
        bob_room.send_message(spoken)
        (message, sender, _), _ = await hears.next()
        assert (sender.nick, text_of(message)) == ("Bob", "thank you")
