"""A node joining reads the others' sessions while they keep changing.

The joining node subscribes to its events channel, then reads each node's
snapshot.  A change published between the two (a presence, a hibernation) is
both in the snapshot and on the channel: neither may hide the session from the
new node's mirror, and the mirror must end in the latest state.

Real servers in this process over a real redis-server and one shared database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatgate.cluster import directory as cluster_directory
from chatgate.cluster.node import ClusterNode
from chatgate.cluster.options import ClusterOptions
from tests.redis_server import RedisServer
from tests.unit.modules.wire import Server, Wire

from .test_subscription_requests import eventually, held, login


def options(redis: RedisServer, name: str) -> ClusterOptions:
    return ClusterOptions(
        enabled=True, redis_url=redis.url, node=name, heartbeat_interval=0.2, node_timeout=1.0
    )


@pytest.fixture
async def first(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Server]:
    node = ClusterNode(options(redis_server, "a"))
    await node.start()
    server = await Server.start(tmp_path, {}, cluster=node)
    await server.add_user("ann", "ann-pw")
    try:
        yield server
    finally:
        await server.stop()


def show_of(session: Any) -> str | None:
    """The <show/> of the presence a node holds for `session`."""
    show = session.presence.find("show") if session.presence is not None else None
    return None if show is None else show.text


async def join_during(tmp: Path, redis: RedisServer, ann: Wire, *shows: str) -> Server:
    """Node b joining; ann's presence changes to each of `shows` after b listens on
    its channel and before it reads a's snapshot."""
    node = ClusterNode(options(redis, "b"))
    await node.start()
    with held(node.redis, "hgetall") as gate:
        starting = asyncio.ensure_future(Server.start(tmp, {}, cluster=node))
        await asyncio.wait_for(gate.reached.wait(), 5)
        for show in shows:
            await ann.send(f"<presence><show>{show}</show></presence>")
        await asyncio.sleep(0.3)  # the changes reach b's channel
        gate.opened.set()
        return await asyncio.wait_for(starting, 10)


async def ann_as_b_sees_her(second: Server) -> Any:
    table = second.ctx.router.directory.table
    await eventually(lambda: "ann@localhost" in table)
    return table["ann@localhost"]["r"]


async def test_a_presence_change_during_the_join_keeps_the_session(
    first: Server, tmp_path: Path, redis_server: RedisServer
) -> None:
    ann = await login(first, "ann")
    await ann.send("<presence/>")
    second = await join_during(tmp_path, redis_server, ann, "away")
    try:
        session = await ann_as_b_sees_her(second)
        assert session.available
        assert show_of(session) == "away"
    finally:
        await second.stop()


async def test_events_held_during_a_join_are_bounded(
    first: Server,
    tmp_path: Path,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past `MAX_HELD_EVENT_BYTES` the join reads the snapshots again rather than
    keep every change in memory, and still ends with the latest state."""
    monkeypatch.setattr(cluster_directory, "MAX_HELD_EVENT_BYTES", 300)
    ann = await login(first, "ann")
    await ann.send("<presence/>")
    second = await join_during(tmp_path, redis_server, ann, "away", "xa", "dnd", "chat", "xa")
    try:
        assert show_of(await ann_as_b_sees_her(second)) == "xa"
        assert "read again" in caplog.text
    finally:
        await second.stop()
