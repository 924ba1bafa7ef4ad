"""A cluster node whose start fails (`Server.start` stops what it had started):
against a real redis-server, what the other nodes see and how long it takes.
(The room handed back by a node that fails after `announce` is in
`tests/unit/modules/muc/test_cluster_nodes.py`.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from chatgate.cluster.node import ClusterNode, ClusterUnavailable
from chatgate.server import Server
from chatgate.storage.database import Database
from chatgate.vocabulary.errors import ConfigError
from tests.ports import free_port
from tests.redis_server import RedisServer
from tests.unit.cluster.test_bosh_forwarding import cluster_config


class FreezingProxy:
    """A TCP proxy to redis-server that can freeze: its connections stay open and
    nothing passes (a Redis that hangs, not one that is gone)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.frozen = False
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                while self.frozen:
                    await asyncio.sleep(0.05)
                sink.write(data)

        await asyncio.gather(
            pump(reader, up_writer), pump(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            w.close()

    def close(self) -> None:
        self.frozen = False
        if self.server is not None:
            self.server.close()


def node_config(tmp: Path, redis: RedisServer, name: str, **extra: Any) -> Any:
    return cluster_config(tmp, redis, name, http={"enabled": False}, **extra)


async def test_a_start_on_a_redis_that_hangs_does_not_wait_on_it_again_to_stop(
    tmp_path: Path,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis stops answering while beta announces: the start fails when redis-py
    gives up (its 5 s socket timeout); a PING of 1 s says Redis hangs, and the stop
    after it neither runs the group chat's handovers through it (12 s) nor tries
    to take the heartbeat back (it expires).  (22 s in all before.)"""
    alpha = Server(node_config(tmp_path, redis_server, "alpha"))
    await alpha.start()
    proxy = FreezingProxy(redis_server.port)
    url = await proxy.start()
    try:
        config = node_config(tmp_path, redis_server, "beta")
        cluster = config.cluster.model_copy(update={"redis_url": url})
        beta = Server(config.model_copy(update={"cluster": cluster}))
        announce = ClusterNode.announce

        frozen_at: list[float] = []

        async def freeze_then_announce(node: ClusterNode) -> None:
            if node.name == "beta":
                proxy.frozen = True
                frozen_at.append(time.monotonic())
            await announce(node)

        monkeypatch.setattr(ClusterNode, "announce", freeze_then_announce)
        with pytest.raises(ClusterUnavailable):
            await asyncio.wait_for(beta.start(), 60)
        took = time.monotonic() - frozen_at[0]
        assert took < 12, f"the failed start took {took:.1f} s after Redis froze"
    finally:
        proxy.close()
        await alpha.stop()


async def test_a_node_that_fails_before_it_announces_disturbs_no_other_node(
    tmp_path: Path,
    redis_server: RedisServer,
) -> None:
    """Nothing was handed to a node nobody counted in: its stop does not tell the
    others it leaves (which would hold their group chat's stanzas and make them read
    their stored rooms again, at every restart of a crash loop), and its joining
    heartbeat is gone at once."""
    alpha = Server(node_config(tmp_path, redis_server, "alpha"))
    await alpha.start()
    try:
        assert alpha.ctx is not None
        record = alpha.ctx.modules.get("muc")
        assert record is not None
        settled = record.module.relay.settled  # type: ignore[attr-defined]
        held: list[float] = []
        clear = settled.clear

        def counting_clear() -> None:
            held.append(time.monotonic())
            clear()

        settled.clear = counting_clear
        # A component on the group chat's own domain: refused once the modules are
        # set up, before the node announces.
        beta = Server(
            node_config(
                tmp_path,
                redis_server,
                "beta",
                components=[{"domain": "conference.localhost", "secret": "s3cr3t-s3cr3t"}],
                component_listener={"port": 0},
            )
        )
        with pytest.raises(ConfigError):
            await beta.start()
        assert beta.cluster is not None and not beta.cluster.counted_in
        redis = alpha.cluster.redis if alpha.cluster is not None else None
        assert redis is not None
        assert await redis.exists("chatgate:joining:beta", "chatgate:node:beta") == 0
        await asyncio.sleep(0.5)
        assert held == [], "alpha held its group chat for a node that was never in"
        assert settled.is_set()
    finally:
        await alpha.stop()


async def test_a_start_that_fails_before_its_context_closes_what_it_opened(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis out of reach at `connect`: the database opened before is closed again
    (a server run in a process that goes on, as tests and embedders do)."""
    opened: list[Database] = []
    closed: list[Database] = []
    real_open = Database.open.__func__  # type: ignore[attr-defined]
    real_close = Database.close

    async def open_spy(cls: type[Database], url: str) -> Database:
        db = await real_open(cls, url)
        opened.append(db)
        return db

    async def close_spy(self: Database) -> None:
        closed.append(self)
        await real_close(self)

    monkeypatch.setattr(Database, "open", classmethod(open_spy))
    monkeypatch.setattr(Database, "close", close_spy)
    unreachable = RedisServer(tmp_path, port=free_port())  # never started
    server = Server(node_config(tmp_path, unreachable, "beta"))
    with pytest.raises(ClusterUnavailable):
        await server.start()
    assert server.ctx is None
    assert len(opened) == 1 and closed == opened
