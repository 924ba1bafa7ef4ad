"""XEP-0049 private XML storage through the real connection and modules: the owner
reads back what it stored, per namespace; nobody else can; malformed, reserved,
oversized and over-quota requests get their exact errors and change nothing."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .wire import Server, Wire

CLIENT = "{jabber:client}"
PRIVATE = "jabber:iq:private"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@contextlib.asynccontextmanager
async def server(tmp: Path, **options: Any) -> AsyncIterator[Server]:
    srv = await Server.start(tmp, {"private_storage": options} if options else {})
    for name in ("alice", "bob"):
        await srv.add_user(name, f"{name}-pw")
    try:
        yield srv
    finally:
        await srv.stop()


async def login(srv: Server, user: str, mode: str = "whole") -> Wire:
    wire = srv.connect(mode)
    assert "<jid>" in await wire.login_plain(user, f"{user}-pw")
    return wire


def iq(out: str) -> ET.Element:
    (reply,) = [el for el in ET.fromstring(f"<r xmlns='jabber:client'>{out}</r>")]
    assert reply.tag == CLIENT + "iq", out
    return reply


def condition(reply: ET.Element) -> str:
    assert reply.get("type") == "error", ET.tostring(reply)
    error = reply.find(CLIENT + "error")
    assert error is not None
    (cond,) = (
        c.tag.split("}")[1]
        for c in error
        if c.tag.startswith("{" + STANZAS) and not c.tag.endswith("}text")
    )
    return cond


def private(iq_type: str, body: str, to: str = "", iq_id: str = "p1") -> str:
    attr = f" to='{to}'" if to else ""
    return f"<iq type='{iq_type}' id='{iq_id}'{attr}><query xmlns='{PRIVATE}'>{body}</query></iq>"


PREFS = "<prefs xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></prefs>"


async def test_stored_fragment_comes_back_per_namespace(tmp_path: Path, mode: str) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice", mode)
        stored = iq(await alice.send(private("set", PREFS)))
        assert stored.get("type") == "result" and stored.get("id") == "p1"
        other = "<x xmlns='other:ns'><a>1</a></x>"
        assert iq(await alice.send(private("set", other, iq_id="p2"))).get("type") == "result"
        got = iq(await alice.send(private("get", "<prefs xmlns='exodus:prefs'/>", iq_id="p3")))
        assert got.get("type") == "result"
        fragment = got.find(f"{{{PRIVATE}}}query/{{exodus:prefs}}prefs")
        assert fragment is not None
        assert fragment.findtext("{exodus:prefs}defaultnick") == "Hamlet"
        assert got.find(f"{{{PRIVATE}}}query/{{other:ns}}x") is None


async def test_nothing_stored_answers_the_empty_element(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        got = iq(await alice.send(private("get", "<prefs xmlns='exodus:prefs'/>")))
        fragment = got.find(f"{{{PRIVATE}}}query/{{exodus:prefs}}prefs")
        assert fragment is not None and len(fragment) == 0


async def test_replacing_a_fragment_keeps_only_the_new_one(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.send(private("set", PREFS))
        await alice.send(private("set", "<prefs xmlns='exodus:prefs'><n>2</n></prefs>"))
        got = iq(await alice.send(private("get", "<prefs xmlns='exodus:prefs'/>")))
        fragment = got.find(f"{{{PRIVATE}}}query/{{exodus:prefs}}prefs")
        assert fragment is not None
        assert [c.tag for c in fragment] == ["{exodus:prefs}n"]


async def test_another_accounts_private_data_is_forbidden(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.send(private("set", PREFS))
        bob = await login(srv, "bob")
        read = iq(
            await bob.send(private("get", "<prefs xmlns='exodus:prefs'/>", "alice@localhost"))
        )
        assert condition(read) == "forbidden"
        write = iq(
            await bob.send(private("set", "<prefs xmlns='exodus:prefs'/>", "alice@localhost"))
        )
        assert condition(write) == "forbidden"
        got = iq(await alice.send(private("get", "<prefs xmlns='exodus:prefs'/>")))
        assert (
            got.findtext(f"{{{PRIVATE}}}query/{{exodus:prefs}}prefs/{{exodus:prefs}}defaultnick")
            == "Hamlet"
        )


async def test_own_bare_jid_is_the_same_as_no_to(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        assert (
            iq(await alice.send(private("set", PREFS, "alice@localhost"))).get("type") == "result"
        )
        got = iq(await alice.send(private("get", "<prefs xmlns='exodus:prefs'/>")))
        assert (
            got.find(f"{{{PRIVATE}}}query/{{exodus:prefs}}prefs/{{exodus:prefs}}defaultnick")
            is not None
        )


async def test_malformed_and_reserved_requests(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        assert condition(iq(await alice.send(private("set", "")))) == "bad-request"
        assert condition(iq(await alice.send(private("get", "")))) == "bad-request"
        reserved = private("set", f"<query xmlns='{PRIVATE}'/>")
        assert condition(iq(await alice.send(reserved))) == "not-acceptable"
        client_ns = private("set", "<x xmlns='jabber:client'/>")
        assert condition(iq(await alice.send(client_ns))) == "not-acceptable"
        # the server goes on answering
        assert iq(await alice.send(private("set", PREFS))).get("type") == "result"


async def test_oversized_fragment_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    async with server(tmp_path, max_fragment_bytes=1024) as srv:
        alice = await login(srv, "alice")
        await alice.send(private("set", PREFS))
        big = f"<prefs xmlns='exodus:prefs'><n>{'x' * 2000}</n></prefs>"
        assert condition(iq(await alice.send(private("set", big)))) == "not-acceptable"
        got = iq(await alice.send(private("get", "<prefs xmlns='exodus:prefs'/>")))
        assert (
            got.findtext(f"{{{PRIVATE}}}query/{{exodus:prefs}}prefs/{{exodus:prefs}}defaultnick")
            == "Hamlet"
        )


async def test_quota_of_namespaces_and_bytes(tmp_path: Path) -> None:
    async with server(tmp_path, max_namespaces=2, max_account_bytes=2048) as srv:
        alice = await login(srv, "alice")
        for i in range(2):
            ok = iq(await alice.send(private("set", f"<x xmlns='ns:{i}'/>", iq_id=f"s{i}")))
            assert ok.get("type") == "result"
        third = iq(await alice.send(private("set", "<x xmlns='ns:2'/>")))
        assert condition(third) == "resource-constraint"
        assert third.find(f"{CLIENT}error").get("type") == "wait"
        # replacing one of the two is still fine; growing past the bytes is not
        replace = iq(await alice.send(private("set", "<x xmlns='ns:1'>y</x>")))
        assert replace.get("type") == "result"
        heavy = f"<x xmlns='ns:1'>{'y' * 2100}</x>"
        assert condition(iq(await alice.send(private("set", heavy)))) == "resource-constraint"


async def test_disabled_module_answers_service_unavailable(tmp_path: Path) -> None:
    async with server(tmp_path, enabled=False) as srv:
        alice = await login(srv, "alice")
        assert condition(iq(await alice.send(private("get", PREFS)))) == "service-unavailable"
