"""The stream authority's change signal across nodes: two nodes with their own data
directories over one real redis-server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chatgate.cluster.node import ClusterNode
from chatgate.cluster.signal import (
    ClusterSignal,
    CommandLineSignals,
    SignalNotAnnounced,
    StreamSignals,
)
from chatgate.streams.signal import STREAMS_STAMP, StampSignal
from chatgate.streams.stores import ChangeSignal
from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import options, wait_for


async def test_a_change_raised_on_one_node_is_seen_once_by_every_watcher_of_the_other(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    a = ClusterNode(options(redis_server), name="a")
    b = ClusterNode(options(redis_server), name="b")
    on_a = StreamSignals(a)(tmp_path / "a", STREAMS_STAMP)
    on_b = StreamSignals(b)(tmp_path / "b", STREAMS_STAMP)
    also_on_b = on_b.watcher()
    signal: ChangeSignal = on_a  # the protocol the stream stores take
    await a.start()
    await b.start()
    try:
        await a.subscribed()
        await b.subscribed()
        assert not on_a.changed() and not on_b.changed() and not also_on_b.changed()
        signal.raise_()
        assert on_a.changed()  # at once, on the node that raised it
        await wait_for(on_b.changed)
        await wait_for(also_on_b.changed)  # each watcher sees it once
        await asyncio.sleep(0.05)
        assert not on_a.changed() and not on_b.changed() and not also_on_b.changed()
        # the stamp file is still raised for the other processes of node a's host
        assert StampSignal(tmp_path / "a", STREAMS_STAMP).path.exists()
        assert not StampSignal(tmp_path / "b", STREAMS_STAMP).path.exists()
    finally:
        await a.close()
        await b.close()


async def test_after_redis_returns_every_watcher_reads_again(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    a = ClusterNode(options(redis_server), name="a")
    b = ClusterNode(options(redis_server), name="b")
    on_a = StreamSignals(a)(tmp_path / "a", STREAMS_STAMP)
    on_b: ClusterSignal = StreamSignals(b)(tmp_path / "b", STREAMS_STAMP)
    await a.start()
    await b.start()
    try:
        redis_server.stop()
        await wait_for(lambda: not a.connected)
        on_a.raise_()  # cannot be published now
        assert on_a.changed()
        await asyncio.sleep(0.1)
        assert not on_b.changed()
        redis_server.start()
        await wait_for(on_b.changed, timeout=10.0)  # missed: read again
    finally:
        await a.close()
        await b.close()


async def test_the_command_line_tells_every_node(redis_server: RedisServer, tmp_path: Path) -> None:
    a = ClusterNode(options(redis_server), name="a")
    on_a = StreamSignals(a)(tmp_path / "a", STREAMS_STAMP)
    command: ChangeSignal = CommandLineSignals(options(redis_server))(
        tmp_path / "cli", STREAMS_STAMP
    )
    await a.start()
    try:
        await a.subscribed()
        command.raise_()
        await wait_for(on_a.changed)
        assert StampSignal(tmp_path / "cli", STREAMS_STAMP).path.exists()  # this host too
        redis_server.stop()
        with pytest.raises(SignalNotAnnounced, match="stored, but"):
            command.raise_()
    finally:
        await a.close()
