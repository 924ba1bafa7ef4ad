"""XEP-0050 ad-hoc commands and XEP-0133 administration through the real
connection driver and modules (`wire.py`): discovery, every action and error
of the exchange, and each administration command's effect on accounts and
sessions."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.modules.adhoc.runner import CommandRunner

from ..wire import Server, Wire

CLIENT = "{jabber:client}"
CMD = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
DATA = "jabber:x:data"
ITEMS = "http://jabber.org/protocol/disco#items"
INFO = "http://jabber.org/protocol/disco#info"


@contextlib.asynccontextmanager
async def server(tmp: Path, **options: object) -> AsyncIterator[Server]:
    adhoc = {"admins": ["root@localhost"], **options}
    srv = await Server.start(tmp, {"adhoc": adhoc})
    for name in ("root", "bob", "carol"):
        await srv.add_user(name, f"{name}-pw")
    try:
        yield srv
    finally:
        await srv.stop()


async def login(srv: Server, user: str, resource: str = "r") -> Wire:
    wire = srv.connect()
    bound = await wire.login_plain(user, f"{user}-pw", resource)
    assert "<jid>" in bound, bound
    return wire


async def login_as(srv: Server, user: str, password: str) -> Wire:
    wire = srv.connect()
    bound = await wire.login_plain(user, password)
    assert "<jid>" in bound, bound
    return wire


def parse(out: str) -> list[ET.Element]:
    return list(ET.fromstring(f"<r xmlns='jabber:client'>{out}</r>"))


async def iq(wire: Wire, payload: str, to: str = "localhost", ident: str = "q") -> ET.Element:
    out = await wire.send(f"<iq type='set' id='{ident}' to='{to}'>{payload}</iq>")
    found = [s for s in parse(out) if s.tag == CLIENT + "iq" and s.get("id") == ident]
    assert len(found) == 1, out
    return found[0]


async def get(wire: Wire, payload: str, to: str = "localhost") -> ET.Element:
    out = await wire.send(f"<iq type='get' id='g' to='{to}'>{payload}</iq>")
    found = [s for s in parse(out) if s.tag == CLIENT + "iq" and s.get("id") == "g"]
    assert len(found) == 1, out
    return found[0]


def command(
    node: str, action: str | None = None, sessionid: str | None = None, form: str = ""
) -> str:
    attrs = f" node='{node}'"
    if action:
        attrs += f" action='{action}'"
    if sessionid:
        attrs += f" sessionid='{sessionid}'"
    return f"<command xmlns='{CMD}'{attrs}>{form}</command>"


def submit(fields: dict[str, list[str]], form_type: str = ADMIN) -> str:
    body = f"<field var='FORM_TYPE'><value>{form_type}</value></field>"
    for var, values in fields.items():
        body += f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values)
        body += "</field>"
    return f"<x xmlns='{DATA}' type='submit'>{body}</x>"


def error_of(reply: ET.Element) -> tuple[str, str | None]:
    """(RFC 6120 condition, XEP-0050 specific condition) of an error reply."""
    assert reply.get("type") == "error", ET.tostring(reply)
    error = reply.find(CLIENT + "error")
    assert error is not None
    condition = next(c.tag.split("}")[1] for c in error if c.tag.startswith("{" + STANZAS))
    specific = next((c.tag.split("}")[1] for c in error if c.tag.startswith("{" + CMD)), None)
    return condition, specific


def cmd_of(reply: ET.Element) -> ET.Element:
    assert reply.get("type") == "result", ET.tostring(reply)
    found = reply.find(f"{{{CMD}}}command")
    assert found is not None
    return found


def note(reply: ET.Element) -> tuple[str | None, str]:
    el = cmd_of(reply).find(f"{{{CMD}}}note")
    assert el is not None, ET.tostring(reply)
    return el.get("type"), el.text or ""


def result_value(reply: ET.Element, var: str) -> list[str]:
    form = cmd_of(reply).find(f"{{{DATA}}}x")
    assert form is not None and form.get("type") == "result"
    for field in form.findall(f"{{{DATA}}}field"):
        if field.get("var") == var:
            return [v.text or "" for v in field.findall(f"{{{DATA}}}value")]
    raise AssertionError(f"no field {var}")


async def run(wire: Wire, name: str, fields: dict[str, list[str]]) -> ET.Element:
    """Execute admin command `name`, then complete it with `fields`."""
    node = f"{ADMIN}#{name}"
    started = cmd_of(await iq(wire, command(node)))
    assert started.get("status") == "executing"
    return await iq(wire, command(node, "complete", started.get("sessionid"), submit(fields)))


# ------------------------------------------------------------ discovery


async def test_commands_listed_by_who_may_run_them(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root, bob = await login(srv, "root"), await login(srv, "bob")
        query = f"<query xmlns='{ITEMS}' node='{CMD}'/>"
        admin_nodes = {i.get("node") for i in (await get(root, query))[0]}
        user_nodes = {i.get("node") for i in (await get(bob, query))[0]}
        assert f"{ADMIN}#add-user" in admin_nodes
        assert f"{ADMIN}#announce" in admin_nodes
        assert not any(n.startswith(ADMIN) for n in user_nodes)
        assert "urn:chatgate:commands#my-sessions" in user_nodes
        info = await get(root, f"<query xmlns='{INFO}'/>")
        assert CMD in {f.get("var") for f in info[0].findall(f"{{{INFO}}}feature")}


async def test_command_node_info_and_forbidden_for_others(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root, bob = await login(srv, "root"), await login(srv, "bob")
        query = f"<query xmlns='{INFO}' node='{ADMIN}#add-user'/>"
        answer = (await get(root, query))[0]
        assert answer.get("node") == f"{ADMIN}#add-user"
        identity = answer.find(f"{{{INFO}}}identity")
        assert identity is not None and identity.get("type") == "command-node"
        assert error_of(await get(bob, query)) == ("forbidden", None)
        unknown = f"<query xmlns='{INFO}' node='urn:nowhere'/>"
        assert error_of(await get(bob, unknown)) == ("item-not-found", None)


async def test_non_admin_is_forbidden(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        bob = await login(srv, "bob")
        reply = await iq(bob, command(f"{ADMIN}#add-user"))
        assert error_of(reply) == ("forbidden", None)
        reply = await iq(bob, command(f"{ADMIN}#get-registered-users-num"))
        assert error_of(reply) == ("forbidden", None)


# ------------------------------------------------------------ administration


async def test_add_user_then_that_user_logs_in(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root = await login(srv, "root")
        reply = await run(
            root,
            "add-user",
            {
                "accountjid": ["dave@localhost"],
                "password": ["dave-password"],
                "password-verify": ["dave-password"],
            },
        )
        assert cmd_of(reply).get("status") == "completed"
        assert note(reply) == ("info", "created dave@localhost")
        await login_as(srv, "dave", "dave-password")
        again = await run(
            root,
            "add-user",
            {
                "accountjid": ["dave@localhost"],
                "password": ["x1-password"],
                "password-verify": ["x1-password"],
            },
        )
        assert note(again)[0] == "error"


async def test_add_user_refuses_mismatch_and_other_domain(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root = await login(srv, "root")
        fields = {"accountjid": ["erin@localhost"], "password": ["a"], "password-verify": ["b"]}
        assert note(await run(root, "add-user", fields)) == ("error", "the passwords do not match")
        fields = {"accountjid": ["erin@elsewhere"], "password": ["a"], "password-verify": ["a"]}
        assert "not an account of localhost" in note(await run(root, "add-user", fields))[1]
        assert not await srv.db.accounts.exists("erin", "localhost")


async def test_delete_user_ends_sessions_and_account(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root, carol = await login(srv, "root"), await login(srv, "carol")
        reply = await run(
            root, "delete-user", {"accountjids": ["carol@localhost", "zed@localhost"]}
        )
        kind, text = note(reply)
        assert kind == "error"  # zed does not exist
        assert "deleted carol@localhost" in text and "zed@localhost" in text
        assert not await srv.db.accounts.exists("carol", "localhost")
        await carol.settle()
        assert carol.closed


async def test_change_password_then_new_one_works(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root = await login(srv, "root")
        reply = await run(
            root,
            "change-user-password",
            {"accountjid": ["bob@localhost"], "password": ["bob-new-password"]},
        )
        assert note(reply)[0] == "info"
        wire = srv.connect()
        await wire.open()
        from ..wire import plain

        assert "<success" in await wire.send(plain("bob", "bob-new-password"))


async def test_end_user_session_bare_and_full(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root = await login(srv, "root")
        one, two = await login(srv, "bob", "one"), await login(srv, "bob", "two")
        reply = await run(root, "end-user-session", {"accountjids": ["bob@localhost/one"]})
        assert note(reply) == ("info", "ended bob@localhost/one")
        await one.settle()
        assert one.closed and not two.closed
        reply = await run(root, "end-user-session", {"accountjids": ["bob@localhost"]})
        assert note(reply)[0] == "info"
        await two.settle()
        assert two.closed
        assert "policy-violation" in two.transport.out.decode()
        reply = await run(root, "end-user-session", {"accountjids": ["bob@localhost"]})
        assert note(reply)[0] == "error"  # nobody left


async def test_end_user_session_of_a_full_jid_on_another_node(tmp_path: Path) -> None:
    """A full JID bound on another node of a cluster is in the router's table as a
    stand-in (`cluster/directory.py`'s RemoteSession), whose close is forwarded to
    its node: the command ends it there; an unknown resource is still an error."""

    class StandIn:
        closed: list[tuple[str, str]] = []

        def close(self, condition: object, text: str = "") -> None:
            self.closed.append((str(getattr(condition, "value", condition)), text))

    async with server(tmp_path) as srv:
        root = await login(srv, "root")
        await login(srv, "bob", "here")
        far = StandIn()
        srv.ctx.router.directory.table["bob@localhost"]["far"] = far  # type: ignore[index]
        try:
            reply = await run(root, "end-user-session", {"accountjids": ["bob@localhost/far"]})
            assert note(reply) == ("info", "ended bob@localhost/far")
            [(condition, text)] = far.closed
            assert condition == "policy-violation" and text  # the reason goes with it
            reply = await run(root, "end-user-session", {"accountjids": ["bob@localhost/none"]})
            assert note(reply)[0] == "error"
        finally:
            del srv.ctx.router.directory.table["bob@localhost"]["far"]


async def test_user_counts(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root = await login(srv, "root")
        await login(srv, "bob", "a")
        await login(srv, "bob", "b")
        reply = await iq(root, command(f"{ADMIN}#get-registered-users-num"))
        assert cmd_of(reply).get("status") == "completed"
        assert result_value(reply, "registeredusersnum") == ["3"]
        reply = await iq(root, command(f"{ADMIN}#get-online-users-num"))
        assert result_value(reply, "onlineusersnum") == ["2"]  # root and bob
        reply = await iq(root, command(f"{ADMIN}#get-online-users-list"))
        assert result_value(reply, "onlineuserjids") == ["bob@localhost", "root@localhost"]


async def test_announce_reaches_available_resources(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root = await login(srv, "root")
        bob, carol = await login(srv, "bob"), await login(srv, "carol")
        await bob.send("<presence/>")
        mark_bob, mark_carol = len(bob.transport.out), len(carol.transport.out)
        reply = await run(
            root, "announce", {"subject": ["Maintenance"], "announcement": ["down at 5", "ok?"]}
        )
        assert note(reply)[0] == "info"
        got = [
            s for s in parse(bob.transport.out[mark_bob:].decode()) if s.tag == CLIENT + "message"
        ]
        assert len(got) == 1
        assert got[0].get("type") == "headline" and got[0].get("from") == "localhost"
        assert got[0].findtext(CLIENT + "body") == "down at 5\nok?"
        assert got[0].findtext(CLIENT + "subject") == "Maintenance"
        # carol sent no presence: not available, nothing for her
        assert "<message" not in carol.transport.out[mark_carol:].decode()


# ------------------------------------------------------------ the exchange


async def test_cancel_and_session_gone_after(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root = await login(srv, "root")
        node = f"{ADMIN}#add-user"
        started = cmd_of(await iq(root, command(node)))
        sid = started.get("sessionid")
        actions = started.find(f"{{{CMD}}}actions")
        assert actions is not None and actions.get("execute") == "complete"
        canceled = cmd_of(await iq(root, command(node, "cancel", sid)))
        assert canceled.get("status") == "canceled"
        assert error_of(await iq(root, command(node, "complete", sid))) == (
            "bad-request",
            "bad-sessionid",
        )


async def test_exchange_errors(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root, bob = await login(srv, "root"), await login(srv, "bob")
        node = f"{ADMIN}#add-user"
        assert error_of(await iq(root, command(node, "dance"))) == (
            "bad-request",
            "malformed-action",
        )
        assert error_of(await iq(root, command(node, "next"))) == ("bad-request", "bad-sessionid")
        sid = cmd_of(await iq(root, command(node))).get("sessionid")
        assert error_of(await iq(root, command(node, "prev", sid))) == ("bad-request", "bad-action")
        assert error_of(await iq(root, command(node, "next", sid))) == ("bad-request", "bad-action")
        # another command's node with this session
        other = f"{ADMIN}#delete-user"
        assert error_of(await iq(root, command(other, "complete", sid)))[1] == "bad-sessionid"
        # a form of another kind
        foreign = submit({"accountjid": ["x@localhost"]}, form_type="urn:other")
        reply = await iq(root, command(node, "complete", sid, foreign))
        assert error_of(reply) == ("bad-request", "bad-payload")
        # required fields missing
        reply = await iq(root, command(node, "complete", sid, submit({"password": ["p"]})))
        assert error_of(reply) == ("bad-request", "bad-payload")
        # the session is root's own: another resource of root, or bob, cannot use it
        root2 = await login(srv, "root", "two")
        assert error_of(await iq(root2, command(node, "cancel", sid)))[1] == "bad-sessionid"
        assert error_of(await iq(bob, command(node, "cancel", sid)))[0] == "forbidden"
        # addressed to an account, not the server
        reply = await iq(root, command(node), to="bob@localhost")
        assert error_of(reply)[0] == "service-unavailable"
        # no node
        reply = await iq(root, f"<command xmlns='{CMD}'/>")
        assert error_of(reply)[0] == "bad-request"


async def test_session_expires(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root = await login(srv, "root")
        runner = srv.module("adhoc").runner
        assert isinstance(runner, CommandRunner)
        now = [1000.0]
        runner.clock = lambda: now[0]
        node = f"{ADMIN}#add-user"
        sid = cmd_of(await iq(root, command(node))).get("sessionid")
        now[0] += 601
        reply = await iq(root, command(node, "complete", sid))
        assert error_of(reply) == ("not-allowed", "session-expired")


async def test_sessions_bounded_per_account(tmp_path: Path) -> None:
    async with server(tmp_path, max_sessions_per_account=2) as srv:
        root = await login(srv, "root")
        node = f"{ADMIN}#announce"
        await iq(root, command(node))
        await iq(root, command(node))
        assert error_of(await iq(root, command(node)))[0] == "resource-constraint"


async def test_my_sessions_lists_own_resources_only(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        bob = await login(srv, "bob", "phone")
        await login(srv, "bob", "laptop")
        await login(srv, "carol")
        reply = await iq(bob, command("urn:chatgate:commands#my-sessions"))
        form = cmd_of(reply).find(f"{{{DATA}}}x")
        assert form is not None
        values = [v.text for v in form.iter(f"{{{DATA}}}value")]
        assert "bob@localhost/laptop" in values and "bob@localhost/phone" in values
        assert not any(v and v.startswith("carol") for v in values)


async def test_disabled_registers_nothing(tmp_path: Path) -> None:
    srv = await Server.start(tmp_path, {"adhoc": {"enabled": False}})
    try:
        await srv.add_user("bob", "bob-pw")
        bob = await login(srv, "bob")
        reply = await iq(bob, command(f"{ADMIN}#add-user"))
        assert error_of(reply)[0] == "service-unavailable"
        items = await get(bob, f"<query xmlns='{ITEMS}' node='{CMD}'/>")
        assert error_of(items)[0] == "item-not-found"
    finally:
        await srv.stop()


def test_admins_must_be_bare_jids() -> None:
    from chatgate.modules.adhoc import AdHocOptions

    with pytest.raises(ValueError, match="not a bare JID"):
        AdHocOptions(admins=["root@localhost/res"])
    with pytest.raises(ValueError, match="not a bare JID"):
        AdHocOptions(admins=["localhost"])
    assert AdHocOptions(admins=["Root@LocalHost"]).admins == ["root@localhost"]


async def test_oversized_forms_end_the_session(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        root = await login(srv, "root")
        node = f"{ADMIN}#announce"
        sid = cmd_of(await iq(root, command(node))).get("sessionid")
        huge = ["x" * 4000] * 20  # 80,000 characters
        reply = await iq(root, command(node, "complete", sid, submit({"announcement": huge})))
        assert error_of(reply) == ("bad-request", "bad-payload")
        assert error_of(await iq(root, command(node, "cancel", sid)))[1] == "bad-sessionid"
