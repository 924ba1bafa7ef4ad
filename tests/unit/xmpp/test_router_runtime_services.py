"""Services registered and removed at runtime (`Router.register_service`), as an
XEP-0114 component's domain is while the component is connected."""

from __future__ import annotations

import pytest

from chatgate.vocabulary import ns
from chatgate.xml.element import Element
from tests.unit.xmpp.test_router_delivery import World


def test_a_registered_domain_gets_its_stanzas_until_its_handler_unregisters() -> None:
    world = World()
    alice = world.bind("alice@localhost/a", priority=0)
    seen: list[str] = []

    def handler(session: object, el: Element, to: object) -> None:
        seen.append(str(to))

    world.router.register_service("gw.localhost", handler)
    world.router.route(
        alice, Element("iq", ns.CLIENT, {"to": "x@gw.localhost", "id": "1", "type": "get"})
    )
    assert seen == ["x@gw.localhost"]
    # Another handler cannot take the domain, nor remove it.
    with pytest.raises(ValueError):
        world.router.register_service("gw.localhost", lambda s, el, to: None)
    world.router.unregister_service("gw.localhost", lambda s, el, to: None)
    assert "gw.localhost" in world.router.services
    world.router.unregister_service("gw.localhost", handler)
    assert "gw.localhost" not in world.router.services


def test_a_served_domain_cannot_be_registered_as_a_service() -> None:
    world = World()
    with pytest.raises(ValueError):
        world.router.register_service("localhost", lambda s, el, to: None)
