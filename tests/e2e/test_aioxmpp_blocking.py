"""XEP-0191 blocking with aioxmpp 0.13's `BlockingClient`: block, the list read
back and pushed to the account's other session, messages refused both ways while
blocked (and nothing delivered), unblock, unblock all."""

from __future__ import annotations

import asyncio

import aioxmpp
import aioxmpp.blocking
import aioxmpp.xso
import pytest

from tests.e2e.aioxmpp_support import (
    Emissions,
    Inbox,
    add_users,
    aioxmpp_client,
    aioxmpp_client_with,
    text_of,
)
from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

PASSWORD = "aioxmpp-blocking-pass"
SERVICES = (aioxmpp.RosterClient, aioxmpp.BlockingClient)


@aioxmpp.stanza.Error.as_application_condition
class Blocked(aioxmpp.xso.XSO):
    """XEP-0191 §3.5's application condition on an error for a blocked JID."""

    TAG = ("urn:xmpp:blocking:errors", "blocked")


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    add_users(server, ("bx-alice", "bx-bob", "bx-carol"), PASSWORD)


def chat(to: aioxmpp.JID, text: str) -> aioxmpp.Message:
    msg = aioxmpp.Message(type_=aioxmpp.MessageType.CHAT, to=to)
    msg.body[None] = text
    return msg


def jid(text: str) -> aioxmpp.JID:
    return aioxmpp.JID.fromstr(text)


async def test_block_list_unblock_and_what_gets_through(server: RunningServer) -> None:
    bob_jid, carol_jid = jid("bx-bob@localhost"), jid("bx-carol@localhost")
    async with (
        aioxmpp_client_with(server, "bx-alice@localhost/one", PASSWORD, SERVICES) as alice,
        aioxmpp_client_with(server, "bx-alice@localhost/two", PASSWORD, SERVICES) as alice2,
        aioxmpp_client(server, "bx-bob@localhost/b", PASSWORD) as bob,
    ):
        blocking = alice.summon(aioxmpp.BlockingClient)
        assert blocking.blocklist == frozenset()
        alice_inbox, bob_inbox = Inbox(alice), Inbox(bob)
        await bob.send(chat(alice.local_jid, "before"))
        assert text_of(await alice_inbox.next()) == "before"

        pushed_here = Emissions(blocking.on_jids_blocked)
        pushed_there = Emissions(alice2.summon(aioxmpp.BlockingClient).on_jids_blocked)
        await blocking.block_jids([bob_jid])
        assert (await pushed_here.next())[0] == (frozenset({bob_jid}),)
        assert (await pushed_there.next())[0] == (frozenset({bob_jid}),)
        assert blocking.blocklist == alice2.summon(aioxmpp.BlockingClient).blocklist == {bob_jid}

        # from the blocked contact: refused, the user looks offline (§3.3), nothing arrives
        await bob.send(chat(alice.local_jid, "are you there?"))
        bounced = await bob_inbox.next()
        assert bounced.type_ == aioxmpp.MessageType.ERROR
        assert bounced.error.condition == aioxmpp.errors.ErrorCondition.SERVICE_UNAVAILABLE
        # to the blocked contact: not-acceptable with <blocked/> (§3.5), nothing arrives
        await alice.send(chat(bob.local_jid, "hello?"))
        refused = await alice_inbox.next()
        assert refused.type_ == aioxmpp.MessageType.ERROR
        assert refused.error.condition == aioxmpp.errors.ErrorCondition.NOT_ACCEPTABLE
        assert isinstance(refused.error.application_condition, Blocked)
        await asyncio.sleep(0.3)  # what would have been wrongly delivered has come by now
        assert alice_inbox.queue.empty() and bob_inbox.queue.empty()

        unpushed = Emissions(alice2.summon(aioxmpp.BlockingClient).on_jids_unblocked)
        await blocking.unblock_jids([bob_jid])
        assert (await unpushed.next())[0] == (frozenset({bob_jid}),)
        assert blocking.blocklist == frozenset()
        await bob.send(chat(alice.local_jid, "after"))
        got = await alice_inbox.next()
        assert text_of(got) == "after" and got.from_ == bob.local_jid

        several = {bob_jid, carol_jid, jid("spam.example"), jid("eve@remote.example/phone")}
        await blocking.block_jids(list(several))
        assert (await pushed_here.next())[0] == (frozenset(several),)
        assert blocking.blocklist == several
        await blocking.unblock_all()
        await unpushed.next()
        assert alice2.summon(aioxmpp.BlockingClient).blocklist == frozenset()

    # the list a later session reads is the stored one
    async with aioxmpp_client_with(server, "bx-alice@localhost/three", PASSWORD, SERVICES) as alice:
        blocking = alice.summon(aioxmpp.BlockingClient)
        assert blocking.blocklist == frozenset()
        await blocking.block_jids([carol_jid])
    async with aioxmpp_client_with(server, "bx-alice@localhost/four", PASSWORD, SERVICES) as alice:
        assert alice.summon(aioxmpp.BlockingClient).blocklist == {carol_jid}


async def test_pushes_reach_a_session_that_fetched_only_the_blocklist(
    server: RunningServer,
) -> None:
    only = (aioxmpp.BlockingClient,)
    async with (
        aioxmpp_client_with(server, "bx-carol@localhost/one", PASSWORD, only) as carol,
        aioxmpp_client_with(server, "bx-carol@localhost/two", PASSWORD, only) as carol2,
    ):
        blocking = carol.summon(aioxmpp.BlockingClient)
        assert blocking.blocklist == frozenset()  # fetched at login
        pushed = Emissions(carol2.summon(aioxmpp.BlockingClient).on_jids_blocked)
        await blocking.block_jids([jid("bx-bob@localhost")])
        assert (await pushed.next(3))[0] == (frozenset({jid("bx-bob@localhost")}),)
        assert blocking.blocklist == {jid("bx-bob@localhost")}
