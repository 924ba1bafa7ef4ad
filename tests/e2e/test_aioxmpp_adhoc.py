"""XEP-0050 between two aioxmpp clients through chatgate: one offers commands
with aioxmpp's `AdHocServer`, the other lists, inspects and runs them with
`AdHocClient`; the server routes the disco and command IQs between full JIDs
and passes the errors back. (The server's own commands, XEP-0133 included, are
in test_adhoc_aioxmpp.py.)"""

from __future__ import annotations

import aioxmpp
import aioxmpp.adhoc
import aioxmpp.adhoc.xso as adhoc_xso
import aioxmpp.structs
import pytest

from tests.e2e.aioxmpp_support import add_users, aioxmpp_client
from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

PASSWORD = "aioxmpp-adhoc-pass"


@pytest.fixture(scope="module", autouse=True)
def accounts(server: RunningServer) -> None:
    add_users(server, ("ah-bot", "ah-user"), PASSWORD)


async def test_commands_a_client_offers_reach_another_client(server: RunningServer) -> None:
    asked_by: list[aioxmpp.JID] = []

    async def uptime(stanza: aioxmpp.IQ) -> adhoc_xso.Command:
        asked_by.append(stanza.from_)
        note = adhoc_xso.Note(adhoc_xso.NoteType.INFO, "up 3 days")
        return adhoc_xso.Command("uptime", status=adhoc_xso.CommandStatus.COMPLETED, notes=[note])

    async with (
        aioxmpp_client(server, "ah-bot@localhost/bot", PASSWORD) as bot,
        aioxmpp_client(server, "ah-user@localhost/desk", PASSWORD) as user,
    ):
        en = aioxmpp.structs.LanguageTag.fromstr("en")
        de = aioxmpp.structs.LanguageTag.fromstr("de")
        bot.summon(aioxmpp.adhoc.AdHocServer).register_stateless_command(
            "uptime", {en: "Uptime", de: "Laufzeit"}, uptime, features={"urn:example:uptime"}
        )
        adhoc = user.summon(aioxmpp.adhoc.AdHocClient)
        assert await adhoc.supports_commands(bot.local_jid)

        (item,) = await adhoc.get_commands(bot.local_jid)
        assert (item.node, item.jid) == ("uptime", bot.local_jid)
        info = await adhoc.get_command_info(bot.local_jid, "uptime")
        assert "urn:example:uptime" in info.features
        assert {(i.category, i.type_, str(i.lang), i.name) for i in info.identities} == {
            ("automation", "command-node", "en", "Uptime"),
            ("automation", "command-node", "de", "Laufzeit"),
        }

        async with await adhoc.execute(bot.local_jid, "uptime") as session:
            assert session.status == adhoc_xso.CommandStatus.COMPLETED
            assert [n.body for n in session.response.notes] == ["up 3 days"]
            assert session.first_payload is None
        assert asked_by == [user.local_jid]  # the server stamped the real sender

        with pytest.raises(aioxmpp.errors.XMPPCancelError) as unknown:
            await adhoc.execute(bot.local_jid, "reboot")
        assert unknown.value.condition == aioxmpp.errors.ErrorCondition.ITEM_NOT_FOUND


async def test_commands_only_for_some(server: RunningServer) -> None:
    """A command the offering client hides from a peer is neither listed for it nor
    run: the refusal comes back through the server as <forbidden/>."""

    async def secret(stanza: aioxmpp.IQ) -> adhoc_xso.Command:
        raise AssertionError("must not run")

    async with (
        aioxmpp_client(server, "ah-bot@localhost/bot2", PASSWORD) as bot,
        aioxmpp_client(server, "ah-user@localhost/desk2", PASSWORD) as user,
    ):
        bot.summon(aioxmpp.adhoc.AdHocServer).register_stateless_command(
            "secret",
            "Secret",
            secret,
            is_allowed=lambda peer: peer.bare() == bot.local_jid.bare(),
        )
        adhoc = user.summon(aioxmpp.adhoc.AdHocClient)
        assert await adhoc.get_commands(bot.local_jid) == []
        with pytest.raises(aioxmpp.errors.XMPPError) as refused:  # aioxmpp's: type cancel
            await adhoc.execute(bot.local_jid, "secret")
        assert refused.value.condition == aioxmpp.errors.ErrorCondition.FORBIDDEN

        # the server's own commands are another entity's: the domain's
        server_nodes = {i.node for i in await adhoc.get_commands(aioxmpp.JID.fromstr("localhost"))}
        assert "ping" in server_nodes and "secret" not in server_nodes
