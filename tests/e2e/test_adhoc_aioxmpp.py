"""XEP-0050/XEP-0133 against the real `chatgate serve` with aioxmpp 0.13's
`AdHocClient` (a second independent client library): listing, command info,
the `ping` command, and an administrator's add-user through a client session."""

from __future__ import annotations

from collections.abc import Iterator

import aioxmpp
import aioxmpp.adhoc
import aioxmpp.adhoc.xso as adhoc_xso
import aioxmpp.forms
import pytest

from .aioxmpp_support import aioxmpp_client
from .conftest import RunningServer, start_server

pytestmark = pytest.mark.e2e

ADMIN = "http://jabber.org/protocol/admin"
SERVER = aioxmpp.JID.fromstr("localhost")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    extra = '\n[modules.adhoc]\nadmins = ["ops@localhost"]\n'
    srv = start_server(tmp_path_factory.mktemp("adhoc-aioxmpp"), extra)
    srv.add_user("ops", "ops-password")
    srv.add_user("bob", "bob-password")
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


async def test_listing_info_and_ping(server: RunningServer) -> None:
    async with aioxmpp_client(server, "bob@localhost/a", "bob-password") as bob:
        adhoc = bob.summon(aioxmpp.adhoc.AdHocClient)
        assert await adhoc.supports_commands(SERVER)
        nodes = {item.node for item in await adhoc.get_commands(SERVER)}
        assert {"ping", "urn:chatgate:commands#my-sessions"} <= nodes
        assert not any(node.startswith(ADMIN) for node in nodes)
        info = await adhoc.get_command_info(SERVER, "ping")
        assert "http://jabber.org/protocol/commands" in info.features
        session = await adhoc.execute(SERVER, "ping")
        assert session.status == adhoc_xso.CommandStatus.COMPLETED
        note = session.response.notes[0]
        assert note.type_ == adhoc_xso.NoteType.INFO and note.body.startswith("Pong\n")
        await session.close()


async def test_admin_add_user_through_a_session(server: RunningServer) -> None:
    async with aioxmpp_client(server, "ops@localhost/a", "ops-password") as ops:
        adhoc = ops.summon(aioxmpp.adhoc.AdHocClient)
        nodes = {item.node for item in await adhoc.get_commands(SERVER)}
        assert f"{ADMIN}#add-user" in nodes
        session = await adhoc.execute(SERVER, f"{ADMIN}#add-user")
        assert session.status == adhoc_xso.CommandStatus.EXECUTING
        assert adhoc_xso.ActionType.COMPLETE in session.allowed_actions
        shown = session.first_payload
        assert {f.var for f in shown.fields} >= {"accountjid", "password", "password-verify"}
        form = aioxmpp.forms.Data(aioxmpp.forms.DataType.SUBMIT)
        for var, value in (
            ("FORM_TYPE", ADMIN),
            ("accountjid", "carol@localhost"),
            ("password", "carol-password"),
            ("password-verify", "carol-password"),
        ):
            form.fields.append(aioxmpp.forms.Field(var=var, values=[value]))
        await session.proceed(action=adhoc_xso.ActionType.COMPLETE, payload=form)
        assert session.status == adhoc_xso.CommandStatus.COMPLETED
        assert session.response.notes[0].body == "created carol@localhost"
    async with aioxmpp_client(server, "carol@localhost/x", "carol-password") as carol:
        assert str(carol.local_jid.bare()) == "carol@localhost"


async def test_non_admin_forbidden(server: RunningServer) -> None:
    async with aioxmpp_client(server, "bob@localhost/b", "bob-password") as bob:
        adhoc = bob.summon(aioxmpp.adhoc.AdHocClient)
        with pytest.raises(aioxmpp.errors.XMPPAuthError) as refused:
            await adhoc.execute(SERVER, f"{ADMIN}#announce")
        assert refused.value.condition == aioxmpp.errors.ErrorCondition.FORBIDDEN
