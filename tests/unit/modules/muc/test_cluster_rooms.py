"""Group chat across the nodes of a cluster: real servers (`chatgate.server.Server`,
`[cluster]` enabled) on one SQLite file and one redis-server, clients on real TCP
connections, their stanzas parsed with ElementTree.

Each room is owned by one node (`peers.owner`); the tests pick room names owned
by a given node, so a client on the other node always goes through forwarding."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.peers import PeerRefused, rendezvous_owner
from chatgate.server import Server
from tests.redis_server import RedisServer
from tests.unit.cluster.conftest import redis_server, redis_server_session  # noqa: F401
from tests.unit.cluster.test_bosh_forwarding import cluster_config

C = "{jabber:client}"
MUC = "http://jabber.org/protocol/muc"
USER = "{http://jabber.org/protocol/muc#user}"
STANZAS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"
SERVICE = "conference.localhost"
USERS = ("alice", "bob", "carol")
NODES = ("alpha", "beta")


def room_owned_by(node: str, nodes: tuple[str, ...] = NODES, prefix: str = "room") -> str:
    """A room JID that `node` owns among `nodes`."""
    for i in range(1000):
        jid = f"{prefix}{i}@{SERVICE}"
        if rendezvous_owner(jid, nodes) == node:
            return jid
    raise AssertionError("no such room name")


class RawClient:
    """A client on a TCP connection: logs in with PLAIN, binds, reads stanzas."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.full = ""
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.stanzas: list[ET.Element] = []
        #: every stanza received, `expect` consuming none of them
        self.received: list[ET.Element] = []

    @classmethod
    async def login(cls, server: Server, user: str, resource: str = "r") -> RawClient:
        port = server.listeners[0].port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        await client._negotiate(user, resource)
        return client

    async def _negotiate(self, user: str, resource: str) -> None:
        import base64

        opening = (
            "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        self.writer.write(opening.encode())
        await self._until(b"</stream:features>")
        token = base64.b64encode(f"\0{user}\0{user}-pw".encode()).decode()
        self.writer.write(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
        )
        assert b"<success" in await self._until(b"success", b"failure")
        self.writer.write(opening.encode())
        await self._until(b"</stream:features>")
        self.writer.write(
            f"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>".encode()
        )
        answer = (await self._until(b"</iq>")).decode()
        self.full = answer.split("<jid>")[1].split("</jid>")[0]
        self.feed(b"<stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        self.send("<presence/>")

    async def _until(self, *markers: bytes) -> bytes:
        data = b""
        while not any(m in data for m in markers):
            chunk = await asyncio.wait_for(self.reader.read(65536), 5)
            assert chunk, data
            data += chunk
        return data

    def feed(self, data: bytes) -> None:
        self.parser.feed(data)
        for event, el in self.parser.read_events():
            if event == "start":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.stanzas.append(el)
                    self.received.append(el)

    def send(self, text: str) -> None:
        self.writer.write(text.encode())

    async def expect(self, match: Callable[[ET.Element], bool], timeout: float = 5.0) -> ET.Element:
        """The first stanza received (now or within `timeout`) that `match`es; the
        stanzas before it are consumed."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for i, el in enumerate(self.stanzas):
                if match(el):
                    del self.stanzas[: i + 1]
                    return el
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                got = [ET.tostring(e).decode() for e in self.stanzas]
                raise AssertionError(f"{self.full}: nothing matched; got {got}")
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                continue
            assert chunk, "connection closed"
            self.feed(chunk)

    async def join(self, room: str, nick: str) -> ET.Element:
        """Join (creating and unlocking the room when it is new); the own presence."""
        self.send(f"<presence to='{room}/{nick}'><x xmlns='{MUC}'/></presence>")
        own = await self.expect(
            lambda e: e.get("from") == f"{room}/{nick}" and e.tag == C + "presence"
        )
        if "201" in codes(own):
            self.send(
                f"<iq type='set' id='instant' to='{room}'><query "
                "xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' "
                "type='submit'/></query></iq>"
            )
            await self.expect(lambda e: e.get("id") == "instant" and e.get("type") == "result")
        return own

    def close(self) -> None:
        self.writer.close()


def codes(el: ET.Element) -> set[str]:
    x = el.find(USER + "x")
    return {s.get("code", "") for s in x.findall(USER + "status")} if x is not None else set()


def body(text: str) -> Callable[[ET.Element], bool]:
    return lambda e: e.tag == C + "message" and e.findtext(C + "body") == text


def condition(el: ET.Element) -> str:
    err = el.find(C + "error")
    assert err is not None, ET.tostring(el)
    found = [c.tag for c in err if c.tag.startswith(STANZAS) and not c.tag.endswith("}text")]
    return found[0].removeprefix(STANZAS)


@contextlib.asynccontextmanager
async def cluster(
    tmp: Path, redis: RedisServer, names: tuple[str, ...] = NODES
) -> AsyncIterator[list[Server]]:
    servers: list[Server] = []
    try:
        for name in names:
            server = Server(cluster_config(tmp, redis, name, http={"enabled": False}))
            await server.start()
            servers.append(server)
        ctx = servers[0].ctx
        assert ctx is not None
        for user in USERS:
            await ctx.db.accounts.create(
                user, "localhost", derive_all(f"{user}-pw", iterations=4096)
            )
        for server in servers:
            assert server.ctx is not None
            for user in USERS:
                server.ctx.provider.invalidate(user, "localhost")  # type: ignore[attr-defined]
        deadline = asyncio.get_running_loop().time() + 10
        while any(s.ctx is not None and s.ctx.peers.alive() != set(names) for s in servers):
            assert asyncio.get_running_loop().time() < deadline, "the nodes never saw each other"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)  # late subscriptions take effect within a second
        yield servers
    finally:
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                await server.stop()


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Server]]:  # noqa: F811
    async with cluster(tmp_path, redis_server) as servers:
        yield servers


def rooms_of(server: Server) -> set[str]:
    assert server.ctx is not None
    record = server.ctx.modules.get("muc")
    assert record is not None
    registry = record.module.registry  # type: ignore[attr-defined]
    return {room.jid for room in registry.rooms(SERVICE)}


async def test_occupants_on_two_nodes_share_one_room_on_its_owner(nodes: list[Server]) -> None:
    alpha, beta = nodes
    room = room_owned_by("alpha")
    alice = await RawClient.login(beta, "alice")  # not on the owner: forwarded
    bob = await RawClient.login(alpha, "bob")
    carol = await RawClient.login(beta, "carol")
    try:
        own = await alice.join(room, "Alice")
        assert {"110", "201"} <= codes(own)
        await bob.join(room, "Bob")
        await carol.join(room, "Carol")
        assert rooms_of(alpha) == {room} and rooms_of(beta) == set()
        # everyone saw Carol arrive
        for client in (alice, bob):
            await client.expect(lambda e: e.get("from") == f"{room}/Carol")
        # groupchat from a non-owner node reaches every occupant on both nodes
        alice.send(f"<message to='{room}' type='groupchat'><body>hello all</body></message>")
        for client in (alice, bob, carol):
            msg = await client.expect(body("hello all"))
            assert msg.get("from") == f"{room}/Alice"
            sid = msg.find("{urn:xmpp:sid:0}stanza-id")
            assert sid is not None and sid.get("by") == room
        # a private message between two occupants of the non-owner node
        carol.send(f"<message to='{room}/Alice' type='chat'><body>psst</body></message>")
        private = await alice.expect(body("psst"))
        assert private.get("from") == f"{room}/Carol"
        # a subject set from the non-owner node
        alice.send(f"<message to='{room}' type='groupchat'><subject>Plans</subject></message>")
        for client in (bob, carol):
            subject = await client.expect(lambda e: e.findtext(C + "subject") == "Plans")
            assert subject.get("from") == f"{room}/Alice"
        # the owner (Alice, on beta) kicks Bob (on alpha): forwarded and applied
        alice.send(
            f"<iq type='set' id='kick' to='{room}'><query xmlns='http://jabber.org/protocol/"
            "muc#admin'><item nick='Bob' role='none'/></query></iq>"
        )
        await alice.expect(lambda e: e.get("id") == "kick" and e.get("type") == "result")
        gone = await bob.expect(
            lambda e: e.get("from") == f"{room}/Bob" and e.get("type") == "unavailable"
        )
        assert {"307", "110"} <= codes(gone)
        # a session that ends on a non-owner node leaves the room
        carol.close()
        left = await alice.expect(
            lambda e: e.get("from") == f"{room}/Carol" and e.get("type") == "unavailable"
        )
        assert left.tag == C + "presence"
    finally:
        for client in (alice, bob, carol):
            client.close()


async def test_history_reaches_a_late_joiner_on_another_node(nodes: list[Server]) -> None:
    alpha, beta = nodes
    room = room_owned_by("beta")
    alice = await RawClient.login(alpha, "alice")
    try:
        await alice.join(room, "Alice")
        assert rooms_of(beta) == {room} and rooms_of(alpha) == set()
        for i in range(3):
            alice.send(f"<message to='{room}' type='groupchat'><body>m{i}</body></message>")
            await alice.expect(body(f"m{i}"))
        bob = await RawClient.login(alpha, "bob")
        try:
            await bob.join(room, "Bob")
            for i in range(3):
                late = await bob.expect(body(f"m{i}"))
                assert late.find("{urn:xmpp:delay}delay") is not None
        finally:
            bob.close()
    finally:
        alice.close()


async def test_service_items_list_the_public_rooms_of_every_node(nodes: list[Server]) -> None:
    alpha, beta = nodes
    on_alpha, on_beta = room_owned_by("alpha"), room_owned_by("beta")
    alice = await RawClient.login(alpha, "alice")
    try:
        await alice.join(on_alpha, "A")
        await alice.join(on_beta, "A")
        for server in (alpha, beta):
            bob = await RawClient.login(server, "bob", f"list-{server.cluster.name}")  # type: ignore[union-attr]
            try:
                bob.send(
                    f"<iq type='get' id='items' to='{SERVICE}'>"
                    "<query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
                )
                reply = await bob.expect(lambda e: e.get("id") == "items")
                items = reply.findall(
                    "{http://jabber.org/protocol/disco#items}query/"
                    "{http://jabber.org/protocol/disco#items}item"
                )
                assert {i.get("jid") for i in items} == {on_alpha, on_beta}
                # RSM pages (XEP-0059) span the nodes: one room a page, in JID order
                seen: list[str] = []
                cursor = ""
                for turn in range(3):
                    after = f"<after>{cursor}</after>" if cursor else ""
                    bob.send(
                        f"<iq type='get' id='p{turn}' to='{SERVICE}'>"
                        "<query xmlns='http://jabber.org/protocol/disco#items'>"
                        f"<set xmlns='http://jabber.org/protocol/rsm'><max>1</max>{after}"
                        "</set></query></iq>"
                    )
                    reply = await bob.expect(lambda e, t=turn: e.get("id") == f"p{t}")
                    query = reply.find("{http://jabber.org/protocol/disco#items}query")
                    assert query is not None
                    rsm = query.find("{http://jabber.org/protocol/rsm}set")
                    assert rsm is not None
                    assert rsm.findtext("{http://jabber.org/protocol/rsm}count") == "2"
                    page = [
                        i.get("jid", "")
                        for i in query.findall("{http://jabber.org/protocol/disco#items}item")
                    ]
                    seen += page
                    if not page:
                        break
                    first = rsm.find("{http://jabber.org/protocol/rsm}first")
                    assert first is not None and first.get("index") == str(turn)
                    cursor = rsm.findtext("{http://jabber.org/protocol/rsm}last") or ""
                assert seen == sorted([on_alpha, on_beta])
            finally:
                bob.close()
    finally:
        alice.close()


async def test_a_session_of_a_node_without_redis_gets_a_wait_error_and_local_rooms_work(
    nodes: list[Server],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    _alpha, beta = nodes
    remote, local = room_owned_by("alpha"), room_owned_by("beta")
    alice = await RawClient.login(beta, "alice")
    bob = await RawClient.login(beta, "bob")
    try:
        await alice.join(local, "Alice")
        await bob.join(local, "Bob")
        redis_server.stop()
        assert beta.cluster is not None
        deadline = asyncio.get_running_loop().time() + 10
        while beta.cluster.connected:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        alice.send(f"<presence to='{remote}/Alice'><x xmlns='{MUC}'/></presence>")
        refused = await alice.expect(lambda e: e.get("from") == f"{remote}/Alice", timeout=12)
        assert refused.get("type") == "error"
        assert condition(refused) == "resource-constraint"
        assert refused.find(C + "error").get("type") == "wait"  # type: ignore[union-attr]
        # the room this node owns keeps working
        bob.send(f"<message to='{local}' type='groupchat'><body>still here</body></message>")
        await alice.expect(body("still here"))
    finally:
        alice.close()
        bob.close()


async def test_malformed_messages_between_nodes_are_dropped_and_rooms_keep_working(
    nodes: list[Server],
) -> None:
    alpha, beta = nodes
    room = room_owned_by("alpha")
    assert beta.ctx is not None and alpha.ctx is not None
    peers = beta.ctx.peers
    sent = 0
    for garbage in (
        b"",  # empty
        b"S",  # too short
        b"Zwhat",  # unknown kind
        b"S\x00not a jid\n<message/>",  # a sender that is no JID
        b"S\x00alice@localhost/r\n<message to='" + room.encode() + b"'>",  # unclosed
        b"S\x00alice@localhost/r\n<message/>",  # no 'to'
        b"S\x00alice@localhost/r\n" + b"<a>" * 100 + b"</a>" * 100,  # too deep
        b"Enobody@localhost/x",  # a session nobody knows ended
    ):
        sent += peers.send("alpha", "muc", garbage)
    assert sent == 8
    with pytest.raises(PeerRefused):  # not UTF-8: refused, nothing else disturbed
        await peers.request("alpha", "muc-rooms", b"\xff\xfe")
    # the owner still serves the room to clients of both nodes
    alice = await RawClient.login(beta, "alice")
    bob = await RawClient.login(alpha, "bob")
    try:
        await alice.join(room, "Alice")
        await bob.join(room, "Bob")
        alice.send(f"<message to='{room}' type='groupchat'><body>fine</body></message>")
        await bob.expect(body("fine"))
    finally:
        alice.close()
        bob.close()


async def test_a_stanza_reaching_a_node_that_does_not_own_the_room_is_sent_on(
    nodes: list[Server],
) -> None:
    """What happens while the nodes disagree about the owner: a node handed a stanza
    for a room it does not own sends it on (as a request, which says it arrived)."""
    alpha, beta = nodes
    room = room_owned_by("alpha")
    assert alpha.ctx is not None
    alice = await RawClient.login(beta, "alice")
    try:
        presence = f"<presence to='{room}/Alice' from='{alice.full}'><x xmlns='{MUC}'/></presence>"
        payload = b"S\x00" + alice.full.encode() + b"\n" + presence.encode()
        assert alpha.ctx.peers.send("beta", "muc", payload)  # as if alpha thought beta owned it
        own = await alice.expect(lambda e: e.get("from") == f"{room}/Alice")
        assert {"110", "201"} <= codes(own)
        assert rooms_of(alpha) == {room} and rooms_of(beta) == set()
        # one hop too many: the sender gets an error instead of a loop
        too_far = (
            b"S\x03"
            + alice.full.encode()
            + b"\n"
            + presence.replace("<presence ", "<presence id='far' ").encode()
        )
        assert alpha.ctx.peers.send("beta", "muc", too_far)
        refused = await alice.expect(lambda e: e.get("id") == "far")
        assert refused.get("type") == "error" and condition(refused) == "resource-constraint"
    finally:
        alice.close()
