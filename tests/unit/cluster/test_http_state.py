"""The HTTP side's shared state wired on two cluster nodes (two real servers on
one SQLite file and one redis-server): media servers' hooks answered by either
node see one live registry, a stream key revoked on one node is refused on the
other, a Redis outage answers hooks 503; digest nonce counts are shared."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from chatgate.auth.credentials import derive_all
from chatgate.cluster.http_state import nonce_counts
from chatgate.cluster.live_streams import RedisLiveStreams
from chatgate.cluster.nonces import RedisNonceCounts
from chatgate.http.auth.admins import AdminAccounts
from chatgate.http.auth.nonces import LocalNonceCounts, NonceUse
from chatgate.http.hooks import HookEndpoint
from chatgate.server import Server
from chatgate.streams.adapters.nginx_rtmp import NginxRtmpAdapter
from chatgate.streams.options import StreamsOptions
from chatgate.streams.service import StreamService
from tests.redis_server import RedisServer
from tests.unit.cluster.test_bosh_forwarding import cluster_config, url
from tests.unit.http.auth.digest_client import authorization

RULES = ["publish live/alice user:alice@localhost", "play live/* anonymous"]
PREFIX = b"app=live&tcurl=rtmp://127.0.0.1:1935/live&addr=203.0.113.5&type=live"


class Node:
    """One server of the cluster, with a stream service opened on its cluster node
    and the nginx-rtmp hooks on it."""

    def __init__(self, server: Server, service: StreamService) -> None:
        self.server = server
        self.service = service
        self.hooks = HookEndpoint(
            service.authority, {"nginx-rtmp": NginxRtmpAdapter()}, ["127.0.0.0/8"]
        )

    async def hook(self, call: str, client: str, stream: str = "alice", args: bytes = b"") -> int:
        body = PREFIX + b"&call=%s&name=%s&clientid=%s%s" % (
            call.encode(),
            stream.encode(),
            client.encode(),
            args,
        )
        reply = await self.hooks.answer(
            "POST",
            f"nginx-rtmp/{call}",
            b"",
            {"content-type": "application/x-www-form-urlencoded"},
            body,
            "127.0.0.1",
        )
        return reply.status


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    try:
        for name in ("alpha", "beta"):
            server = Server(cluster_config(tmp_path, redis_server, name))
            await server.start()
            ctx = server.ctx
            assert ctx is not None
            if name == "alpha":
                await ctx.db.accounts.create(
                    "alice", "localhost", derive_all("pencil-case", iterations=4096)
                )
            ctx.provider.invalidate("alice", "localhost")  # type: ignore[attr-defined]
            data_dir = tmp_path / name / "streams"
            data_dir.mkdir(parents=True)
            service = await StreamService.open(
                StreamsOptions.model_validate({"enabled": True, "rules": RULES}),
                domain="localhost",
                db=ctx.db,
                data_dir=data_dir,
                gate=ctx.login_gate,
                provider=ctx.provider,
                cluster=server.cluster,
            )
            started.append(Node(server, service))
        await asyncio.sleep(1.2)  # late subscriptions take effect within a second
        yield started
    finally:
        for node in reversed(started):
            await node.service.close()
            await node.server.stop()


async def test_a_cluster_nodes_stream_service_uses_the_shared_registry(nodes: list[Node]) -> None:
    for node in nodes:
        assert isinstance(node.service.live, RedisLiveStreams)
        assert node.service.keeper is None  # Redis outlives the nodes: no snapshot


async def test_one_publisher_per_stream_whichever_node_is_asked(nodes: list[Node]) -> None:
    alpha, beta = nodes
    password = b"&username=alice&password=pencil-case"
    assert await alpha.hook("publish", "6", args=password) == 200
    assert await beta.hook("publish", "7", args=password) == 403  # busy: alice publishes already
    assert await beta.hook("play", "8") == 200
    assert await alpha.hook("play", "9") == 200
    rows = await beta.service.live.live()
    assert [(r.stream, r.client_id, r.viewers) for r in rows] == [("live/alice", "6", 2)]
    assert await beta.hook("publish_done", "6") == 200
    assert await alpha.service.live.live() == []
    assert await beta.hook("publish", "7", args=password) == 200


async def test_a_stream_key_revoked_on_one_node_is_refused_on_the_other(
    nodes: list[Node],
) -> None:
    alpha, beta = nodes
    key = await alpha.service.state.keys.issue("alice@localhost")
    assert await beta.hook("publish", "1", args=b"&key=" + key.encode()) == 200
    assert await beta.hook("publish_done", "1") == 200
    await alpha.service.state.keys.revoke("alice@localhost")
    for _ in range(100):
        if await beta.hook("publish", "2", args=b"&key=" + key.encode()) == 403:
            break
        await beta.hook("publish_done", "2")
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the revoked key still publishes on the other node")


async def test_hooks_answer_503_while_redis_is_away(
    nodes: list[Node], redis_server: RedisServer
) -> None:
    alpha, _ = nodes
    redis_server.stop()
    assert await alpha.hook("play", "3") == 503
    assert await alpha.hook("play_done", "3") == 503


async def test_a_digest_response_taken_on_one_node_is_refused_on_the_other(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    admin = {"auth": ["digest"], "allow_plain_http": True}
    servers: list[Server] = []
    try:
        for name in ("alpha", "beta"):
            server = Server(cluster_config(tmp_path, redis_server, name, admin=admin))
            await server.start()
            servers.append(server)
        first = servers[0].ctx
        assert first is not None
        await AdminAccounts(first.db, first.config.admin).add("root", "root-pw", ["admin"])
        urls = [f"{url(s).removesuffix('/http-bind')}/api/v1/accounts" for s in servers]
        async with aiohttp.ClientSession() as http:
            async with http.get(urls[0]) as refused:
                assert refused.status == 401
                challenge = refused.headers["WWW-Authenticate"]
            header = authorization(challenge, "root", "root-pw", "GET", "/api/v1/accounts")
            async with http.get(urls[0], headers={"Authorization": header}) as taken:
                assert taken.status == 200
            async with http.get(urls[1], headers={"Authorization": header}) as replayed:
                assert replayed.status == 401  # the same nc, on the other node
            again = authorization(challenge, "root", "root-pw", "GET", "/api/v1/accounts", nc=2)
            async with http.get(urls[1], headers={"Authorization": again}) as next_count:
                assert next_count.status == 200
    finally:
        for server in reversed(servers):
            await server.stop()


async def test_nonce_counts_are_shared_on_a_cluster_node(nodes: list[Node]) -> None:
    alpha, beta = (node.server.cluster for node in nodes)
    assert isinstance(nonce_counts(None, 300), LocalNonceCounts)
    a, b = nonce_counts(alpha, 300), nonce_counts(beta, 300)
    assert isinstance(a, RedisNonceCounts)
    assert await a.advance("n", 100, 1, 100) is NonceUse.FRESH
    assert await b.advance("n", 100, 1, 100) is NonceUse.REPLAYED


async def test_a_clustered_server_opens_its_stream_service_on_the_cluster(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    streams = {"enabled": True, "rules": RULES}
    server = Server(cluster_config(tmp_path, redis_server, "alpha", streams=streams))
    await server.start()
    try:
        assert server.ctx is not None and server.ctx.streams is not None
        assert isinstance(server.ctx.streams.live, RedisLiveStreams)
    finally:
        await server.stop()
