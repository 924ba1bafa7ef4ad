"""Presence between accounts and a component's JIDs (a gateway), through the real
server context, router, presence and roster modules and the real hub; only the
component's socket is replaced by a recorder.

What a gateway such as Slidge or Spectrum relies on, as Prosody and ejabberd give
it: the probe and the available presence when an account with gateway contacts
logs in, unavailable when it leaves (to subscribers and to the JIDs it sent
directed presence to), and subscriptions with gateway JIDs recorded in the roster
as with any contact (RFC 6121 §3, §4)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from chatgate.components.hub import ComponentHub
from chatgate.components.routing import route_from_component
from chatgate.jid import JID
from chatgate.storage.records import Subscription
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from chatgate.xmpp.router import Router
from tests.unit.modules.test_blocking import Client, login
from tests.unit.modules.wire import Server
from tests.unit.xmpp.test_router_delivery import World

GW = "gw.localhost"
CONTACT = f"user@{GW}"
C = "{jabber:client}"


class Output:
    def __init__(self) -> None:
        self.written: list[Element] = []

    def element(self, data: bytes) -> None:
        self.written.append(parse_fragment(data))


class Component:
    """Stands for a connected component's connection: records what it is sent."""

    closed = False

    def __init__(self) -> None:
        self.output = Output()

    def deliver(self, stanza: Element) -> None:
        self.output.written.append(stanza)

    def take(self) -> list[Element]:
        got, self.output.written = self.output.written, []
        return got


@contextlib.asynccontextmanager
async def server(tmp: Path, **config: object) -> AsyncIterator[tuple[Server, Component]]:
    srv = await Server.start(tmp, {}, components=[{"domain": GW, "secret": "secret123"}], **config)
    for name in ("alice", "bob"):
        await srv.add_user(name, f"{name}-pw")
    hub = ComponentHub(srv.ctx)
    hub.register()
    component = Component()
    hub.connected[GW] = component  # type: ignore[assignment]
    try:
        yield srv, component
    finally:
        await hub.stop()
        await srv.stop()


async def from_component(srv: Server, client: Client | None, xml: str) -> None:
    """A stanza the component sent, as its stream core hands it on (jabber:client)."""
    stanza = parse_fragment(xml.encode())
    pending = route_from_component(
        srv.ctx, stanza, JID.parse(stanza.attrs["to"]), lambda _data: None, (GW,)
    )
    if pending is not None:
        await pending
    if client is not None:
        await client.wire.settle()


def presences(stanzas: list[Element]) -> list[tuple[str, str, str]]:
    return [
        (s.attrs.get("from", ""), s.attrs.get("to", ""), s.attrs.get("type", "available"))
        for s in stanzas
        if s.name == "presence"
    ]


async def subscription(srv: Server, user: str, contact: str) -> Subscription | None:
    item = await srv.db.roster.item((user, "localhost"), contact)
    return None if item is None else item.subscription


async def test_a_subscription_handshake_with_a_gateway_contact_is_recorded(tmp_path: Path) -> None:
    async with server(tmp_path) as (srv, component):
        alice = await login(srv, "alice")
        component.take()
        # alice subscribes: the component gets it from her bare JID, her roster says ask.
        out = await alice.send(f"<presence to='{CONTACT}' type='subscribe'/>")
        assert presences(component.take()) == [("alice@localhost", CONTACT, "subscribe")]
        [push] = [e for e in out if e.tag == f"{C}iq"]
        item = push.find(".//{jabber:iq:roster}item")
        assert item is not None and item.get("jid") == CONTACT and item.get("ask") == "subscribe"
        # The gateway approves: recorded (to), pushed, and the approval delivered.
        await from_component(
            srv, alice, f"<presence from='{CONTACT}' to='alice@localhost' type='subscribed'/>"
        )
        assert await subscription(srv, "alice", CONTACT) is Subscription.TO
        # Now subscribed, alice (online) asks for the contact's presence (§4.3).
        assert presences(component.take()) == [("alice@localhost", CONTACT, "probe")]
        got = alice.take()
        assert [e.get("type") for e in got if e.tag == f"{C}presence"] == ["subscribed"]
        pushed = [e.find(".//{jabber:iq:roster}item") for e in got if e.tag == f"{C}iq"]
        assert [(i.get("subscription"), i.get("ask")) for i in pushed if i is not None] == [
            ("to", None)
        ]
        # And the other way: the gateway asks, alice approves.
        await from_component(
            srv, alice, f"<presence from='{CONTACT}' to='alice@localhost' type='subscribe'/>"
        )
        assert [e.get("type") for e in alice.take() if e.tag == f"{C}presence"] == ["subscribe"]
        await alice.send(f"<presence to='{CONTACT}' type='subscribed'/>")
        assert await subscription(srv, "alice", CONTACT) is Subscription.BOTH
        # The approval, then her current presence (RFC 6121 §3.1.5).
        assert presences(component.take()) == [
            ("alice@localhost", CONTACT, "subscribed"),
            ("alice@localhost/r", CONTACT, "available"),
        ]
        # Unsubscribing is handed on and recorded as well.
        await alice.send(f"<presence to='{CONTACT}' type='unsubscribe'/>")
        assert await subscription(srv, "alice", CONTACT) is Subscription.FROM
        assert ("alice@localhost", CONTACT, "unsubscribe") in presences(component.take())


async def befriend_gateway(srv: Server) -> None:
    presence = srv.module("presence")
    await presence.process_outbound(("alice", "localhost"), CONTACT, _kind("subscribe"))
    await from_component(
        srv, None, f"<presence from='{CONTACT}' to='alice@localhost' type='subscribed'/>"
    )
    await from_component(
        srv, None, f"<presence from='{CONTACT}' to='alice@localhost' type='subscribe'/>"
    )
    await presence.process_outbound(("alice", "localhost"), CONTACT, _kind("subscribed"))
    assert await subscription(srv, "alice", CONTACT) is Subscription.BOTH


def _kind(value: str):  # type: ignore[no-untyped-def]
    from chatgate.modules.roster.subscription import SubscriptionStanza

    return SubscriptionStanza(value)


async def test_a_gateway_contact_is_probed_and_sees_login_and_logout(tmp_path: Path) -> None:
    async with server(tmp_path) as (srv, component):
        await befriend_gateway(srv)
        component.take()
        alice = await login(srv, "alice")
        assert presences(component.take()) == [
            ("alice@localhost/r", CONTACT, "available"),
            ("alice@localhost", CONTACT, "probe"),
        ]
        # The gateway answers the probe: alice sees her contact online.
        await from_component(srv, alice, f"<presence from='{CONTACT}/irc' to='alice@localhost'/>")
        assert [(e.get("from"), e.get("type")) for e in alice.take()] == [(f"{CONTACT}/irc", None)]
        await alice.send("<presence><show>away</show></presence>")
        [away] = component.take()
        assert away.attrs["to"] == CONTACT and away.find("show") is not None
        await alice.wire.send("</stream:stream>")
        assert presences(component.take()) == [("alice@localhost/r", CONTACT, "unavailable")]


async def test_directed_presence_to_a_component_jid_is_followed_by_unavailable(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as (srv, component):
        alice = await login(srv, "alice")
        component.take()
        await alice.send(f"<presence to='bot@{GW}/x'><status>hi</status></presence>")
        assert presences(component.take()) == [("alice@localhost/r", f"bot@{GW}/x", "available")]
        await alice.wire.send("</stream:stream>")
        # Only the recipient of the directed presence: alice has no subscribers.
        assert presences(component.take()) == [("alice@localhost/r", f"bot@{GW}/x", "unavailable")]


async def test_a_probe_from_the_gateway_is_answered_only_for_subscribers(tmp_path: Path) -> None:
    async with server(tmp_path) as (srv, component):
        await befriend_gateway(srv)
        await login(srv, "alice")
        bob = await login(srv, "bob")
        component.take()
        await from_component(
            srv, bob, f"<presence from='{CONTACT}' to='alice@localhost' type='probe'/>"
        )
        assert presences(component.take()) == [("alice@localhost/r", CONTACT, "available")]
        await from_component(
            srv, bob, f"<presence from='{CONTACT}' to='bob@localhost' type='probe'/>"
        )
        await from_component(
            srv, bob, f"<presence from='other@{GW}' to='alice@localhost' type='probe'/>"
        )
        assert component.take() == []
        assert bob.take() == []


async def test_requests_past_the_limit_from_a_gateway_are_refused_to_it(tmp_path: Path) -> None:
    async with server(tmp_path, limits={"max_subscription_requests": 2}) as (srv, component):
        for n in range(3):
            await from_component(
                srv, None, f"<presence from='u{n}@{GW}' to='alice@localhost' type='subscribe'/>"
            )
        pending = await srv.db.roster.pending_in(("alice", "localhost"))
        assert sorted(pending) == [f"u0@{GW}", f"u1@{GW}"]
        # The third is neither stored nor lost silently: the gateway is told.
        [refusal] = component.take()
        assert refusal.attrs["type"] == "error" and refusal.attrs["to"] == f"u2@{GW}"
        assert refusal.attrs["from"] == "alice@localhost"
        error = refusal.find("error")
        assert error is not None and error.children[0].name == "resource-constraint"  # type: ignore[union-attr]


async def test_presence_to_a_gateway_not_connected_is_dropped(tmp_path: Path) -> None:
    async with server(tmp_path) as (srv, component):
        await befriend_gateway(srv)
        component.take()
        component.closed = True  # the component's connection is gone
        alice = await login(srv, "alice")
        assert [e.get("type") for e in alice.take()] == []  # no error for the probe
        await alice.wire.send("</stream:stream>")
        assert component.take() == []
        assert alice.wire.closed  # the logout went through as ever


def test_the_router_hands_presence_to_a_sink_only_for_its_domain() -> None:
    world = World()
    router: Router = world.router
    got: list[bytes] = []
    router.register_service(GW, lambda *_a: None, got.append)
    world.bind("bob@localhost/r", priority=0)
    xml = '<presence from="alice@localhost/r"/>'
    # The accounts' broadcast is left as it was: no check per subscriber.
    router.broadcast_presence(["bob@localhost", CONTACT], xml)
    assert got == [] and world.out["bob@localhost/r"]
    router.presence_to_services([CONTACT, "carol@localhost", "x@far.example", GW], xml)
    assert [parse_fragment(d).attrs["to"] for d in got] == [CONTACT, GW]
    got.clear()
    # Named twice (a subscriber who also got directed presence): once.
    router.presence_to([CONTACT, f"{CONTACT}/irc", CONTACT, "bob@localhost"], xml)
    assert [parse_fragment(d).attrs["to"] for d in got] == [CONTACT, f"{CONTACT}/irc"]
    got.clear()
    router.unregister_service(GW, lambda *_a: None)  # another handler: kept
    assert router.takes_presence(GW)
    handler = router.services[GW]
    router.unregister_service(GW, handler)
    router.presence_to_services([CONTACT], xml)
    router.presence_to([CONTACT], xml)
    assert got == [] and not router.takes_presence(GW)


def test_remote_subscribers_are_computed_once_per_change() -> None:
    from chatgate.modules.roster.service import Roster
    from chatgate.storage.records import RosterItem

    def item(jid: str, sub: Subscription) -> RosterItem:
        return RosterItem(jid=jid, subscription=sub)

    roster = Roster(
        {
            "bob@localhost": item("bob@localhost", Subscription.BOTH),
            CONTACT: item(CONTACT, Subscription.FROM),
            f"to-only@{GW}": item(f"to-only@{GW}", Subscription.TO),
        },
        1,
        set(),
    )
    hosts = {"localhost"}
    first = roster.remote_subscribers(hosts)
    assert first == [CONTACT] and roster.remote_subscribers(hosts) is first
    roster.items[GW] = item(GW, Subscription.BOTH)
    roster._changed()
    assert roster.remote_subscribers(hosts) == [CONTACT, GW]


class Relay:
    """Stands for the cluster's relay: records what it is asked to forward."""

    def __init__(self) -> None:
        self.forwarded: list[tuple[str, Element]] = []

    async def forward(self, domain: str, data: bytes) -> bool:
        self.forwarded.append((domain, parse_fragment(data)))
        return True


async def test_presence_for_a_gateway_on_another_node_is_relayed(tmp_path: Path) -> None:
    srv = await Server.start(tmp_path, {}, components=[{"domain": GW, "secret": "secret123"}])
    await srv.add_user("alice", "alice-pw")
    hub = ComponentHub(srv.ctx)
    hub.register()
    relay = Relay()
    hub.relay = relay  # type: ignore[assignment]
    try:
        alice = await login(srv, "alice")
        await alice.send(f"<presence to='bot@{GW}'/>")
        await alice.wire.send("</stream:stream>")
        assert [(domain, *presences([s])) for domain, s in relay.forwarded] == [
            (GW, ("alice@localhost/r", f"bot@{GW}", "available")),
            (GW, ("alice@localhost/r", f"bot@{GW}", "unavailable")),
        ]
    finally:
        hub.relay = None
        await hub.stop()
        await srv.stop()
