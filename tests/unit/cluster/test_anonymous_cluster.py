"""Anonymous identities on a cluster: real servers (`chatgate.server.Server`,
`[cluster]` enabled) on one database and one redis-server.  A node starting does
not delete the identities live on other nodes; a node that dies leaves no
identity behind (one survivor deletes it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from chatgate.server import Server
from chatgate.storage.models import Account
from tests.redis_server import RedisServer
from tests.unit.cluster.test_bosh_forwarding import cluster_config

GUEST = "guest.localhost"


def config(tmp: Path, redis: RedisServer, name: str):  # type: ignore[no-untyped-def]
    return cluster_config(
        tmp,
        redis,
        name,
        hosts={GUEST: {"anonymous": True, "mechanisms": ["ANONYMOUS"]}},
        http={"enabled": False},
    )


async def anonymous_login(server: Server) -> tuple[str, asyncio.StreamWriter]:
    """An ANONYMOUS login over plain TCP; returns the bound JID and the open stream."""
    port = server.listeners[0].port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opening = (
        f"<?xml version='1.0'?><stream:stream to='{GUEST}' version='1.0' "
        "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )

    async def until(marker: bytes) -> bytes:
        data = b""
        while marker not in data:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, data
            data += chunk
        return data

    writer.write(opening.encode())
    await until(b"</stream:features>")
    writer.write(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'>=</auth>")
    assert b"<success" in await until(b"success")
    writer.write(opening.encode())
    await until(b"</stream:features>")
    writer.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    answer = (await until(b"</iq>")).decode()
    jid = answer.split("<jid>")[1].split("</jid>")[0]
    return jid, writer


async def identities(server: Server) -> set[str]:
    assert server.ctx is not None
    async with server.ctx.db.engine.connect() as conn:
        rows = await conn.execute(
            select(Account.username).where(Account.domain == GUEST, Account.anonymous.is_(True))
        )
        return {row[0] for row in rows}


async def eventually(condition: Callable[[], object], timeout: float = 8.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():  # type: ignore[misc]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not in time")
        await asyncio.sleep(0.05)


async def test_a_starting_node_keeps_identities_live_elsewhere_and_a_dead_nodes_go(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    alpha = Server(config(tmp_path, redis_server, "alpha"))
    await alpha.start()
    beta = gamma = None
    writer = None
    try:
        jid, writer = await anonymous_login(alpha)
        local = jid.split("@")[0]
        assert await identities(alpha) == {local}
        # A node starting now purges what a crash left: not alpha's live guest.
        beta = Server(config(tmp_path, redis_server, "beta"))
        await beta.start()
        assert await identities(beta) == {local}
        # alpha dies as kill -9 would: its node stops beating, says nothing.
        assert alpha.cluster is not None
        node = alpha.cluster
        node._stopping = True
        for task in node._tasks:
            task.cancel()
        node._tasks = []
        for connection in (node._commands, node._subscriber):
            if connection is not None:
                connection.close()

        async def gone() -> bool:
            return local not in await identities(beta)

        await eventually(gone)
        # A second survivor started meanwhile finds nothing left to do.
        gamma = Server(config(tmp_path, redis_server, "gamma"))
        await gamma.start()
        assert await identities(gamma) == set()
    finally:
        if writer is not None:
            writer.close()
        for server in (gamma, beta):
            if server is not None:
                await server.stop()
        alpha.cluster = None  # its node was killed above
        await alpha.stop()
