"""The listener's lane (http/lane.py, http/lane_websocket.py) from a raw socket: what
it answers itself, what it hands to aiohttp on the same connection, and how it
fails a WebSocket client that breaks RFC 6455.  A real server runs in this process."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.server import Server

from .bosh_client import start_web

HTTPBIND = "http://jabber.org/protocol/httpbind"
CREATE = (
    f"<body xmlns='{HTTPBIND}' rid='100' to='localhost' wait='2' hold='1' ver='1.11'"
    " xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"
).encode()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    server = await start_web(
        tmp_path,
        {
            "max_request_size": 4096,
            "bosh": {"max_wait": 2, "inactivity": 5},
            "websocket": {"enabled": True},
        },
    )
    yield server
    await server.stop()


async def connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert server.http is not None
    _, host, port = server.http.bound[0]
    return await asyncio.open_connection(host, port)


def post(body: bytes, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return (
        b"POST /http-bind HTTP/"
        + version
        + b"\r\nHost: x\r\nContent-Type: text/xml\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


async def response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """(status line, headers with lower-case names, body) of one response."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get(b"content-length", 0))), 5)
    return lines[0], headers, body


async def test_bosh_is_answered_by_the_lane_with_the_listeners_headers(server: Server) -> None:
    reader, writer = await connect(server)
    writer.write(post(CREATE))
    status, headers, body = await response(reader)
    assert status == b"HTTP/1.1 200 OK"
    assert body.startswith(b"<body") and b"sid=" in body
    assert headers[b"content-type"] == b"text/xml; charset=utf-8"
    assert headers[b"x-frame-options"] == b"DENY"
    assert headers[b"cache-control"] == b"no-store"
    assert b"server" not in headers  # aiohttp names itself; the lane does not
    writer.close()


async def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    reader, writer = await connect(server)
    unknown = f"<body xmlns='{HTTPBIND}' rid='5' sid='nope'/>".encode()
    writer.write(post(CREATE) + post(unknown) + post(CREATE))
    first = await response(reader)
    second = await response(reader)
    third = await response(reader)
    assert first[0].endswith(b"200 OK") and b"sid=" in first[2]
    assert second[0] == b"HTTP/1.1 404 Not Found" and b"item-not-found" in second[2]
    assert third[0].endswith(b"200 OK") and b"sid=" in third[2]
    writer.close()


async def test_other_routes_go_to_aiohttp_on_the_same_connection(server: Server) -> None:
    reader, writer = await connect(server)
    writer.write(post(CREATE))
    assert (await response(reader))[0].endswith(b"200 OK")
    writer.write(b"GET /.well-known/host-meta HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = await response(reader)
    assert status.endswith(b"200 OK") and b"<XRD" in body
    assert headers[b"server"].startswith(b"Python/")  # aiohttp's answer
    # the connection is aiohttp's now, BOSH included
    writer.write(post(CREATE))
    status, headers, body = await response(reader)
    assert status.endswith(b"200 OK") and b"sid=" in body and b"server" in headers
    writer.close()


async def test_chunked_with_a_length_is_aiohttps_to_refuse(server: Server) -> None:
    # The classic smuggling request: the lane does not frame it, aiohttp refuses it
    # whole, and the request hidden in its "body" is never answered.
    reader, writer = await connect(server)
    hidden = b"GET /.well-known/host-meta HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(
        b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden
    )
    status, _, _ = await response(reader)
    assert status.split(b" ")[1] == b"400", status  # aiohttp's parser answers 1.0
    rest = await asyncio.wait_for(reader.read(), 5)
    assert b"XRD" not in rest
    writer.close()


async def test_http_1_0_gets_its_answer_and_the_connection_closes(server: Server) -> None:
    reader, writer = await connect(server)
    writer.write(post(CREATE, version=b"1.0"))
    status, headers, _ = await response(reader)
    assert status.endswith(b"200 OK") and headers[b"connection"] == b"close"
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_http_1_0_keep_alive_is_kept(server: Server) -> None:
    reader, writer = await connect(server)
    writer.write(post(CREATE, b"Connection: keep-alive\r\n", version=b"1.0"))
    _, headers, _ = await response(reader)
    assert headers[b"connection"] == b"keep-alive"
    writer.write(post(CREATE, b"Connection: keep-alive\r\n", version=b"1.0"))
    assert (await response(reader))[0].endswith(b"200 OK")
    writer.close()


async def test_a_body_over_the_limit_gets_413_and_the_connection_ends(server: Server) -> None:
    reader, writer = await connect(server)
    writer.write(
        b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"<" * 8192
    )
    status, headers, body = await response(reader)
    assert status.startswith(b"HTTP/1.1 413 ") and b"policy-violation" in body
    assert headers[b"connection"] == b"close"
    writer.write(b"x" * (100000 - 8192))  # the rest is read and dropped, then the close
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_cors_preflight_is_answered_without_a_body(server: Server) -> None:
    reader, writer = await connect(server)
    writer.write(
        b"OPTIONS /http-bind HTTP/1.1\r\nHost: x\r\nOrigin: https://elsewhere.example\r\n"
        b"Access-Control-Request-Method: POST\r\n\r\n"
    )
    status, headers, _ = await response(reader)
    assert status == b"HTTP/1.1 204 No Content"
    assert b"content-length" not in headers  # RFC 9110 §8.6
    assert b"access-control-allow-origin" not in headers  # not an allowed origin
    writer.close()


async def test_an_idle_connection_is_closed_when_the_server_stops(tmp_path: Path) -> None:
    server = await start_web(tmp_path, {"websocket": {"enabled": True}})
    reader, writer = await connect(server)
    writer.write(post(CREATE))
    await response(reader)
    await server.stop()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


# ---------------------------------------------------------------- WebSocket


def client_frame(opcode: int, payload: bytes, *, masked: bool = True, fin: bool = True) -> bytes:
    key = os.urandom(4) if masked else b""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    head = bytes((first, (0x80 if masked else 0) | n)) if n < 126 else b""
    if n >= 126:
        head = bytes((first, (0x80 if masked else 0) | 126)) + n.to_bytes(2, "big")
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if masked else payload
    return head + key + body


async def websocket(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await connect(server)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET /xmpp-websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        + key
        + b"\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"Sec-WebSocket-Protocol: xmpp" in head
    return reader, writer


async def server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await asyncio.wait_for(reader.readexactly(2), 5)
    assert not second & 0x80  # a server never masks
    n = second & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await asyncio.wait_for(reader.readexactly(n), 5)


async def close_code_after(reader: asyncio.StreamReader) -> int:
    while True:
        opcode, payload = await server_frame(reader)
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big")


OPEN = b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"


async def test_a_websocket_stream_opens_and_closes_cleanly(server: Server) -> None:
    reader, writer = await websocket(server)
    writer.write(client_frame(0x1, OPEN))
    opcode, payload = await server_frame(reader)
    assert opcode == 0x1 and payload.startswith(b"<open ")
    opcode, payload = await server_frame(reader)
    assert b"<stream:features" in payload
    writer.write(client_frame(0x1, b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"))
    opcode, payload = await server_frame(reader)
    assert opcode == 0x1 and payload.startswith(b"<close")
    assert await close_code_after(reader) == 1000
    writer.write(client_frame(0x8, (1000).to_bytes(2, "big")))
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_fragmented_open_is_one_message(server: Server) -> None:
    reader, writer = await websocket(server)
    writer.write(client_frame(0x1, OPEN[:20], fin=False) + client_frame(0x0, OPEN[20:]))
    opcode, payload = await server_frame(reader)
    assert opcode == 0x1 and payload.startswith(b"<open ")
    writer.close()


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (client_frame(0x1, OPEN, masked=False), 1002),
        (client_frame(0x1, b"<open \xff/>"), 1007),
        # 10 MB announced: over twice max_stanza_size, refused from the header alone
        (bytes((0x81, 0xFF)) + (10_000_000).to_bytes(8, "big") + b"mask", 1009),
    ],
    ids=["unmasked", "invalid-utf8", "oversized"],  # random masks: xdist needs stable ids
)
async def test_protocol_violations_end_the_connection_with_their_code(
    server: Server, wire: bytes, code: int
) -> None:
    reader, writer = await websocket(server)
    writer.write(wire)
    assert await close_code_after(reader) == code
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_ping_is_answered_and_binary_is_a_stream_error(server: Server) -> None:
    reader, writer = await websocket(server)
    writer.write(client_frame(0x9, b"are you there"))
    assert await server_frame(reader) == (0xA, b"are you there")
    writer.write(client_frame(0x1, OPEN))
    await server_frame(reader)  # <open/>
    await server_frame(reader)  # features
    writer.write(client_frame(0x2, b"\x00\x01"))
    opcode, payload = await server_frame(reader)
    assert opcode == 0x1 and b"bad-format" in payload
    writer.close()


async def test_a_handshake_without_the_xmpp_subprotocol_is_refused(server: Server) -> None:
    reader, writer = await connect(server)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET /xmpp-websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        + key
        + b"\r\n\r\n"
    )
    status, _, body = await response(reader)
    assert status.startswith(b"HTTP/1.1 400 ") and b"subprotocol" in body
    writer.close()


async def test_a_websocket_gets_system_shutdown_and_is_closed_when_the_server_stops(
    tmp_path: Path,
) -> None:
    server = await start_web(tmp_path, {"websocket": {"enabled": True}})
    reader, writer = await websocket(server)
    writer.write(client_frame(0x1, OPEN))
    await server_frame(reader)  # <open/>
    await server_frame(reader)  # features
    await server.stop()
    texts = []
    while True:
        opcode, payload = await server_frame(reader)
        if opcode == 0x8:
            break
        texts.append(payload)
    assert any(b"system-shutdown" in t for t in texts), texts
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_malformed_request_is_one_info_line_not_a_traceback(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    reader, writer = await connect(server)
    writer.write(
        b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    status, _, _ = await response(reader)
    assert status.split(b" ")[1] == b"400"
    writer.close()
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "aiohttp said nothing of the refusal"
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in records), [
        (r.levelname, r.getMessage()) for r in records
    ]
    assert "refused a malformed request from 127.0.0.1" in records[0].getMessage()
