"""WebSocket control frames are read by the connection (http/websocket.py, aiohttp's
`autoping` off): a PING is answered, a flood of them ends the connection with 1008,
and the heartbeat still tells a peer that answers its pings from one that does not.
The client is aiohttp's, against the real server in this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from chatgate.http.websocket import CONTROL_FRAME_BURST

from .bosh_client import base_url, start_web

OPEN = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"


@pytest.fixture
async def ws_url(tmp_path: Path) -> AsyncIterator[str]:
    server = await start_web(tmp_path, {"websocket": {"ping_interval": 0.4}})
    yield base_url(server).replace("http://", "ws://", 1) + "/xmpp-websocket"
    await server.stop()


async def test_a_ping_is_answered_with_its_payload(ws_url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url, protocols=("xmpp",), autoping=False) as ws,
    ):
        await ws.ping(b"hello")
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type is aiohttp.WSMsgType.PONG:
                assert msg.data == b"hello"
                break
            assert msg.type is aiohttp.WSMsgType.PING  # the server's heartbeat


async def test_a_peer_that_answers_pings_stays_connected(ws_url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url, protocols=("xmpp",), autoping=False) as ws,
    ):
        pings = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 2.0  # five heartbeat intervals of 0.4 s
        while loop.time() < end:
            try:
                msg = await ws.receive(timeout=end - loop.time())
            except TimeoutError:
                break
            assert msg.type is aiohttp.WSMsgType.PING, msg
            pings += 1
            await ws.pong(msg.data)
        assert pings >= 3
        assert not ws.closed


async def test_a_ping_flood_is_closed_with_1008(ws_url: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url, protocols=("xmpp",), autoping=False) as ws,
    ):
        await ws.send_str(OPEN)
        for _ in range(CONTROL_FRAME_BURST * 4):
            await ws.ping()
        texts = []
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type is aiohttp.WSMsgType.TEXT:
                texts.append(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
        assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert any("policy-violation" in t for t in texts), texts
