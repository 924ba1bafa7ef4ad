"""XEP-0191 blocking through the real connection, router and modules (no sockets).

Each behaviour is checked on what the server writes to the clients: the list
and its pushes, the errors of §3.3 both ways, nothing delivered or stored from a
blocked entity, and the presence a block withdraws and an unblock restores.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatgate.jid import JID
from chatgate.modules import blocking as blocking_module
from chatgate.modules.blocking import LocalBlocklistCache, matches
from chatgate.modules.roster.subscription import SubscriptionStanza

from .wire import Server, Wire

C = "{jabber:client}"
B = "{urn:xmpp:blocking}"
STANZAS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"
USERS = ("alice", "bob", "carol")


@contextlib.asynccontextmanager
async def server(tmp: Path, modules: dict[str, Any] | None = None) -> AsyncIterator[Server]:
    srv = await Server.start(tmp, modules or {})
    for name in USERS:
        await srv.add_user(name, f"{name}-pw")
    try:
        yield srv
    finally:
        await srv.stop()


class Client:
    """A logged-in wire and what it was sent since it was last asked."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.seen = len(wire.transport.out)

    async def send(self, text: str) -> list[ET.Element]:
        await self.wire.send(text)
        return self.take()

    def take(self) -> list[ET.Element]:
        out = self.wire.transport.out[self.seen :].decode()
        self.seen = len(self.wire.transport.out)
        return list(ET.fromstring(f"<r xmlns='jabber:client'>{out}</r>"))


async def login(srv: Server, user: str, resource: str = "r", *, presence: bool = True) -> Client:
    wire = srv.connect()
    assert "<jid>" in await wire.login_plain(user, f"{user}-pw", resource)
    client = Client(wire)
    # What an IM client does: the roster (so it gets pushes), then presence.
    await client.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
    if presence:
        await client.send("<presence/>")
    return client


async def befriend(srv: Server, a: str, b: str) -> None:
    presence = srv.module("presence")
    for kind in (SubscriptionStanza.SUBSCRIBE, SubscriptionStanza.SUBSCRIBED):
        await presence.process_outbound((a, "localhost"), f"{b}@localhost", kind)
        await presence.process_outbound((b, "localhost"), f"{a}@localhost", kind)


def iq(kind: str, payload: str, iq_id: str = "b1") -> str:
    return f"<iq type='{kind}' id='{iq_id}'>{payload}</iq>"


def block(*jids: str) -> str:
    items = "".join(f"<item jid='{j}'/>" for j in jids)
    return iq("set", f"<block xmlns='urn:xmpp:blocking'>{items}</block>")


def unblock(*jids: str) -> str:
    items = "".join(f"<item jid='{j}'/>" for j in jids)
    return iq("set", f"<unblock xmlns='urn:xmpp:blocking'>{items}</unblock>")


def chat(to: str, body: str, msg_id: str = "m1") -> str:
    return f"<message to='{to}' type='chat' id='{msg_id}'><body>{body}</body></message>"


def of(els: list[ET.Element], name: str, **attrs: str) -> list[ET.Element]:
    return [e for e in els if e.tag == C + name and all(e.get(k) == v for k, v in attrs.items())]


def condition(el: ET.Element) -> str:
    error = el.find(C + "error")
    assert error is not None, ET.tostring(el)
    (cond,) = (c for c in error if c.tag.startswith(STANZAS) and not c.tag.endswith("}text"))
    return cond.tag.split("}")[1]


async def blocklist(client: Client) -> list[str]:
    (result,) = of(
        await client.send(iq("get", "<blocklist xmlns='urn:xmpp:blocking'/>", "g")),
        "iq",
        id="g",
    )
    assert result.get("type") == "result"
    payload = result.find(B + "blocklist")
    assert payload is not None
    return [i.get("jid", "") for i in payload.findall(B + "item")]


# ---------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("item", "jid", "blocked"),
    [
        ("bob@x", "bob@x/phone", True),
        ("bob@x", "bob@x", True),
        ("bob@x/phone", "bob@x/phone", True),
        ("bob@x/phone", "bob@x/desk", False),
        ("bob@x/phone", "bob@x", False),
        ("x", "bob@x/phone", True),
        ("x", "x", True),
        ("x/res", "x/res", True),
        ("x/res", "bob@x/res", False),
        ("x", "bob@y", False),
        ("bob@x", "rob@x/phone", False),
    ],
)
def test_matching_follows_xep_0016(item: str, jid: str, blocked: bool) -> None:
    assert matches(frozenset({item}), JID.parse(jid)) is blocked


def test_cache_counts_non_empty_lists_and_is_bounded() -> None:
    cache = LocalBlocklistCache(max_entries=2, max_bytes=10_000)
    cache.put("a@x", frozenset({"b@x"}), pinned=True)
    for name in ("c@x", "d@x", "e@x"):
        cache.put(name, frozenset({"z@x"}), pinned=False)
    # Two of the three unpinned lists stay; the pinned one is never evicted.
    assert cache.get("c@x") is None and cache.get("e@x") == frozenset({"z@x"})
    assert cache.get("a@x") == frozenset({"b@x"})
    assert cache.blocking == 3
    cache.changed("a@x", frozenset())
    assert cache.blocking == 2 and cache.get("a@x") == frozenset()
    cache.unpin("a@x")  # now in the LRU: evicts d@x
    assert cache.get("d@x") is None and cache.blocking == 1


# ---------------------------------------------------------------- the list


async def test_block_get_unblock_and_pushes_to_other_interested_resources(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as srv:
        desk = await login(srv, "alice", "desk")
        phone = await login(srv, "alice", "phone")
        assert await blocklist(desk) == []
        out = await desk.send(block("bob@localhost", "Carol@LocalHost/Res", "spam.example"))
        assert [e.get("type") for e in of(out, "iq", id="b1")] == ["result"]
        pushes = of(phone.take(), "iq", type="set")
        assert len(pushes) == 1
        pushed = pushes[0].find(B + "block")
        assert pushed is not None
        assert [i.get("jid") for i in pushed.findall(B + "item")] == [
            "bob@localhost",
            "carol@localhost/Res",  # prepared, as stored
            "spam.example",
        ]
        assert await blocklist(phone) == [
            "bob@localhost",
            "carol@localhost/Res",
            "spam.example",
        ]
        # Unblocking one pushes that one; unblocking all pushes an empty <unblock/>.
        await desk.send(unblock("bob@localhost"))
        (push,) = of(phone.take(), "iq", type="set")
        unblocked = push.find(B + "unblock")
        assert unblocked is not None
        assert [i.get("jid") for i in unblocked.findall(B + "item")] == ["bob@localhost"]
        await desk.send(unblock())
        (push,) = of(phone.take(), "iq", type="set")
        unblocked = push.find(B + "unblock")
        assert unblocked is not None and list(unblocked) == []
        assert await blocklist(desk) == []
        # Stored: a new session of a fresh server reads the same (empty) list.
        assert await srv.module("blocking").repository.items(("alice", "localhost")) == set()


async def test_bad_requests_are_refused_with_precise_conditions(tmp_path: Path) -> None:
    async with server(tmp_path, {"blocking": {"max_items": 2}}) as srv:
        alice = await login(srv, "alice")
        cases = {
            iq("set", "<block xmlns='urn:xmpp:blocking'/>"): "bad-request",
            block("bad@@jid"): "jid-malformed",
            iq("set", "<block xmlns='urn:xmpp:blocking'><item/></block>"): "bad-request",
            iq("set", "<nothing xmlns='urn:xmpp:blocking'/>"): "bad-request",
            block("a@x", "b@x", "c@x"): "resource-constraint",
        }
        for text, expected in cases.items():
            (reply,) = of(await alice.send(text), "iq", id="b1")
            assert reply.get("type") == "error" and condition(reply) == expected, text
        assert await blocklist(alice) == []
        await alice.send(block("a@x", "b@x"))
        (reply,) = of(await alice.send(block("c@x")), "iq", id="b1")
        assert condition(reply) == "resource-constraint"
        assert await blocklist(alice) == ["a@x", "b@x"]


async def test_disabled_module_offers_nothing(tmp_path: Path) -> None:
    async with server(tmp_path, {"blocking": {"enabled": False}}) as srv:
        alice = await login(srv, "alice")
        (reply,) = of(await alice.send(block("bob@localhost")), "iq", id="b1")
        assert condition(reply) == "service-unavailable"
        bob = await login(srv, "bob")
        await bob.send(chat("alice@localhost", "hi"))
        assert [m.findtext(C + "body") for m in of(alice.take(), "message")] == ["hi"]


# ---------------------------------------------------------------- enforcement


async def test_blocked_messages_and_iqs_are_answered_service_unavailable(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice", "desk")
        bob = await login(srv, "bob", "phone")
        await alice.send(block("bob@localhost"))
        alice.take()
        out = await bob.send(chat("alice@localhost", "to bare"))
        out += await bob.send(chat("alice@localhost/desk", "to full", "m2"))
        out += await bob.send(
            "<iq type='get' id='v' to='alice@localhost/desk'><query xmlns='jabber:iq:version'/></iq>"
        )
        out += await bob.send("<iq type='result' id='r' to='alice@localhost/desk'/>")
        errors = {e.get("id"): condition(e) for e in out if e.get("type") == "error"}
        assert errors == {
            "m1": "service-unavailable",
            "m2": "service-unavailable",
            "v": "service-unavailable",
        }
        assert of(alice.take(), "message") == [] and of(alice.take(), "iq") == []
        # Another contact still gets through.
        carol = await login(srv, "carol")
        await carol.send(chat("alice@localhost", "from carol"))
        assert [m.findtext(C + "body") for m in of(alice.take(), "message")] == ["from carol"]


async def test_messages_to_a_blocked_jid_are_refused_not_acceptable_blocked(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        await alice.send(block("bob@localhost"))
        out = await alice.send(chat("bob@localhost", "hello", "x1"))
        (error,) = of(out, "message", type="error")
        assert error.get("id") == "x1" and condition(error) == "not-acceptable"
        err = error.find(C + "error")
        assert err is not None and err.get("type") == "cancel"
        assert err.find("{urn:xmpp:blocking:errors}blocked") is not None
        assert of(bob.take(), "message") == []
        # An error or a result to the blocked JID is dropped, never answered.
        out = await alice.send("<iq type='result' id='q' to='bob@localhost/r'/>")
        assert of(out, "iq") == []
        # Unblocked: both ways work again.
        await alice.send(unblock("bob@localhost"))
        await alice.send(chat("bob@localhost", "again", "x2"))
        assert [m.findtext(C + "body") for m in of(bob.take(), "message")] == ["again"]
        await bob.send(chat("alice@localhost", "back", "y1"))
        assert [m.findtext(C + "body") for m in of(alice.take(), "message")] == ["back"]


async def test_domain_block_covers_every_account_of_the_domain(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.send(block("localhost/nothing", "localhost"))
        carol = await login(srv, "carol")
        out = await carol.send(chat("alice@localhost", "hi"))
        assert [condition(e) for e in of(out, "message", type="error")] == ["service-unavailable"]


async def test_a_domain_block_never_cuts_the_user_off_from_their_own_resources(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as srv:
        desk = await login(srv, "alice", "desk")
        phone = await login(srv, "alice", "phone")
        await desk.send(block("localhost"))
        out = await desk.send(chat("alice@localhost/phone", "note to self"))
        assert of(out, "message", type="error") == []
        assert [m.findtext(C + "body") for m in of(phone.take(), "message")] == ["note to self"]


async def test_blocked_sender_cannot_fill_an_offline_blocker_store(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        await alice.send(block("bob@localhost"))
        alice.wire.conn.connection_lost()
        await alice.wire.settle()
        # alice is offline: her list leaves the pinned cache, bob's message waits for
        # it to be read again and is refused; nothing is stored for her.
        srv.module("blocking").cache.forget("alice@localhost")
        bob = await login(srv, "bob")
        out = await bob.send(chat("alice@localhost", "stored?"))
        out += await bob.send(chat("alice@localhost", "second", "m2"))
        assert [(e.get("id"), condition(e)) for e in of(out, "message", type="error")] == [
            ("m1", "service-unavailable"),
            ("m2", "service-unavailable"),
        ]
        assert await srv.db.offline.count(("alice", "localhost")) == 0
        # carol's message to offline alice is stored as usual.
        carol = await login(srv, "carol")
        assert of(await carol.send(chat("alice@localhost", "kept")), "message") == []
        assert await srv.db.offline.count(("alice", "localhost")) == 1


async def test_a_list_too_large_for_the_cache_is_still_enforced(tmp_path: Path) -> None:
    async with server(tmp_path, {"blocking": {"cache_bytes": 1024}}) as srv:
        alice = await login(srv, "alice")
        long = "x" * 1000 + "@example.org"
        (reply,) = of(await alice.send(block("bob@localhost", long)), "iq", id="b1")
        assert reply.get("type") == "result"
        alice.wire.conn.connection_lost()
        await alice.wire.settle()
        bob = await login(srv, "bob")
        out = await bob.send(chat("alice@localhost", "one"))
        out += await bob.send(chat("alice@localhost", "two", "m2"))
        assert [condition(e) for e in of(out, "message", type="error")] == [
            "service-unavailable",
            "service-unavailable",
        ]
        assert srv.module("blocking").cache.get("alice@localhost") is None


async def test_waiting_stanzas_keep_their_order(tmp_path: Path) -> None:
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        # Both lists dropped: bob's messages wait for alice's list, in order.
        blocking = srv.module("blocking")
        blocking.cache.forget("alice@localhost")
        blocking.cache.forget("bob@localhost")
        text = "".join(chat("alice@localhost", f"n{i}", f"m{i}") for i in range(20))
        await bob.send(text)
        assert [m.findtext(C + "body") for m in of(alice.take(), "message")] == [
            f"n{i}" for i in range(20)
        ]


async def test_too_many_waiting_stanzas_are_refused_resource_constraint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blocking_module, "MAX_WAITING_PER_ACCOUNT", 3)
    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        module = srv.module("blocking")
        module.lists.blockers = None  # whether alice blocks anyone: unknown, read it
        module.cache.forget("alice@localhost")
        text = "".join(chat("alice@localhost", f"n{i}", f"m{i}") for i in range(5))
        out = await bob.send(text)
        refused = [(e.get("id"), condition(e)) for e in of(out, "message", type="error")]
        assert refused == [("m3", "resource-constraint"), ("m4", "resource-constraint")]
        assert [m.findtext(C + "body") for m in of(alice.take(), "message")] == [
            "n0",
            "n1",
            "n2",
        ]


async def test_a_resource_that_requested_only_its_blocklist_gets_the_pushes(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as srv:
        desk = await login(srv, "alice", "desk")
        wire = srv.connect()
        assert "<jid>" in await wire.login_plain("alice", "alice-pw", "bare")
        bare_client = Client(wire)  # no roster: only the blocklist (XEP-0191 §3.3)
        silent_wire = srv.connect()
        assert "<jid>" in await silent_wire.login_plain("alice", "alice-pw", "silent")
        silent = Client(silent_wire)
        assert await blocklist(bare_client) == []
        await desk.send(block("bob@localhost"))
        pushes = of(bare_client.take(), "iq", type="set")
        assert len(pushes) == 1 and pushes[0].find(B + "block") is not None
        # A resource that asked for neither the roster nor the blocklist gets none.
        assert of(silent.take(), "iq", type="set") == []


async def test_accounts_that_block_nobody_cost_no_read_and_a_blocker_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with server(tmp_path) as srv:
        carol = await login(srv, "carol")
        await carol.send(block("bob@localhost"))
    # A new start on the same database learns who blocks anyone in one query;
    # logins of the others and messages between them then read no list.
    srv = await Server.start(tmp_path, {})
    try:
        module = srv.module("blocking")
        assert module.lists.blockers == {"carol@localhost"}
        reads: list[tuple[str, str]] = []
        items = module.repository.items

        async def counted(owner: tuple[str, str]) -> frozenset[str]:
            reads.append(owner)
            return await items(owner)

        monkeypatch.setattr(module.repository, "items", counted)
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        await bob.send(chat("alice@localhost", "hello", "m1"))
        assert [m.findtext(C + "body") for m in of(alice.take(), "message")] == ["hello"]
        assert reads == []
        # carol's list is read at her login, and holds.
        carol = await login(srv, "carol")
        assert reads == [("carol", "localhost")]
        out = await bob.send(chat("carol@localhost", "hi", "m2"))
        assert [condition(e) for e in of(out, "message", type="error")] == ["service-unavailable"]
        # A block made now is known at once.
        await alice.send(block("bob@localhost"))
        assert "alice@localhost" in module.lists.blockers
        out = await bob.send(chat("alice@localhost", "again", "m3"))
        assert [condition(e) for e in of(out, "message", type="error")] == ["service-unavailable"]
        assert carol is not None
    finally:
        await srv.stop()


# ---------------------------------------------------------------- presence


async def test_block_withdraws_presence_both_ways_and_unblock_restores_it(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as srv:
        await befriend(srv, "alice", "bob")
        alice = await login(srv, "alice", "desk")
        bob = await login(srv, "bob", "phone")
        alice.take()
        out = await alice.send(block("bob@localhost"))
        # §3.3: bob sees alice go unavailable; alice sees bob go unavailable too.
        assert [p.get("from") for p in of(bob.take(), "presence", type="unavailable")] == [
            "alice@localhost/desk"
        ]
        assert [p.get("from") for p in of(out, "presence", type="unavailable")] == [
            "bob@localhost/phone"
        ]
        # Later presence does not pass either way, nor does directed presence or a
        # subscription request.
        out = await alice.send("<presence><show>away</show></presence>")
        assert [p.get("from") for p in of(out, "presence")] == ["alice@localhost/desk"]
        assert of(bob.take(), "presence") == []
        out = await bob.send("<presence><show>dnd</show></presence>")
        out += await bob.send("<presence to='alice@localhost'/>")
        out += await bob.send("<presence to='alice@localhost' type='subscribe'/>")
        assert [p.get("from") for p in of(out, "presence")] == ["bob@localhost/phone"]
        assert of(alice.take(), "presence") == []
        # A new resource of alice probes nobody blocked.
        laptop = await login(srv, "alice", "laptop", presence=False)
        froms = [p.get("from", "") for p in of(await laptop.send("<presence/>"), "presence")]
        assert "alice@localhost/laptop" in froms and "bob@localhost/phone" not in froms
        assert of(bob.take(), "presence") == []
        # Unblocked: each sees the other's current presence again.
        alice.take()  # laptop's presence
        out = await alice.send(unblock("bob@localhost"))
        seen_by_bob = {p.get("from") for p in of(bob.take(), "presence")}
        assert seen_by_bob == {"alice@localhost/desk", "alice@localhost/laptop"}
        assert {p.get("from") for p in of(out, "presence")} == {"bob@localhost/phone"}
        # and presence flows again
        await bob.send("<presence><show>chat</show></presence>")
        assert {p.get("from") for p in of(alice.take(), "presence")} == {"bob@localhost/phone"}


async def test_the_blocked_contacts_initial_presence_and_probes_leave_the_blocker_out(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as srv:
        await befriend(srv, "alice", "bob")
        alice = await login(srv, "alice")
        await alice.send(block("bob@localhost"))
        bob = await login(srv, "bob", presence=False)
        out = await bob.send("<presence/>")
        assert of(alice.take(), "presence") == []
        assert [p.get("from") for p in of(out, "presence")] == ["bob@localhost/r"]
        # without the block, the probe answers with alice's presence
        await alice.send(unblock())
        carol_probe = await login(srv, "bob", "other", presence=False)
        out = await carol_probe.send("<presence/>")
        assert "alice@localhost/r" in [p.get("from") for p in of(out, "presence")]


async def test_a_request_waiting_from_a_contact_blocked_since_is_not_delivered(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as srv:
        presence = srv.module("presence")
        for who in ("bob", "carol"):
            await presence.process_outbound(
                (who, "localhost"), "alice@localhost", SubscriptionStanza.SUBSCRIBE
            )
        alice = await login(srv, "alice", presence=False)
        await alice.send(block("bob@localhost"))
        alice.wire.conn.connection_lost()
        await alice.wire.settle()
        again = await login(srv, "alice", "other", presence=False)
        out = await again.send("<presence/>")
        requests = [p.get("from") for p in of(out, "presence", type="subscribe")]
        assert requests == ["carol@localhost"]


async def test_a_list_the_database_cannot_give_counts_as_empty_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatgate.storage.errors import StorageUnavailable

    async with server(tmp_path) as srv:
        alice = await login(srv, "alice")
        bob = await login(srv, "bob")
        module = srv.module("blocking")
        module.lists.blockers = None  # as in a cluster: alice's list must be read
        module.cache.forget("alice@localhost")

        async def unreachable(owner: tuple[str, str]) -> frozenset[str]:
            raise StorageUnavailable("the database is unreachable")

        monkeypatch.setattr(module.repository, "items", unreachable)
        out = await bob.send(chat("alice@localhost", "still here", "m1"))
        assert of(out, "message", type="error") == []
        assert [m.findtext(C + "body") for m in of(alice.take(), "message")] == ["still here"]
        assert module.cache.get("alice@localhost") is None  # nothing remembered
