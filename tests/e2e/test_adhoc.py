"""XEP-0050 ad-hoc commands and XEP-0133 administration against the real
`chatgate serve`, with slixmpp's xep_0050/xep_0133 plugins as the client: an
administrator adds a user who then logs in, a non-administrator is refused,
an announcement reaches the online users, a session is ended."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from slixmpp.exceptions import IqError

from .conftest import Client, RunningServer, connect, logged_in, start_server

pytestmark = pytest.mark.e2e

ADMIN = "http://jabber.org/protocol/admin"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    extra = '\n[modules.adhoc]\nadmins = ["ops@localhost"]\n'
    srv = start_server(tmp_path_factory.mktemp("adhoc"), extra)
    srv.add_user("ops", "ops-password")
    srv.add_user("bob", "bob-password")
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


def plugins(client: Client) -> None:
    for name in ("xep_0004", "xep_0050", "xep_0133"):
        client.register_plugin(name)


async def submit(client: Client, name: str, fields: dict[str, object]) -> object:
    """Run admin command `name` as slixmpp's users do: execute, fill the form the
    server sent, complete; returns the completing result."""
    adhoc = client.plugin["xep_0050"]
    node = f"{ADMIN}#{name}"
    started = await adhoc.send_command("localhost", node, timeout=10)
    command = started["command"]
    assert command["status"] == "executing"
    form = command["form"]
    assert form["type"] == "form"
    answer = client.plugin["xep_0004"].make_form(ftype="submit")
    answer.add_field(var="FORM_TYPE", ftype="hidden", value=ADMIN)
    for var, value in fields.items():
        assert var in {f["var"] for f in form["fields"]}, var
        answer.add_field(var=var, value=value)
    return await adhoc.send_command(
        "localhost",
        node,
        action="complete",
        sessionid=command["sessionid"],
        payload=answer,
        timeout=10,
    )


async def test_admin_adds_a_user_who_then_logs_in(server: RunningServer) -> None:
    async with logged_in(server, "ops@localhost/admin", "ops-password") as root:
        plugins(root)
        items = await root.plugin["xep_0133"].get_commands(timeout=10)
        nodes = {item[1] for item in items["disco_items"]["items"]}
        assert f"{ADMIN}#add-user" in nodes and f"{ADMIN}#announce" in nodes
        done = await submit(
            root,
            "add-user",
            {
                "accountjid": "newbie@localhost",
                "password": "newbie-password",
                "password-verify": "newbie-password",
            },
        )
        assert done["command"]["status"] == "completed"
        assert done["command"]["notes"] == [("info", "created newbie@localhost")]
    async with logged_in(server, "newbie@localhost/first", "newbie-password") as newbie:
        assert newbie.boundjid.bare == "newbie@localhost"


async def test_non_admin_sees_no_admin_command_and_is_forbidden(server: RunningServer) -> None:
    async with logged_in(server, "bob@localhost/x", "bob-password") as bob:
        plugins(bob)
        items = await bob.plugin["xep_0050"].get_commands("localhost", timeout=10)
        nodes = {item[1] for item in items["disco_items"]["items"]}
        assert not any(node.startswith(ADMIN) for node in nodes)
        with pytest.raises(IqError) as refused:
            await bob.plugin["xep_0050"].send_command(
                "localhost", f"{ADMIN}#delete-user", timeout=10
            )
        assert refused.value.condition == "forbidden"


async def test_announce_reaches_online_users(server: RunningServer) -> None:
    async with (
        logged_in(server, "ops@localhost/ann", "ops-password") as root,
        logged_in(server, "bob@localhost/ann", "bob-password") as bob,
    ):
        plugins(root)
        done = await submit(
            root, "announce", {"subject": "Heads up", "announcement": "Restart at noon"}
        )
        assert done["command"]["notes"][0][0] == "info"
        message = await bob.next_message()
        assert message["type"] == "headline"
        assert message["from"] == "localhost"
        assert message["body"] == "Restart at noon"
        assert message["subject"] == "Heads up"


async def test_end_user_session_and_counts(server: RunningServer) -> None:
    async with logged_in(server, "ops@localhost/end", "ops-password") as root:
        plugins(root)
        bob = await connect(server, "bob@localhost/victim", "bob-password")
        gone = asyncio.get_running_loop().create_future()
        bob.add_event_handler("disconnected", lambda _e: gone.done() or gone.set_result(True))
        count = await root.plugin["xep_0050"].send_command(
            "localhost", f"{ADMIN}#get-online-users-num", timeout=10
        )
        assert count["command"]["form"]["values"]["onlineusersnum"] == "2"
        done = await submit(root, "end-user-session", {"accountjids": ["bob@localhost/victim"]})
        assert done["command"]["notes"] == [("info", "ended bob@localhost/victim")]
        assert await asyncio.wait_for(gone, 10)
        registered = await root.plugin["xep_0050"].send_command(
            "localhost", f"{ADMIN}#get-registered-users-num", timeout=10
        )
        assert int(registered["command"]["form"]["values"]["registeredusersnum"]) >= 2
