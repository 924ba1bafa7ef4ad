"""The router's delivery over the session directory: messages to full and bare JIDs by
RFC 6121 §8.5 (priorities, negative priority, headline, groupchat, errors), presence
broadcast to an account's available resources, probe answers, roster pushes.

Each session records what it is written; what it gets is parsed back with the
stream's own fragment parser and compared with what the RFC asks for."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.config import ResourceConflict
from chatgate.hooks import Hooks
from chatgate.jid import JID
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize
from chatgate.xmpp.directory import LocalSessionDirectory
from chatgate.xmpp.router import MessageUndeliverable, Router
from chatgate.xmpp.session import C2SSession

ACCOUNTS = {"alice", "bob", "carol"}


class World:
    def __init__(self) -> None:
        self.directory = LocalSessionDirectory(ResourceConflict.NEWEST_WINS, 10)
        self.hooks = Hooks()
        self.router = Router("localhost", self.hooks, self.account_exists, self.directory)
        self.out: dict[str, list[bytes]] = {}
        #: the full JID of each write, in the order written
        self.order: list[str] = []
        self.stored: list[MessageUndeliverable] = []

    async def account_exists(self, local: str, domain: str) -> bool:
        return domain == "localhost" and local in ACCOUNTS

    def bind(self, full: str, *, priority: int | None = None) -> C2SSession:
        """A bound session; available with `priority` when one is given."""
        username, _, rest = full.partition("@")
        domain, _, resource = rest.partition("/")
        written = self.out.setdefault(full, [])

        def write(data: bytes) -> None:
            self.order.append(full)
            written.append(data)

        def closed(_condition: StreamErrorCondition | None, _text: str) -> None:
            raise AssertionError("no session is closed here")

        def session_for(res: str) -> C2SSession:
            return C2SSession(
                username=username,
                domain=domain,
                resource=res,
                stream_id=full,
                write=write,
                close=closed,
                transport="test",
            )

        claimed = self.directory.claim(session_for, resource)
        assert isinstance(claimed, tuple)
        session = claimed[0]
        if priority is not None:
            presence = Element("presence", ns.CLIENT, {"from": full})
            presence.sub("priority", text=str(priority))
            self.directory.mark_available(session, priority, presence)
        return session

    def got(self, full: str) -> list[Element]:
        """What the session `full` was written since the last call, parsed."""
        written = self.out[full]
        elements = [parse_fragment(data) for data in written]
        written.clear()
        return elements

    def bodies(self, full: str) -> list[str]:
        return [el.find("body", ns.CLIENT).text for el in self.got(full)]  # type: ignore[union-attr]

    def store_offline(self) -> None:
        def stored(event: MessageUndeliverable) -> bool:
            self.stored.append(event)
            return True

        self.hooks.add(MessageUndeliverable, stored)


def condition_of(error: Element) -> str:
    """The defined condition of an error stanza (RFC 6120 §8.3.2)."""
    el = error.find("error", ns.CLIENT)
    assert el is not None
    (condition,) = [c for c in el.children if isinstance(c, Element) and c.ns == ns.STANZA_ERRORS]
    return condition.name


def message(to: str, body: str, mtype: str | None = "chat") -> Element:
    el = Element("message", ns.CLIENT, {"to": to})
    if mtype is not None:
        el.attrs["type"] = mtype
    el.sub("body", text=body)
    return el


async def route(world: World, origin: C2SSession, stanza: Element) -> None:
    pending = world.router.route(origin, stanza)
    if pending is not None:
        await pending


@pytest.fixture
def world() -> World:
    return World()


# ---------------------------------------------------------------- messages


async def test_a_full_jid_gets_the_message_even_unavailable(world: World) -> None:
    # RFC 6121 §8.5.3.1: a connected resource gets what is addressed to it.
    sender = world.bind("bob@localhost/desk", priority=0)
    world.bind("alice@localhost/phone")  # bound, never sent presence
    world.bind("alice@localhost/laptop", priority=5)
    await route(world, sender, message("alice@localhost/phone", "hi"))
    (got,) = world.got("alice@localhost/phone")
    assert got.attrs["from"] == "bob@localhost/desk" and got.attrs["to"] == "alice@localhost/phone"
    assert world.got("alice@localhost/laptop") == []


async def test_a_gone_resource_is_treated_as_the_bare_jid(world: World) -> None:
    # §8.5.3.2.1: a chat message to a full JID with no such resource goes as to the bare JID.
    sender = world.bind("bob@localhost/desk", priority=0)
    world.bind("alice@localhost/laptop", priority=1)
    await route(world, sender, message("alice@localhost/gone", "where"))
    assert world.bodies("alice@localhost/laptop") == ["where"]


async def test_chat_to_a_bare_jid_goes_to_the_highest_priority_only(world: World) -> None:
    # §8.5.2.1.1: the most available resource(s), by priority; unavailable ones never.
    sender = world.bind("bob@localhost/desk", priority=0)
    world.bind("alice@localhost/low", priority=1)
    world.bind("alice@localhost/high", priority=7)
    world.bind("alice@localhost/silent")  # not available
    await route(world, sender, message("alice@localhost", "one"))
    assert world.bodies("alice@localhost/high") == ["one"]
    assert world.got("alice@localhost/low") == [] and world.got("alice@localhost/silent") == []


async def test_equal_highest_priorities_all_get_it(world: World) -> None:
    sender = world.bind("bob@localhost/desk", priority=0)
    for resource in ("a", "b"):
        world.bind(f"alice@localhost/{resource}", priority=3)
    world.bind("alice@localhost/c", priority=2)
    await route(world, sender, message("alice@localhost", "both", "normal"))
    assert world.bodies("alice@localhost/a") == ["both"]
    assert world.bodies("alice@localhost/b") == ["both"]
    assert world.got("alice@localhost/c") == []


async def test_negative_priority_never_gets_bare_jid_messages(world: World) -> None:
    # §8.5.2.1.1 / §4.7.2.3: a negative priority gets nothing sent to the bare JID;
    # with no other resource the message is stored offline, not written.
    world.store_offline()
    sender = world.bind("bob@localhost/desk", priority=0)
    world.bind("alice@localhost/bot", priority=-1)
    await route(world, sender, message("alice@localhost", "later"))
    assert world.got("alice@localhost/bot") == []
    (stored,) = world.stored
    assert stored.recipient == "alice@localhost"
    assert stored.stanza.find("body", ns.CLIENT).text == "later"  # type: ignore[union-attr]
    assert world.got("bob@localhost/desk") == []  # stored: no error
    # ... but a message to its full JID reaches it.
    await route(world, sender, message("alice@localhost/bot", "direct"))
    assert world.bodies("alice@localhost/bot") == ["direct"]


async def test_headline_goes_to_every_non_negative_resource(world: World) -> None:
    # §8.5.2.1.2
    sender = world.bind("bob@localhost/desk", priority=0)
    world.bind("alice@localhost/a", priority=0)
    world.bind("alice@localhost/b", priority=9)
    world.bind("alice@localhost/neg", priority=-5)
    await route(world, sender, message("alice@localhost", "news", "headline"))
    assert world.bodies("alice@localhost/a") == ["news"]
    assert world.bodies("alice@localhost/b") == ["news"]
    assert world.got("alice@localhost/neg") == []


async def test_headline_to_an_offline_account_is_dropped_silently(world: World) -> None:
    world.store_offline()
    sender = world.bind("bob@localhost/desk", priority=0)
    await route(world, sender, message("alice@localhost", "news", "headline"))
    assert world.stored == [] and world.got("bob@localhost/desk") == []


async def test_groupchat_to_a_user_is_service_unavailable(world: World) -> None:
    # §8.5.2.1.2 / §8.5.3.2.1
    sender = world.bind("bob@localhost/desk", priority=0)
    world.bind("alice@localhost/a", priority=0)
    await route(world, sender, message("alice@localhost", "room?", "groupchat"))
    assert world.got("alice@localhost/a") == []
    (error,) = world.got("bob@localhost/desk")
    assert error.attrs["type"] == "error" and error.attrs["to"] == "bob@localhost/desk"
    assert condition_of(error) == "service-unavailable"


async def test_no_resource_and_no_storage_bounces_chat(world: World) -> None:
    # §8.5.2.2.1: not stored, so the sender learns it was not delivered.
    sender = world.bind("bob@localhost/desk", priority=0)
    await route(world, sender, message("alice@localhost", "anyone?"))
    (error,) = world.got("bob@localhost/desk")
    assert error.attrs["type"] == "error"
    assert condition_of(error) == "service-unavailable"


async def test_an_error_message_is_never_bounced_or_stored(world: World) -> None:
    world.store_offline()
    sender = world.bind("bob@localhost/desk", priority=0)
    assert world.router.route(sender, message("alice@localhost", "oops", "error")) is None
    assert world.stored == [] and world.got("bob@localhost/desk") == []


async def test_a_missing_account_is_service_unavailable_and_not_stored(world: World) -> None:
    # §8.5.1
    world.store_offline()
    sender = world.bind("bob@localhost/desk", priority=0)
    await route(world, sender, message("nobody@localhost", "hello"))
    assert world.stored == []
    (error,) = world.got("bob@localhost/desk")
    assert condition_of(error) == "service-unavailable"


async def test_the_server_delivers_to_a_bare_jid_with_nobody_to_bounce_to(world: World) -> None:
    world.bind("alice@localhost/a", priority=2)
    world.bind("alice@localhost/b", priority=1)
    note = message("alice@localhost", "registration", None)
    note.attrs["from"] = "localhost"
    assert world.router.deliver_message_to_bare(note, JID.parse("alice@localhost")) is None
    assert world.bodies("alice@localhost/a") == ["registration"]
    assert world.got("alice@localhost/b") == []
    # Nobody online, nothing stored: dropped without an error (nobody to send one to).
    pending = world.router.deliver_message_to_bare(note, JID.parse("carol@localhost"))
    assert pending is not None
    await pending


async def test_an_iq_to_a_connected_resource_is_written_and_a_gone_one_bounced(
    world: World,
) -> None:
    sender = world.bind("bob@localhost/desk", priority=0)
    world.bind("alice@localhost/phone")
    iq = Element("iq", ns.CLIENT, {"type": "get", "id": "v1", "to": "alice@localhost/phone"})
    iq.sub("query", "jabber:iq:version")
    await route(world, sender, iq)
    (got,) = world.got("alice@localhost/phone")
    assert got.attrs["id"] == "v1" and got.attrs["from"] == "bob@localhost/desk"
    gone = Element("iq", ns.CLIENT, {"type": "get", "id": "v2", "to": "alice@localhost/gone"})
    gone.sub("query", "jabber:iq:version")
    await route(world, sender, gone)
    (error,) = world.got("bob@localhost/desk")
    assert error.attrs["id"] == "v2" and error.attrs["type"] == "error"


# ---------------------------------------------------------------- presence and pushes


def presence_xml(sender: str, status: str | None = None) -> str:
    el = Element("presence", ns.CLIENT, {"from": sender})
    if status:
        el.sub("status", text=status)
    return serialize(el)


def test_broadcast_presence_reaches_available_resources_each_addressed(world: World) -> None:
    world.bind("alice@localhost/a", priority=0)
    world.bind("alice@localhost/b", priority=-1)  # negative priority still gets presence
    world.bind("alice@localhost/quiet")  # not available: nothing
    world.bind("carol@localhost/c", priority=0)
    world.router.broadcast_presence(
        ["alice@localhost", "nobody@localhost", "carol@localhost"],
        presence_xml("bob@localhost/desk", "here"),
    )
    for full in ("alice@localhost/a", "alice@localhost/b", "carol@localhost/c"):
        (got,) = world.got(full)
        assert got.attrs == {"to": full, "from": "bob@localhost/desk"}
        assert got.find("status", ns.CLIENT).text == "here"  # type: ignore[union-attr]
    assert world.got("alice@localhost/quiet") == []


def test_broadcast_presence_escapes_the_spliced_address(world: World) -> None:
    world.bind('alice@localhost/a"b&<c>', priority=0)
    world.router.broadcast_presence(["alice@localhost"], presence_xml("bob@localhost/desk"))
    (got,) = world.got('alice@localhost/a"b&<c>')
    assert got.attrs["to"] == 'alice@localhost/a"b&<c>'


def test_presence_to_serves_each_session_once_in_order(world: World) -> None:
    # RFC 6121 §4.5.2: unavailable to subscribers, own resources and directed-presence
    # recipients, once each.
    world.bind("alice@localhost/a", priority=0)
    world.bind("alice@localhost/quiet")
    world.bind("carol@localhost/c", priority=0)
    world.router.presence_to(
        [
            "carol@localhost",
            "alice@localhost",
            "alice@localhost/a",  # already served through the bare JID
            "alice@localhost/quiet",  # a full JID gets it, available or not
            "alice@localhost/gone",
            "carol@localhost",
        ],
        presence_xml("bob@localhost/desk"),
    )
    assert world.order == ["carol@localhost/c", "alice@localhost/a", "alice@localhost/quiet"]
    (got,) = world.got("alice@localhost/quiet")
    assert got.attrs["to"] == "alice@localhost/quiet"


def test_send_presence_of_answers_a_probe_with_each_available_resource(world: World) -> None:
    # RFC 6121 §4.3.2: the last presence of each available resource.
    world.bind("alice@localhost/a", priority=1)
    world.bind("alice@localhost/b", priority=2)
    world.bind("alice@localhost/quiet")
    bob = world.bind("bob@localhost/desk", priority=0)
    world.bind("bob@localhost/away")  # not available: a bare JID target skips it
    world.router.send_presence_of("alice@localhost", bob.full)
    got = world.got(bob.full)
    assert [(el.attrs["from"], el.attrs["to"]) for el in got] == [
        ("alice@localhost/a", bob.full),
        ("alice@localhost/b", bob.full),
    ]
    assert [el.find("priority", ns.CLIENT).text for el in got] == ["1", "2"]  # type: ignore[union-attr]
    world.router.send_presence_of("alice@localhost", "bob@localhost")
    assert len(world.got(bob.full)) == 2 and world.got("bob@localhost/away") == []
    world.router.send_presence_of("carol@localhost", bob.full)  # nobody online
    assert world.got(bob.full) == []


def test_send_unavailable_of_comes_from_each_available_resource(world: World) -> None:
    # RFC 6121 §3.2.2: a cancelled subscription: the contact sees each resource leave.
    world.bind("alice@localhost/a", priority=1)
    world.bind("alice@localhost/b", priority=-1)
    world.bind("alice@localhost/quiet")
    world.bind("bob@localhost/desk", priority=0)
    world.router.send_unavailable_of("alice@localhost", "bob@localhost")
    got = world.got("bob@localhost/desk")
    assert [el.attrs for el in got] == [
        {"to": "bob@localhost/desk", "from": f"alice@localhost/{r}", "type": "unavailable"}
        for r in ("a", "b")
    ]


def test_deliver_to_available_keeps_the_address_the_client_wrote(world: World) -> None:
    # RFC 6121 §4.6: directed presence to a bare JID.
    world.bind("alice@localhost/a", priority=0)
    world.bind("alice@localhost/quiet")
    directed = Element(
        "presence", ns.CLIENT, {"to": "alice@localhost", "from": "bob@localhost/desk"}
    )
    world.router.deliver_to_available("alice@localhost", directed)
    (got,) = world.got("alice@localhost/a")
    assert got.attrs["to"] == "alice@localhost"
    assert world.got("alice@localhost/quiet") == []
    assert world.router.deliver_to_full(JID.parse("alice@localhost/quiet"), directed)
    assert not world.router.deliver_to_full(JID.parse("alice@localhost/gone"), directed)
    assert len(world.got("alice@localhost/quiet")) == 1


def test_push_reaches_interested_resources_each_with_its_own_id(world: World) -> None:
    # RFC 6121 §2.1.6: roster pushes go to resources that requested the roster.
    for resource in ("a", "b"):
        world.bind(f"alice@localhost/{resource}").interested = True
    world.bind("alice@localhost/c")  # never asked for the roster
    query = Element("query", ns.ROSTER, {"ver": "7"})
    query.sub("item", ns.ROSTER, {"jid": "bob@localhost", "subscription": "none"})
    world.router.push("alice@localhost", query)
    ids = set()
    for full in ("alice@localhost/a", "alice@localhost/b"):
        (iq,) = world.got(full)
        assert (iq.attrs["type"], iq.attrs["to"]) == ("set", full)
        assert iq.attrs["id"].startswith("push")
        ids.add(iq.attrs["id"])
        pushed = iq.find("query", ns.ROSTER)
        assert pushed is not None and pushed.attrs["ver"] == "7"
        assert pushed.find("item", ns.ROSTER).attrs["jid"] == "bob@localhost"  # type: ignore[union-attr]
    assert len(ids) == 2
    assert world.got("alice@localhost/c") == []


async def test_a_released_session_gets_nothing_more(world: World) -> None:
    sender = world.bind("bob@localhost/desk", priority=0)
    alice = world.bind("alice@localhost/a", priority=0)
    world.directory.release(alice)
    await route(world, sender, message("alice@localhost/a", "late"))
    world.router.broadcast_presence(["alice@localhost"], presence_xml(sender.full))
    assert world.got("alice@localhost/a") == []
    assert len(world.got("bob@localhost/desk")) == 1  # the message bounced


def test_routing_needs_no_event_loop(world: World) -> None:
    # The hot path is synchronous: a message to an online resource returns nothing
    # to await (a running loop would hide a stray coroutine).
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    sender = world.bind("bob@localhost/desk", priority=0)
    world.bind("alice@localhost/a", priority=0)
    assert world.router.route(sender, message("alice@localhost/a", "x")) is None
    assert world.router.route(sender, message("alice@localhost", "y")) is None
    assert world.bodies("alice@localhost/a") == ["x", "y"]
