"""The listener's hot routes (BOSH POST, the WebSocket handshake) bypass aiohttp's router
and middleware chain (listener.py `_dispatch`): their responses must carry the same
security and CORS headers as every other route, and what they do not serve (other
methods, preflights, `Expect: 100-continue`) must still reach the application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from .bosh_client import base_url, start_web

HTTPBIND = "http://jabber.org/protocol/httpbind"
ALLOWED = "https://chat.example.org"
SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CREATE = (
    f"<body xmlns='{HTTPBIND}' rid='100' to='localhost' wait='2' hold='1' ver='1.11'"
    " xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"
)


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    server = await start_web(
        tmp_path,
        {
            "cors_origins": [ALLOWED],
            "bosh": {"max_wait": 2, "inactivity": 5},
            "websocket": {"enabled": True},
        },
    )
    yield base_url(server)
    await server.stop()


def secured(headers: object) -> bool:
    return all(headers.get(k) == v for k, v in SECURITY.items())  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/http-bind", "/http-bind/"])
async def test_bosh_posts_carry_security_and_cors_headers(base: str, path: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(base + path, data=CREATE, headers={"Origin": ALLOWED}) as r:
            assert r.status == 200 and "sid=" in await r.text()
            assert secured(r.headers)
            assert r.headers.get("Access-Control-Allow-Origin") == ALLOWED
            assert "Origin" in r.headers.getall("Vary", [])
            assert r.headers.get("Cache-Control") == "no-store"
        async with http.post(base + path, data=CREATE, headers={"Origin": "https://evil"}) as r:
            assert r.status == 200 and secured(r.headers)
            assert "Access-Control-Allow-Origin" not in r.headers
        async with http.post(base + path, data="<nonsense") as r:
            assert r.status == 400 and secured(r.headers)


async def test_other_methods_and_preflights_reach_the_application(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/http-bind") as r:
            assert r.status == 200 and "BOSH endpoint" in await r.text()
            assert secured(r.headers)
        async with http.put(base + "/http-bind", data=CREATE) as r:
            assert r.status == 405 and secured(r.headers)
        preflight = {"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}
        async with http.options(base + "/http-bind", headers=preflight) as r:
            assert r.status == 204 and secured(r.headers)
            assert r.headers.get("Access-Control-Allow-Origin") == ALLOWED
            assert "POST" in r.headers.get("Access-Control-Allow-Methods", "")
        async with http.post(base + "/xmpp-websocket", data="x") as r:
            assert r.status == 405 and secured(r.headers)
        async with http.get(base + "/nowhere") as r:
            assert r.status == 404 and secured(r.headers)


async def test_expect_100_continue_is_answered(base: str) -> None:
    # a server that never says "100 Continue" would leave the body unsent: bounded wait
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(base + "/http-bind", data=CREATE, expect100=True) as r,
    ):
        assert r.status == 200 and "sid=" in await r.text()
        assert secured(r.headers)


async def test_websocket_handshake_and_its_refusal(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(base + "/xmpp-websocket", protocols=("xmpp",)) as ws:
            await ws.send_str(
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"
            )
            opened = await ws.receive_str()
            assert opened.startswith("<open ")
        async with http.get(base + "/xmpp-websocket", headers={"Origin": ALLOWED}) as r:
            assert r.status == 400 and secured(r.headers)  # no upgrade, no subprotocol
            assert r.headers.get("Access-Control-Allow-Origin") == ALLOWED


@pytest.mark.parametrize("path", ["/.well-known/host-meta", "/.well-known/host-meta.json"])
async def test_discovery_is_readable_from_any_origin(base: str, path: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(base + path, headers={"Origin": "https://elsewhere.example"}) as got:
            assert got.status == 200
            assert got.headers["Access-Control-Allow-Origin"] == "*"
            assert secured(got.headers)
            assert "urn:xmpp:alt-connections:websocket" in await got.text()
        # BOSH itself stays closed to an origin that is not listed
        async with http.post(
            base + "/http-bind", data=CREATE, headers={"Origin": "https://elsewhere.example"}
        ) as bosh:
            assert "Access-Control-Allow-Origin" not in bosh.headers
