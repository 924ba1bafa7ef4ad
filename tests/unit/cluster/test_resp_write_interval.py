"""`[cluster] command_write_interval`: while busy, the lean connection writes
deferrable commands (a login's claim and release, presence changes) to Redis at
most once per interval (each write wakes Redis); after a quiet spell they go out
at the end of the loop turn, and any other command, or `now`, never waits and
takes them along."""

from __future__ import annotations

import asyncio
from typing import Any

from chatgate.cluster.resp import RespConnection, open_connection, pack
from tests.redis_server import RedisServer

INTERVAL = 0.05


class CountedTransport:
    """The connection's transport, keeping what each write wrote."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def connected(server: RedisServer) -> tuple[RespConnection, list[bytes]]:
    connection = await open_connection(server.url, write_interval=INTERVAL)
    counted = CountedTransport(connection._transport)
    connection._transport = counted  # type: ignore[assignment]
    return connection, counted.writes


async def test_commands_while_busy_share_a_write_and_a_quiet_one_waits_not(
    redis_server: RedisServer,
) -> None:
    connection, writes = await connected(redis_server)
    try:
        first = connection.send("PING", deferrable=True)
        await asyncio.sleep(0)
        assert len(writes) == 1  # quiet before: written at the end of the turn
        answers: list[Any] = []
        for i in range(5):  # busy now: held until the interval has passed
            connection.call(pack("ECHO", str(i)), answers.append, deferrable=True)
            await asyncio.sleep(0)
        assert len(writes) == 1
        await asyncio.sleep(INTERVAL * 2)
        assert len(writes) == 2 and writes[1].count(b"ECHO") == 5
        assert await first == b"PONG"
        assert answers == [b"0", b"1", b"2", b"3", b"4"]
        await asyncio.sleep(INTERVAL * 2)  # quiet again
        again = connection.send("PING", deferrable=True)
        await asyncio.sleep(0)
        assert len(writes) == 3 and await again == b"PONG"
    finally:
        connection.close()


async def test_a_command_sent_now_takes_what_waits_with_it(redis_server: RedisServer) -> None:
    connection, writes = await connected(redis_server)
    try:
        connection.send("PING", deferrable=True)
        await asyncio.sleep(0)
        held = connection.send("ECHO", "held", deferrable=True)
        urgent = connection.send("ECHO", "urgent", now=True)
        assert len(writes) == 2 and b"held" in writes[1] and b"urgent" in writes[1]
        assert await held == b"held" and await urgent == b"urgent"
        await asyncio.sleep(INTERVAL * 2)
        assert len(writes) == 2  # the held write's timer found nothing left
    finally:
        connection.close()


async def test_any_other_command_goes_at_the_turns_end_with_what_waits(
    redis_server: RedisServer,
) -> None:
    connection, writes = await connected(redis_server)
    try:
        connection.send("PING", deferrable=True)
        await asyncio.sleep(0)
        held = connection.send("ECHO", "held", deferrable=True)
        await asyncio.sleep(0)
        assert len(writes) == 1
        lookup = connection.send("ECHO", "lookup")  # a stanza's lookup, a forward
        await asyncio.sleep(0)
        assert len(writes) == 2 and writes[1].index(b"held") < writes[1].index(b"lookup")
        assert await held == b"held" and await lookup == b"lookup"
    finally:
        connection.close()
