"""Roster and presence limits through the real connection driver and modules.

Sizes (RFC 6121 §2.3.3): a roster set whose 'name' or <group/> is longer than the
configured limit, or with more groups than allowed, is `not-acceptable`.

Counts, each refused with `resource-constraint` (type wait): every path that
would add a roster item past `max_roster_items` (roster set, outbound
subscribe, approving a request, pre-approving) stores nothing; an inbound
subscription request past `max_subscription_requests` is not stored and its
sender is told; directed presence to more than `max_directed_presences`
entities is not routed.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..modules.wire import Server, Wire

CLIENT = "{jabber:client}"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
ROSTER = "jabber:iq:roster"
USERS = ("alice", "bob", "carol", "dave", "erin")
ALICE = ("alice", "localhost")


@contextlib.asynccontextmanager
async def server(tmp: Path, **limits: Any) -> AsyncIterator[Server]:
    srv = await Server.start(tmp, {}, limits=limits)
    for name in USERS:
        await srv.add_user(name, f"{name}-pw")
    try:
        yield srv
    finally:
        await srv.stop()


async def login(srv: Server, user: str, *, available: bool = True) -> Wire:
    wire = srv.connect()
    bound = await wire.login_plain(user, f"{user}-pw", "r")
    assert "<jid>" in bound, bound
    await wire.send(f"<iq type='get' id='roster'><query xmlns='{ROSTER}'/></iq>")
    if available:
        await wire.send("<presence/>")
    received(wire)
    return wire


_seen: dict[int, int] = {}


def received(wire: Wire) -> str:
    """What the server wrote to `wire` since the last call (sends on other wires included)."""
    out = wire.transport.out
    start = _seen.get(id(wire), 0)
    _seen[id(wire)] = len(out)
    return out[start:].decode()


def stanzas(out: str) -> list[ET.Element]:
    return list(ET.fromstring(f"<r xmlns='jabber:client'>{out}</r>"))


def error_of(out: str, tag: str, **attrs: str) -> str | None:
    """The defined condition of the first error <tag/> whose attributes match, or None."""
    for el in stanzas(out):
        if el.tag != CLIENT + tag or el.get("type") != "error":
            continue
        if any(el.get(k) != v for k, v in attrs.items()):
            continue
        error = el.find(CLIENT + "error")
        assert error is not None
        for child in error:
            if child.tag.startswith("{" + STANZAS + "}") and not child.tag.endswith("}text"):
                return f"{error.get('type')}/{child.tag.split('}')[1]}"
    return None


def roster_set(jid: str, *, name: str | None = None, groups: tuple[str, ...] = ()) -> str:
    name_attr = "" if name is None else f" name='{name}'"
    inner = "".join(f"<group>{g}</group>" for g in groups)
    return (
        f"<iq type='set' id='set'><query xmlns='{ROSTER}'>"
        f"<item jid='{jid}'{name_attr}>{inner}</item></query></iq>"
    )


def result_of(out: str, iq_id: str) -> bool:
    return any(
        el.tag == CLIENT + "iq" and el.get("id") == iq_id and el.get("type") == "result"
        for el in stanzas(out)
    )


async def contacts(srv: Server, owner: tuple[str, str] = ALICE) -> list[str]:
    return [item.jid for item in await srv.db.roster.items(owner)]


# ---------------------------------------------------------------- sizes (RFC 6121 §2.3.3)


async def test_roster_set_refuses_a_group_name_longer_than_the_limit(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        out = await alice.send(roster_set("bob@localhost", groups=("g" * 257,)))
        assert error_of(out, "iq", id="set") == "modify/not-acceptable", out
        assert await contacts(srv) == []
        out = await alice.send(roster_set("bob@localhost", groups=("g" * 256,)))
        assert result_of(out, "set"), out


async def test_group_and_name_limits_count_characters_not_bytes(tmp_path: Path) -> None:
    async with server(tmp_path, max_roster_group_length=4, max_roster_name_length=4) as srv:
        alice = await login(srv, "alice")
        out = await alice.send(roster_set("bob@localhost", name="Ünïç", groups=("Grüß",)))
        assert result_of(out, "set"), out
        out = await alice.send(roster_set("bob@localhost", name="Ünïçø"))
        assert error_of(out, "iq", id="set") == "modify/not-acceptable", out


async def test_roster_set_refuses_more_groups_than_the_limit(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        out = await alice.send(roster_set("bob@localhost", groups=tuple(map(str, range(17)))))
        assert error_of(out, "iq", id="set") == "modify/not-acceptable", out
        assert await contacts(srv) == []
        out = await alice.send(roster_set("bob@localhost", groups=tuple(map(str, range(16)))))
        assert result_of(out, "set"), out


async def test_roster_set_refuses_a_name_longer_than_the_limit(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        out = await alice.send(roster_set("bob@localhost", name="n" * 257))
        assert error_of(out, "iq", id="set") == "modify/not-acceptable", out
        assert await contacts(srv) == []


async def test_an_existing_item_is_also_held_to_the_size_limits(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        assert result_of(await alice.send(roster_set("bob@localhost", name="Bob")), "set")
        out = await alice.send(roster_set("bob@localhost", groups=("g" * 300,)))
        assert error_of(out, "iq", id="set") == "modify/not-acceptable", out
        (item,) = await srv.db.roster.items(ALICE)
        assert item.groups == () and item.name == "Bob"


# ---------------------------------------------------------------- roster items per account


async def fill(srv: Server, wire: Wire, count: int) -> None:
    for i in range(count):
        out = await wire.send(roster_set(f"filler{i}@example.org"))
        assert result_of(out, "set"), out


async def test_roster_set_past_the_item_limit_is_resource_constraint(tmp_path: Path) -> None:
    async with server(tmp_path, max_roster_items=2) as srv:
        alice = await login(srv, "alice")
        await fill(srv, alice, 2)
        out = await alice.send(roster_set("bob@localhost"))
        assert error_of(out, "iq", id="set") == "wait/resource-constraint", out
        assert len(await contacts(srv)) == 2
        # Changing an item already there adds nothing and is still allowed.
        out = await alice.send(roster_set("filler0@example.org", name="F"))
        assert result_of(out, "set"), out


async def test_outbound_subscribe_past_the_item_limit_creates_no_item(tmp_path: Path) -> None:
    async with server(tmp_path, max_roster_items=2) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        await fill(srv, alice, 2)
        out = await alice.send("<presence to='bob@localhost' type='subscribe' id='s'/>")
        assert error_of(out, "presence", id="s", **{"from": "bob@localhost"}) == (
            "wait/resource-constraint"
        ), out
        assert "bob@localhost" not in await contacts(srv)
        # Refused before routing: bob got no request and stores none.
        assert "subscribe" not in received(bob)
        assert await srv.db.roster.pending_in(("bob", "localhost")) == []


async def test_approving_a_request_past_the_item_limit_creates_no_item(tmp_path: Path) -> None:
    async with server(tmp_path, max_roster_items=2) as srv:
        alice = await login(srv, "alice")
        carol = await login(srv, "carol")
        await fill(srv, alice, 2)
        await carol.send("<presence to='alice@localhost' type='subscribe'/>")
        assert await srv.db.roster.pending_in(ALICE) == ["carol@localhost"]
        out = await alice.send("<presence to='carol@localhost' type='subscribed' id='ok'/>")
        assert error_of(out, "presence", id="ok") == "wait/resource-constraint", out
        assert "carol@localhost" not in await contacts(srv)
        # Nothing happened: the request is still pending, carol is still only asking.
        assert await srv.db.roster.pending_in(ALICE) == ["carol@localhost"]
        (item,) = await srv.db.roster.items(("carol", "localhost"))
        assert item.ask and item.subscription.value == "none"


async def test_pre_approval_past_the_item_limit_creates_no_item(tmp_path: Path) -> None:
    async with server(tmp_path, max_roster_items=2) as srv:
        alice = await login(srv, "alice")
        await fill(srv, alice, 2)
        out = await alice.send("<presence to='dave@localhost' type='subscribed' id='pre'/>")
        assert error_of(out, "presence", id="pre") == "wait/resource-constraint", out
        assert "dave@localhost" not in await contacts(srv)


async def test_inbound_subscribe_past_the_request_limit_stores_nothing(tmp_path: Path) -> None:
    async with server(tmp_path, max_subscription_requests=2) as srv:
        alice = await login(srv, "alice", available=False)
        senders = {name: await login(srv, name) for name in ("bob", "carol", "dave")}
        for name in ("bob", "carol"):
            out = await senders[name].send("<presence to='alice@localhost' type='subscribe'/>")
            assert "error" not in out, out
        out = await senders["dave"].send("<presence to='alice@localhost' type='subscribe'/>")
        assert error_of(out, "presence", **{"from": "alice@localhost"}) == (
            "wait/resource-constraint"
        ), out
        assert await srv.db.roster.pending_in(ALICE) == ["bob@localhost", "carol@localhost"]
        # A request already pending is refreshed, not refused; alice answering one
        # frees a slot for the next sender.
        out = await senders["bob"].send("<presence to='alice@localhost' type='subscribe'/>")
        assert "error" not in out, out
        await alice.send("<presence to='bob@localhost' type='unsubscribed'/>")
        out = await senders["dave"].send("<presence to='alice@localhost' type='subscribe'/>")
        assert "error" not in out, out
        assert await srv.db.roster.pending_in(ALICE) == ["carol@localhost", "dave@localhost"]


# ---------------------------------------------------------------- directed presence


async def test_directed_presence_past_the_limit_is_refused_and_not_routed(tmp_path: Path) -> None:
    async with server(tmp_path, max_directed_presences=2) as srv:
        alice = await login(srv, "alice")
        bob, carol, dave = [await login(srv, name) for name in ("bob", "carol", "dave")]
        for name in ("bob", "carol"):
            out = await alice.send(f"<presence to='{name}@localhost/r'/>")
            assert "error" not in out, out
        out = await alice.send("<presence to='dave@localhost/r' id='d'/>")
        assert error_of(out, "presence", id="d") == "wait/resource-constraint", out
        assert "alice@localhost/r" not in received(dave)
        # Sending presence again to a remembered entity adds nothing: still routed.
        await alice.send("<presence to='bob@localhost/r'><show>away</show></presence>")
        assert "<show>away</show>" in received(bob)
        # Directed unavailable forgets an entity and frees its place.
        await alice.send("<presence to='carol@localhost/r' type='unavailable'/>")
        assert "unavailable" in received(carol)
        out = await alice.send("<presence to='dave@localhost/r' id='d2'/>")
        assert "error" not in out, out
        assert "alice@localhost/r" in received(dave)


async def test_directed_presence_is_bounded_by_default(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        flood = "".join(f"<presence to='nobody{i}@localhost/x'/>" for i in range(1000))
        out = await alice.send(flood)
        assert "error" not in out
        out = await alice.send("<presence to='one-more@localhost/x' id='over'/>")
        assert error_of(out, "presence", id="over") == "wait/resource-constraint", out
        (session,) = srv.ctx.router.directory.local["alice@localhost"].values()
        assert len(session.directed) == 1000
