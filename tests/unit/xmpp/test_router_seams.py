"""The router's seams for features: services on their own domains, stanza stages,
and questions the server asks clients (`Router.ask`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from chatgate.jid import JID
from chatgate.vocabulary import ns
from chatgate.xml.element import Element
from chatgate.xmpp.router import MAX_PENDING_QUESTIONS
from chatgate.xmpp.session import C2SSession
from tests.unit.xmpp.test_router_delivery import World


def message(to: str, body: str = "hi") -> Element:
    el = Element("message", ns.CLIENT, {"to": to, "type": "chat"})
    el.sub("body", text=body)
    return el


class Recorder:
    """A stage that records what it sees and refuses what `refuse` names."""

    def __init__(self, name: str, log: list[str], refuse: str = "") -> None:
        self.name, self.log, self.refuse = name, log, refuse

    def routing(self, origin: C2SSession, stanza: Element, to: JID) -> bool:
        self.log.append(f"{self.name} routing {stanza.name} {to}")
        return str(to) != self.refuse

    def delivered(self, stanza: Element, to: JID, targets: Sequence[C2SSession]) -> None:
        self.log.append(f"{self.name} delivered {sorted(s.full for s in targets)}")


def test_a_stanza_to_a_service_domain_goes_to_its_handler_and_nowhere_else() -> None:
    world = World()
    alice = world.bind("alice@localhost/a", priority=0)
    seen: list[tuple[str, str]] = []
    world.router.services["conference.localhost"] = lambda s, el, to: seen.append((s.full, str(to)))
    for name in ("message", "presence", "iq"):
        el = Element(name, ns.CLIENT, {"to": "room@conference.localhost/nick", "id": "1"})
        world.router.route(alice, el)
    assert seen == [("alice@localhost/a", "room@conference.localhost/nick")] * 3
    # Without the service, the same domain is unknown: the sender gets an error.
    world.router.services.clear()
    world.router.route(alice, message("room@conference.localhost"))
    [bounce] = world.got("alice@localhost/a")
    assert bounce.get("type") == "error"


def test_stages_run_in_order_see_where_a_message_went_and_can_stop_it() -> None:
    world = World()
    alice = world.bind("alice@localhost/a", priority=0)
    world.bind("bob@localhost/1", priority=5)
    world.bind("bob@localhost/2", priority=1)
    log: list[str] = []
    world.router.stages = (Recorder("first", log), Recorder("second", log))
    world.router.route(alice, message("bob@localhost"))
    assert log == [
        "first routing message bob@localhost",
        "second routing message bob@localhost",
        "first delivered ['bob@localhost/1']",
        "second delivered ['bob@localhost/1']",
    ]
    log.clear()
    world.router.route(alice, message("bob@localhost/2"))
    assert log[-1] == "second delivered ['bob@localhost/2']"
    # A stage that refuses stops routing: nothing delivered, later stages not asked.
    world.got("bob@localhost/1")
    log.clear()
    world.router.stages = (Recorder("blocker", log, refuse="bob@localhost"), Recorder("x", log))
    world.router.route(alice, message("bob@localhost"))
    assert log == ["blocker routing message bob@localhost"]
    assert world.got("bob@localhost/1") == []


def test_a_stage_may_change_the_stanza_before_it_is_written() -> None:
    world = World()
    alice = world.bind("alice@localhost/a", priority=0)
    world.bind("bob@localhost/1", priority=0)

    class Stamp(Recorder):
        def routing(self, origin: C2SSession, stanza: Element, to: JID) -> bool:
            stanza.sub("stanza-id", "urn:xmpp:sid:0", {"id": "x1", "by": "bob@localhost"})
            return True

    world.router.stages = (Stamp("stamp", []),)
    world.router.route(alice, message("bob@localhost"))
    [got] = world.got("bob@localhost/1")
    stamp = got.find("stanza-id", "urn:xmpp:sid:0")
    assert stamp is not None and stamp.get("id") == "x1"


def test_iqs_between_accounts_pass_the_stages_but_iqs_to_the_server_do_not() -> None:
    world = World()
    alice = world.bind("alice@localhost/a", priority=0)
    world.bind("bob@localhost/1", priority=0)
    log: list[str] = []
    world.router.stages = (Recorder("s", log),)
    world.router.iq_dispatch = lambda session, iq, to: None
    ping = Element("iq", ns.CLIENT, {"type": "get", "id": "p", "to": "bob@localhost/1"})
    ping.sub("ping", "urn:xmpp:ping")
    world.router.route(alice, ping)
    to_server = Element("iq", ns.CLIENT, {"type": "get", "id": "s", "to": "localhost"})
    to_server.sub("ping", "urn:xmpp:ping")
    world.router.route(alice, to_server)
    assert log == ["s routing iq bob@localhost/1"]


async def test_ask_returns_the_clients_reply_and_only_from_that_client() -> None:
    world = World()
    alice = world.bind("alice@localhost/a", priority=0)
    mallory = world.bind("bob@localhost/m", priority=0)
    query = Element("iq", ns.CLIENT, {"type": "get"})
    query.sub("query", ns.DISCO_INFO)
    asking = asyncio.ensure_future(world.router.ask("alice@localhost/a", query, timeout=5))
    await asyncio.sleep(0)
    [sent] = world.got("alice@localhost/a")
    assert sent.get("from") == "localhost" and sent.get("to") == "alice@localhost/a"
    qid = sent.get("id")
    assert qid is not None and len(qid) > 12
    # Another client answering with the same id is not taken for the reply.
    forged = Element("iq", ns.CLIENT, {"type": "result", "id": qid, "to": "localhost"})
    world.router.route(mallory, forged)
    await asyncio.sleep(0)
    assert not asking.done()
    answer = Element("iq", ns.CLIENT, {"type": "result", "id": qid})
    answer.sub("query", ns.DISCO_INFO).sub("feature", attrs={"var": "urn:x"})
    world.router.route(alice, answer)
    reply = await asking
    assert reply.get("from") == "alice@localhost/a"
    assert reply.get("type") == "result"
    assert world.router._asked == {}


async def test_ask_fails_for_a_resource_not_connected_and_times_out() -> None:
    world = World()
    world.bind("alice@localhost/a", priority=0)
    with pytest.raises(LookupError):
        await world.router.ask("alice@localhost/gone", Element("iq", ns.CLIENT, {"type": "get"}))
    with pytest.raises(TimeoutError):
        await world.router.ask(
            "alice@localhost/a", Element("iq", ns.CLIENT, {"type": "get"}), timeout=0.01
        )
    assert world.router._asked == {}


async def test_ask_refuses_when_too_many_questions_wait() -> None:
    world = World()
    world.bind("alice@localhost/a", priority=0)
    loop = asyncio.get_running_loop()
    for n in range(MAX_PENDING_QUESTIONS):
        world.router._asked[("x", str(n))] = loop.create_future()
    with pytest.raises(OverflowError):
        await world.router.ask("alice@localhost/a", Element("iq", ns.CLIENT, {"type": "get"}))


def test_message_to_addresses_each_copy_and_names_who_is_gone() -> None:
    world = World()
    world.bind("alice@localhost/a", priority=0)
    world.bind("bob@localhost/b", priority=0)
    el = Element("message", ns.CLIENT, {"from": "room@conference.localhost/x", "type": "groupchat"})
    el.sub("body", text="one write")
    from chatgate.xml.serialize import serialize

    gone = world.router.message_to(
        ["alice@localhost/a", "bob@localhost/b", "carol@localhost/c"], serialize(el)
    )
    assert gone == ["carol@localhost/c"]
    for full in ("alice@localhost/a", "bob@localhost/b"):
        [got] = world.got(full)
        assert got.get("to") == full
        assert got.get("from") == "room@conference.localhost/x"
        body = got.find("body")
        assert body is not None and body.text == "one write"


async def test_ask_refuses_a_resource_on_another_node_at_once() -> None:
    """A stand-in in the table (a session of another node) cannot be asked: its
    reply would reach the other node, so the question fails now, not after the
    timeout, and nothing is written to it."""
    world = World()

    class StandIn:
        written: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.written.append(data)

        def send(self, stanza: Element) -> None:
            self.written.append(b"stanza")

    remote = StandIn()
    # The router's table, as a cluster directory's: this node's sessions plus stand-ins.
    world.router._local = {"alice@localhost": {"far": remote}}  # type: ignore[dict-item]
    with pytest.raises(LookupError, match="this node"):
        await world.router.ask(
            "alice@localhost/far", Element("iq", ns.CLIENT, {"type": "get"}), timeout=5
        )
    assert remote.written == [] and world.router._asked == {}
