"""BOSH across nodes: two real servers (`chatgate.server.Server`, `[cluster]`
enabled) on one database and one redis-server; a BOSH client whose requests
alternate between the two HTTP ports logs in, chats and terminates.  Requests
for a sid the receiving node does not hold reach the owner through Redis and
its answer comes back byte for byte."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatgate.auth.credentials import derive_all
from chatgate.cluster.bosh import TAG_LENGTH, node_tag
from chatgate.config import Config
from chatgate.server import Server
from tests.redis_server import RedisServer
from tests.unit.http.bosh_client import CLIENT, BoshClient, q

WAIT = 2


def cluster_config(tmp: Path, redis: RedisServer, name: str, **extra: Any) -> Config:
    """Node `name` of a cluster on `redis`, its database tmp/chatgate.db (shared),
    its data directory tmp/NAME; `extra` sections are added as given."""
    return Config.model_validate(
        {
            **extra,
            "server": {"domain": "localhost", "data_dir": str(tmp / name)},
            "storage": {"url": f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"},
            "listeners": [{"port": 0, "tls": "none", "require_tls": False}],
            "auth": {"mechanisms": ["SCRAM-SHA-1", "PLAIN"], "allow_plain_without_tls": True},
            "http": {
                "port": 0,
                "tls_port": False,
                "chat": {"enabled": False},
                "bosh": {"max_wait": WAIT, "max_hold": 1, "inactivity": 10, "polling": 0},
            },
            "cluster": {
                "enabled": True,
                "redis_url": redis.url,
                "node": name,
                "heartbeat_interval": 0.2,
                "node_timeout": 1.0,
            },
        }
    )


def url(server: Server) -> str:
    assert server.http is not None
    scheme, host, port = server.http.bound[0]
    return f"{scheme}://{host}:{port}/http-bind"


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Server]]:
    servers: list[Server] = []
    try:
        for name in ("alpha", "beta"):
            server = Server(cluster_config(tmp_path, redis_server, name))
            await server.start()
            servers.append(server)
        ctx = servers[0].ctx
        assert ctx is not None
        for user in ("juliet", "romeo"):
            await ctx.db.accounts.create(user, "localhost", derive_all("secret", iterations=4096))
        for server in servers:
            assert server.ctx is not None
            server.ctx.provider.invalidate("juliet", "localhost")  # type: ignore[attr-defined]
            server.ctx.provider.invalidate("romeo", "localhost")  # type: ignore[attr-defined]
        await asyncio.sleep(1.2)  # late subscriptions take effect within a second
        yield servers
    finally:
        for server in reversed(servers):
            await server.stop()


class Alternating(BoshClient):
    """A BOSH client whose every request goes to the next of `urls` in turn."""

    def __init__(self, http: aiohttp.ClientSession, urls: list[str], **kw: Any) -> None:
        super().__init__(http, urls[0], **kw)
        self.urls = urls
        self.turn = 0

    async def raw(self, data: str | bytes) -> Any:
        self.url = self.urls[self.turn % len(self.urls)]
        self.turn += 1
        return await super().raw(data)


async def test_sids_carry_the_tag_of_the_node_that_made_them(nodes: list[Server]) -> None:
    async with aiohttp.ClientSession() as http:
        for server in nodes:
            client = BoshClient(http, url(server))
            created = await client.create(wait=WAIT)
            assert created.status == 200
            assert client.sid.endswith(node_tag(server.cluster.name))  # type: ignore[union-attr]
            assert len(client.sid) == 24 + TAG_LENGTH


async def test_a_session_is_served_by_every_node(nodes: list[Server]) -> None:
    alpha, beta = nodes
    async with aiohttp.ClientSession() as http:
        juliet = Alternating(http, [url(alpha), url(beta)])
        romeo = Alternating(http, [url(beta), url(alpha)])
        juliet_jid = await juliet.login("juliet", "secret")
        romeo_jid = await romeo.login("romeo", "secret")
        assert juliet.turn > 4 and romeo.turn > 4  # both nodes answered each of them
        assert alpha.http is not None and beta.http is not None
        assert alpha.http.bosh is not None and beta.http.bosh is not None
        owners = {s.sid for s in alpha.http.bosh.sessions}, {s.sid for s in beta.http.bosh.sessions}
        assert owners == ({juliet.sid}, {romeo.sid})

        # Romeo holds a request (on whichever node), Juliet writes through the other.
        held = asyncio.create_task(romeo.send())
        await asyncio.sleep(0.2)
        sent = await juliet.send(
            f"<message xmlns='{CLIENT}' to='{romeo_jid}' type='chat'><body>hi</body></message>"
        )
        assert sent.status == 200
        reply = await held
        assert reply.status == 200
        messages = reply.body.findall(q(CLIENT, "message"))
        assert [m.findtext(q(CLIENT, "body")) for m in messages] == ["hi"]
        assert messages[0].get("from") == juliet_jid

        ended = await juliet.send(type="terminate")
        assert ended.status == 200 and ended.type == "terminate"
        assert juliet.sid not in {s.sid for s in alpha.http.bosh.sessions}
        after = await juliet.send()
        assert after.status == 404 and after.condition == "item-not-found"


async def test_a_sid_of_no_node_is_item_not_found_at_once(nodes: list[Server]) -> None:
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, url(nodes[0]))
        client.sid = "A" * 24 + "zzzzzz"
        began = asyncio.get_running_loop().time()
        reply = await client.send()
        assert reply.status == 404 and reply.condition == "item-not-found"
        assert asyncio.get_running_loop().time() - began < 1.0


async def test_the_answer_is_relayed_byte_for_byte(nodes: list[Server]) -> None:
    alpha, beta = nodes
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, url(alpha))
        await client.create(wait=WAIT)
        rid = client.next_rid()
        first = await client.send(rid=rid)
        # the same rid again, through the other node: the cached answer, unchanged
        client.url = url(beta)
        again = await client.send(rid=rid)
        assert again.status == first.status == 200
        assert again.text == first.text
        assert again.headers["Content-Type"] == first.headers["Content-Type"]
        ET.fromstring(again.text)


async def test_requests_of_a_node_that_died_are_item_not_found(nodes: list[Server]) -> None:
    alpha, beta = nodes
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, url(beta))
        await client.create(wait=WAIT)
        await beta.stop()
        client.url = url(alpha)
        reply = await client.send()
        assert reply.status == 404 and reply.condition == "item-not-found"


async def test_forwarded_requests_in_flight_are_bounded_on_both_sides(
    nodes: list[Server],
) -> None:
    alpha, beta = nodes
    assert alpha.http is not None and beta.http is not None
    asking, owning = alpha.http.bosh_forwarding, beta.http.bosh_forwarding
    assert asking is not None and owning is not None
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, url(beta))
        await client.create(wait=WAIT, hold="1")
        client.url = url(alpha)
        asking.max_in_flight = 1
        held = asyncio.create_task(client.send())  # held by beta for `wait`
        while not asking._pending:
            await asyncio.sleep(0.01)
        rid = client.next_rid()
        refused = await client.send(rid=rid)
        assert refused.status == 503 and refused.text == ""  # not terminal: retry later
        assert (await held).status == 200
        asking.max_in_flight = 10
        assert (await client.send(rid=rid)).status == 200  # the retry is served

        owning.max_in_flight = 1
        held = asyncio.create_task(client.send())
        while not owning._serving:
            await asyncio.sleep(0.01)
        rid = client.next_rid()
        refused = await client.send(rid=rid)
        assert refused.status == 503 and refused.text == ""
        assert (await held).status == 200
        owning.max_in_flight = 10
        assert (await client.send(rid=rid)).status == 200


async def test_one_session_cannot_take_the_share_of_the_others(nodes: list[Server]) -> None:
    """Requests of one sid forwarded and unanswered are bounded (`per_sid`): past
    it that sid gets 503, another session's request is still forwarded."""
    alpha, beta = nodes
    assert alpha.http is not None
    asking = alpha.http.bosh_forwarding
    assert asking is not None and asking.per_sid == 3  # max_hold 1: hold + 1, and one more
    asking.per_sid = 1
    async with aiohttp.ClientSession() as http:
        greedy, other = BoshClient(http, url(beta)), BoshClient(http, url(beta))
        await greedy.create(wait=WAIT, hold="1")
        await other.create(wait=WAIT, hold="1")
        greedy.url = other.url = url(alpha)
        held = asyncio.create_task(greedy.send())  # held by beta for `wait`
        while not asking._pending:
            await asyncio.sleep(0.01)
        refused = await greedy.send(rid=greedy.next_rid())
        assert refused.status == 503 and refused.text == ""
        assert (await other.send()).status == 200
        assert (await held).status == 200
        assert not asking._per_sid  # nothing left counted


async def test_an_oversized_body_is_refused_before_the_read_rate_wait(
    nodes: list[Server],
) -> None:
    """Before authentication a session reads 16 KiB/s: a body over its limit used to
    be slept off first (30 s for this one) while it held the forwarding node's
    budget; it is refused at once."""
    alpha, beta = nodes
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, url(beta))
        await client.create(wait=WAIT, hold="1")
        client.url = url(alpha)
        began = asyncio.get_running_loop().time()
        reply = await client.send("<!--" + "x" * 500_000 + "-->")
        assert asyncio.get_running_loop().time() - began < 5
        assert "policy-violation" in reply.text


async def test_a_forwarded_body_never_creates_a_session(nodes: list[Server]) -> None:
    alpha, beta = nodes
    assert beta.http is not None and beta.http.bosh is not None
    async with aiohttp.ClientSession() as http:
        owned = BoshClient(http, url(beta))
        await owned.create(wait=WAIT)
        client = BoshClient(http, url(alpha))
        # a live sid the peek reads (inside another attribute's value) in a body
        # whose parsed sid is missing: a creation request, forwarded
        sid = owned.sid
        body = (
            f"<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='localhost'"
            f" wait='2' hold='1' xml:lang=' sid=\"{sid}\"'/>"
        )
        reply = await client.raw(body)
        assert (reply.status, reply.condition) == (400, "bad-request")
        assert [s.sid for s in beta.http.bosh.sessions] == [sid]


async def test_redis_away_answers_503_not_terminal(
    nodes: list[Server], redis_server: RedisServer
) -> None:
    alpha, beta = nodes
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, url(beta))
        await client.create(wait=WAIT)
        redis_server.stop()
        client.url = url(alpha)
        reply = await client.send()
        assert reply.status == 503 and reply.text == ""  # the session may well be alive
        client.url = url(beta)
        assert (await client.send()).status == 200  # its owner still serves it
