"""Where components' stanzas go and what reaches a component, through a real router
(`tests/unit/xmpp/test_router_delivery.World`) and the real hub."""

from __future__ import annotations

from typing import Any

from chatgate.components.hub import ComponentHub
from chatgate.components.routing import route_from_component
from chatgate.config import Config
from chatgate.jid import JID
from chatgate.vocabulary import ns
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from tests.unit.xmpp.test_router_delivery import World, message


def condition_of(stanza: Element) -> str:
    """The defined condition of an error stanza (its `<text/>` aside)."""
    error = stanza.find("error", ns.CLIENT)
    assert error is not None
    (condition,) = [
        c
        for c in error.children
        if isinstance(c, Element) and c.ns == ns.STANZA_ERRORS and c.name != "text"
    ]
    return condition.name


class Fake:
    """The context parts routing and the hub use, over a real router."""

    def __init__(self) -> None:
        self.world = World()
        self.router = self.world.router
        self.config = Config.model_validate(
            {"components": [{"domain": "gw.localhost", "secret": "secret", "name": "GW"}]}
        )
        self.services: list[Any] = []
        self.dispatched: list[tuple[str, str]] = []
        self.connections: set[Any] = set()
        self.to_component: list[Element] = []

    def dispatch_iq(self, session: Any, iq: Element, to: JID | None) -> None:
        self.dispatched.append((session.full, str(to)))

    def write(self, data: bytes) -> None:
        self.to_component.append(parse_fragment(data))


def route(fake: Fake, stanza: Element) -> None:
    pending = route_from_component(
        fake,  # type: ignore[arg-type]
        stanza,
        JID.parse(stanza.attrs["to"]),
        fake.write,
        ("gw.localhost", "other.localhost"),
    )
    assert pending is None


def from_gw(el: Element, sender: str = "bot@gw.localhost") -> Element:
    el.attrs["from"] = sender
    return el


def test_a_disconnected_component_answers_service_unavailable_and_drops_presence() -> None:
    fake = Fake()
    hub = ComponentHub(fake)  # type: ignore[arg-type]
    hub.register()
    assert [(s.domain, s.parent, s.name) for s in fake.services] == [
        ("gw.localhost", "localhost", "GW")
    ]
    alice = fake.world.bind("alice@localhost/a", priority=0)
    fake.router.route(alice, message("x@gw.localhost", "hi"))
    [bounce] = fake.world.got("alice@localhost/a")
    assert condition_of(bounce) == "service-unavailable"
    fake.router.route(alice, Element("presence", ns.CLIENT, {"to": "x@gw.localhost"}))
    result = Element("iq", ns.CLIENT, {"to": "gw.localhost", "type": "result", "id": "1"})
    fake.router.route(alice, result)
    assert fake.world.got("alice@localhost/a") == []


def test_messages_and_presence_from_a_component_reach_accounts() -> None:
    fake = Fake()
    fake.world.bind("alice@localhost/a", priority=1)
    fake.world.bind("alice@localhost/b", priority=0)
    route(fake, from_gw(message("alice@localhost/b", "to b")))
    assert fake.world.bodies("alice@localhost/b") == ["to b"]
    route(fake, from_gw(message("alice@localhost", "to the best")))
    assert fake.world.bodies("alice@localhost/a") == ["to the best"]
    assert fake.world.got("alice@localhost/b") == []
    route(fake, from_gw(Element("presence", ns.CLIENT, {"to": "alice@localhost"})))
    assert len(fake.world.got("alice@localhost/a")) == 1
    assert len(fake.world.got("alice@localhost/b")) == 1
    probe = Element("presence", ns.CLIENT, {"to": "alice@localhost", "type": "probe"})
    route(fake, from_gw(probe))
    assert fake.world.got("alice@localhost/a") == []
    assert fake.to_component == []


def test_a_component_is_answered_only_read_only_queries() -> None:
    fake = Fake()
    for payload_ns, to, answered in [
        (ns.PING, "localhost", True),
        (ns.DISCO_INFO, "localhost", True),
        (ns.VCARD, "alice@localhost", True),
        (ns.PING, "alice@localhost", False),
        ("jabber:iq:roster", "localhost", False),
        ("jabber:iq:private", "localhost", False),
    ]:
        iq = Element("iq", ns.CLIENT, {"to": to, "type": "get", "id": "q"})
        iq.sub("query", payload_ns)
        route(fake, from_gw(iq, "u@gw.localhost/r"))
        if answered:
            assert fake.dispatched.pop() == ("u@gw.localhost/r", to)
        else:
            [error] = fake.to_component
            fake.to_component.clear()
            assert condition_of(error) == "service-unavailable"
            assert error.attrs["to"] == "u@gw.localhost/r"
    assert fake.dispatched == []


def test_other_domains_and_services() -> None:
    fake = Fake()
    route(fake, from_gw(message("x@elsewhere.example", "hi")))
    [error] = fake.to_component
    assert condition_of(error) == "remote-server-not-found"
    seen: list[tuple[str, str]] = []
    fake.router.services["other.localhost"] = lambda s, el, to: seen.append((s.full, str(to)))
    route(fake, from_gw(message("room@other.localhost/nick", "hi"), "gw.localhost"))
    assert seen == [("gw.localhost", "room@other.localhost/nick")]
    # A built-in service (not a component) is not reached from a component.
    fake.to_component.clear()
    fake.router.services["conference.localhost"] = lambda s, el, to: seen.append(("muc", ""))
    route(fake, from_gw(message("room@conference.localhost", "hi")))
    [error] = fake.to_component
    assert condition_of(error) == "service-unavailable"
    assert seen[-1] != ("muc", "")
