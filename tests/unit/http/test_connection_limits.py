"""HTTP connections are bounded (http/connection_limit.py, listener.py, bosh.py):
per peer address, in idle time and in the time a body may take, while held BOSH
requests run as long as their `wait`.  The real server in this process, raw
sockets as the clients."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from chatgate.http import bosh, listener
from chatgate.http.connection_limit import AddressCounter, RefusalLog

from .bosh_client import BoshClient, start_web

LIMIT = 3


@pytest.fixture
async def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, int]]:
    monkeypatch.setattr(listener, "KEEPALIVE_TIMEOUT", 0.5)
    monkeypatch.setattr(bosh, "BODY_TIMEOUT", 0.5)
    server = await start_web(
        tmp_path,
        {
            "max_connections_per_address": LIMIT,
            "bosh": {"max_wait": 3, "polling": 0},
        },
    )
    assert server.http is not None
    _, host, port = server.http.bound[0]
    yield host, port
    await server.stop()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1024), within) == b"" or True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_connections_past_the_limit_are_closed_at_once(base: tuple[str, int]) -> None:
    host, port = base
    held = [await asyncio.open_connection(host, port) for _ in range(LIMIT)]
    extra_reader, extra_writer = await asyncio.open_connection(host, port)
    assert await closed_by_server(extra_reader, 2.0)
    for reader, _ in held:
        assert not await closed_by_server(reader, 0.05)
    for _, writer in held:
        writer.close()
    extra_writer.close()
    await asyncio.sleep(0.2)
    # released: a new connection is served
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /.well-known/host-meta HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_trickled_headers_and_idle_connections_are_closed(base: tuple[str, int]) -> None:
    host, port = base
    idle_reader, idle_writer = await asyncio.open_connection(host, port)
    slow_reader, slow_writer = await asyncio.open_connection(host, port)
    slow_writer.write(b"GET /.well-known/host-meta HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert await closed_by_server(idle_reader, 3.0)
    assert await closed_by_server(slow_reader, 3.0)
    idle_writer.close()
    slow_writer.close()


async def test_a_trickled_body_is_cut_off(base: tuple[str, int]) -> None:
    host, port = base
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        b"Content-Length: 1000\r\n\r\n<body "
    )
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    # and the connection ends (after LINGER seconds of dropping what still comes)
    await asyncio.wait_for(reader.read(), 5)
    writer.close()


async def test_held_bosh_requests_outlive_the_keepalive_timeout(base: tuple[str, int]) -> None:
    host, port = base
    async with aiohttp.ClientSession() as http:
        client = BoshClient(http, f"http://{host}:{port}/http-bind")
        await client.create(wait=2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = await client.send()  # held for `wait` (2 s), 4x the keep-alive timeout
        assert reply.status == 200 and reply.type is None, reply.text
        assert loop.time() - started > 1.5


def test_counter_counts_per_address() -> None:
    counter = AddressCounter(2)
    assert counter.acquire("192.0.2.1") and counter.acquire("192.0.2.1")
    assert not counter.acquire("192.0.2.1")
    assert counter.acquire("192.0.2.2")
    counter.release("192.0.2.1")
    assert counter.open("192.0.2.1") == 1
    assert counter.acquire("192.0.2.1")


def test_refusals_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    refusals = RefusalLog("refused %s (%d)", interval=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(1000):
            refusals.refused("192.0.2.1")
        refusals.refused("192.0.2.2")
        now[0] = 61.0
        refusals.refused("192.0.2.1")
    assert [r.getMessage() for r in caplog.records] == [
        "refused 192.0.2.1 (1)",
        "refused 192.0.2.2 (1)",
        "refused 192.0.2.1 (1000)",
    ]
