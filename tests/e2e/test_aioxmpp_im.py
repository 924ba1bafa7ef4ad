"""Instant messaging with aioxmpp as the client: login, disco, a message each way."""

from __future__ import annotations

import aioxmpp
import aioxmpp.disco

from tests.e2e.aioxmpp_support import Inbox, aioxmpp_client, text_of
from tests.e2e.conftest import RunningServer

PASSWORD = "aioxmpp-pass-1"


async def test_aioxmpp_logs_in_discovers_the_server_and_chats(server: RunningServer) -> None:
    server.add_user("ax-alice", PASSWORD)
    server.add_user("ax-bob", PASSWORD)
    async with (
        aioxmpp_client(server, "ax-alice@localhost", PASSWORD) as alice,
        aioxmpp_client(server, "ax-bob@localhost/desk", PASSWORD) as bob,
    ):
        assert str(alice.local_jid.bare()) == "ax-alice@localhost"
        assert str(bob.local_jid) == "ax-bob@localhost/desk"
        info = await alice.summon(aioxmpp.DiscoClient).query_info(aioxmpp.JID.fromstr("localhost"))
        assert "jabber:iq:roster" in info.features
        inbox = Inbox(bob)
        msg = aioxmpp.Message(type_=aioxmpp.MessageType.CHAT, to=bob.local_jid)
        msg.body[None] = "hello from aioxmpp"
        await alice.send(msg)
        got = await inbox.next()
        assert text_of(got) == "hello from aioxmpp"
        assert got.from_.bare() == alice.local_jid.bare()
