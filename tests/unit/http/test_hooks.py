"""The media servers' hooks on the HTTP listener (http/hooks.py): nginx-rtmp's,
MediaMTX's and SRS's requests as they send them, against a whole server in this
process with `[streams]` on, answered by the stream authority on the server's
own accounts, login gate and rules."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.http.listener import STREAM_TOKEN_KEY
from chatgate.server import Server
from chatgate.streams import tokens

from .bosh_client import start_web

RULES = [
    "publish live/alice user:alice@localhost",
    "play live/* token",
    "play public/* anonymous",
]
PREFIX = (
    b"app=live&flashver=FMLE/3.0%20(compatible%3B%20Lavf59.27&swfurl="
    b"&tcurl=rtmp://127.0.0.1:1935/live&pageurl=&addr=203.0.113.5&clientid=6"
)


async def serve(tmp: Path, **streams: object) -> Server:
    server = await start_web(tmp, {}, streams={"enabled": True, "rules": RULES, **streams})
    assert server.ctx is not None
    await server.ctx.db.accounts.create(
        "alice", "localhost", derive_all("pencil-case", iterations=4096)
    )
    server.ctx.provider.invalidate("alice", "localhost")  # type: ignore[attr-defined]
    return server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    server = await serve(tmp_path)
    yield server
    await server.stop()


async def call(server: Server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection, read until the server closes it or the
    response's length is in."""
    assert server.http is not None
    _, host, port = server.http.bound[0]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(raw)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
    if raw.split(b"\r\n", 1)[0].endswith(b"HTTP/1.0"):
        # nginx-rtmp reads until the connection closes: the server must close it
        assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    return int(lines[0].split(" ")[1]), headers, body


def nginx(hook: str, body: bytes) -> bytes:
    """As nginx-rtmp sends it (streaming-contract.md): HTTP/1.0, Host without the port."""
    return (
        b"POST /hooks/nginx-rtmp/%s HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nConnection: Close\r\n"
        b"Content-Length: %d\r\n\r\n" % (hook.encode(), len(body))
    ) + body


def publish(name: str, args: bytes) -> bytes:
    return PREFIX + b"&call=publish&name=" + name.encode() + b"&type=live" + args


def play(name: str, args: bytes = b"", app: bytes = b"live") -> bytes:
    body = PREFIX.replace(b"app=live", b"app=" + app)
    return (
        body + b"&call=play&name=" + name.encode() + b"&start=4294965296&duration=0&reset=0" + args
    )


async def test_nginx_rtmp_publish_with_the_owners_password(server: Server) -> None:
    status, _, _ = await call(
        server, nginx("publish", publish("alice", b"&username=alice&password=pencil-case"))
    )
    assert status == 200  # and the connection closed (`call`)


@pytest.mark.parametrize(
    "args",
    [
        b"&username=alice&password=wrong",
        b"&username=nobody&password=pencil-case",
        b"",
        b"&username=alice&password=pencil-case&username=mallory",
    ],
)
async def test_nginx_rtmp_refusals_are_403(server: Server, args: bytes) -> None:
    status, _, _ = await call(server, nginx("publish", publish("alice", args)))
    assert status == 403


async def test_field_injection_publishes_only_the_first_name(server: Server) -> None:
    # alice has no right on live/bob: "&name=bob" must not become the stream
    body = publish("alice", b"&username=alice&password=pencil-case&name=bob")
    status, _, _ = await call(server, nginx("publish", body))
    assert status == 200
    assert server.http is not None and server.http.hooks is not None
    live = await server.http.hooks.authority.live.live()
    assert [s.stream for s in live] == ["live/alice"]


async def test_a_token_from_the_installation_secret_plays(server: Server) -> None:
    assert server.ctx is not None
    key = await server.ctx.db.secrets.get_or_create(STREAM_TOKEN_KEY, os.urandom(32))
    token = tokens.issue({1: key}, 1, "live/alice", "play", int(time.time()) + 60)
    status, _, _ = await call(server, nginx("play", play("alice", b"&token=" + token.encode())))
    assert status == 200
    other = tokens.issue({1: key}, 1, "live/bob", "play", int(time.time()) + 60)
    status, _, _ = await call(server, nginx("play", play("alice", b"&token=" + other.encode())))
    assert status == 403


async def test_public_streams_play_without_credentials(server: Server) -> None:
    status, _, _ = await call(server, nginx("play", play("news", app=b"public")))
    assert status == 200


async def test_mediamtx_without_credentials_gets_401(server: Server) -> None:
    body = json.dumps(
        {
            "user": "",
            "password": "",
            "token": "",
            "ip": "203.0.113.5",
            "action": "read",
            "path": "live/alice",
            "protocol": "rtsp",
            "id": "1b2c",
            "query": "",
        }
    ).encode()
    raw = (
        b"POST /hooks/mediamtx/auth HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    status, _, _ = await call(server, raw)
    assert status == 401


async def test_srs_allow_is_200_with_body_0(server: Server) -> None:
    body = json.dumps(
        {
            "server_id": "vid-1",
            "action": "on_play",
            "client_id": "341w361a",
            "ip": "203.0.113.5",
            "vhost": "__defaultVhost__",
            "app": "public",
            "stream": "news",
            "param": "",
        }
    ).encode()
    raw = (
        b"POST /hooks/srs/on_play HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    status, _, answer = await call(server, raw)
    assert (status, answer) == (200, b"0")


async def test_unknown_adapter_is_404(server: Server) -> None:
    status, _, _ = await call(
        server, b"POST /hooks/flash/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    assert status == 404


async def test_calls_from_outside_hook_networks_are_403(tmp_path: Path) -> None:
    server = await serve(tmp_path, hook_networks=["192.0.2.0/24"])
    try:
        status, _, body = await call(
            server, nginx("publish", publish("alice", b"&username=alice&password=pencil-case"))
        )
        assert status == 403 and b"configured media servers" in body
    finally:
        await server.stop()


async def test_hooks_are_absent_unless_enabled(tmp_path: Path) -> None:
    server = await start_web(tmp_path, {})
    try:
        status, _, _ = await call(server, nginx("publish", publish("alice", b"")))
        assert status == 404
    finally:
        await server.stop()
