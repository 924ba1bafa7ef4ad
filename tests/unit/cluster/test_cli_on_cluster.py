"""The command line on a cluster: a change made by `chatgate streams ...` on a host
whose data directory no node shares reaches a running node through the cluster's
Redis (one real redis-server, a real server as the node, one SQLite file)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatgate.auth.credentials import derive_all
from chatgate.cli import app
from chatgate.server import Server
from chatgate.streams.options import StreamsOptions
from chatgate.streams.service import StreamService
from tests.redis_server import RedisServer
from tests.unit.cluster.test_bosh_forwarding import cluster_config
from tests.unit.cluster.test_http_state import RULES, Node


def cli_config(tmp_path: Path, redis: RedisServer) -> Path:
    """The command line's configuration: the cluster's database and Redis, its own
    data directory (another host: the node never sees its stamp files)."""
    path = tmp_path / "cli.toml"
    path.write_text(
        f"""
[server]
domain = "localhost"
data_dir = "{tmp_path / "cli-host"}"
[storage]
url = "sqlite+aiosqlite:///{tmp_path / "chatgate.db"}"
[streams]
enabled = true
rules = {RULES!r}
[cluster]
enabled = true
redis_url = "{redis.url}"
""".replace("'", '"'),
        encoding="utf-8",
    )
    return path


async def cli(config: Path, *args: str) -> Result:
    """`chatgate ARGS --config CONFIG` in a thread (the command runs its own loop)."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, [*args, "--config", str(config)])


@pytest.fixture
async def node(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Node]:
    server = Server(cluster_config(tmp_path, redis_server, "alpha"))
    await server.start()
    ctx = server.ctx
    assert ctx is not None
    service: StreamService | None = None
    try:
        await ctx.db.accounts.create(
            "alice", "localhost", derive_all("pencil-case", iterations=4096)
        )
        data_dir = tmp_path / "alpha" / "streams"
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
        await asyncio.sleep(1.2)  # late subscriptions take effect within a second
        yield Node(server, service)
    finally:
        if service is not None:
            await service.close()
        await server.stop()


async def test_a_key_revoked_by_the_command_line_is_refused_by_the_node(
    node: Node, tmp_path: Path, redis_server: RedisServer
) -> None:
    config = cli_config(tmp_path, redis_server)
    issued = await cli(config, "streams", "keys", "issue", "alice")
    assert issued.exit_code == 0, issued.output
    key = issued.stdout.strip().encode()
    publish = b"&key=" + key
    for _ in range(100):  # the node learns the new key (the cluster's channel)
        if await node.hook("publish", "1", args=publish) == 200:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the node never accepted the key the command line issued")
    assert await node.hook("publish_done", "1") == 200

    revoked = await cli(config, "streams", "keys", "revoke", "alice")
    assert revoked.exit_code == 0, revoked.output
    for _ in range(100):
        if await node.hook("publish", "2", args=publish) == 403:
            break
        await node.hook("publish_done", "2")
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the key the command line revoked still publishes on the node")
