"""WebSocket output written without a writer task (http/websocket.py): frames as
RFC 6455 §5.2 has them, one write per loop turn, nothing after the close, and the
`max_output_buffer` bound on what the client leaves unread."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from aiohttp import WSMsgType

from chatgate.http import websocket
from chatgate.http.websocket import WebSocketTransport, text_frame
from chatgate.vocabulary.facts import ConnectionFacts


def unframe(data: bytes) -> list[bytes]:
    """Server frames, parsed by hand: (FIN, opcode, no mask, length) checked."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b0 == 0x80 | WSMsgType.TEXT and not b1 & 0x80
        n, head = b1, 2
        if n == 126:
            (n,) = struct.unpack_from("!H", data, pos + 2)
            head = 4
        elif n == 127:
            (n,) = struct.unpack_from("!Q", data, pos + 2)
            head = 10
        out.append(data[pos + head : pos + head + n])
        pos += head + n
    return out


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_lengths(n: int) -> None:
    payload = b"x" * n
    assert unframe(text_frame(payload)) == [payload]


class Wire:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = True
        self.closing = True


class Ws:
    compress = 0
    closed = False


class Limits:
    preauth_max_stanza_size = 65536
    max_stanza_size = 262144
    max_depth = 64
    max_output_buffer = 1000


class Ctx:
    class config:
        limits = Limits


class Conn:
    closed = False
    session = None

    def __init__(self) -> None:
        self.errors: list[Any] = []

    def close_stream(self, condition: Any, text: str) -> None:
        self.errors.append(condition)


FACTS = ConnectionFacts(domain="example.com", remote_address="192.0.2.1")


def transport(wire: Wire, ws: Any = None) -> WebSocketTransport:
    t = WebSocketTransport(Ctx(), ws or Ws(), FACTS, None, wire)  # type: ignore[arg-type]
    t.connection = Conn()  # type: ignore[assignment]
    return t


def test_a_turns_messages_leave_in_one_write() -> None:
    wire = Wire()
    transport(wire).send_messages([b"<open/>", b"<features/>"])
    assert len(wire.written) == 1
    assert unframe(wire.written[0]) == [b"<open/>", b"<features/>"]


def test_nothing_is_written_after_the_close() -> None:
    wire = Wire()
    ws = Ws()
    t = transport(wire, ws)
    ws.closed = True
    t.send_messages([b"<message/>"])
    wire.closing, ws.closed = True, False
    t.send_messages([b"<message/>"])
    assert wire.written == []


def test_unread_output_over_the_limit_ends_the_stream_once() -> None:
    wire = Wire()
    t = transport(wire)
    t.send_messages([b"<a/>"])
    conn = t.connection
    assert conn is not None and conn.errors == []  # type: ignore[attr-defined]
    wire.buffered = 1001
    t.send_messages([b"<b/>"])
    t.send_messages([b"<c/>"])
    assert [e.value for e in conn.errors] == ["policy-violation"]  # type: ignore[attr-defined]


def test_compressed_connections_use_aiohttps_writer() -> None:
    class Compressed(Ws):
        compress = 15

    async def run() -> list[Any]:
        sent: list[Any] = []

        class W(Compressed):
            async def send_frame(self, message: bytes, opcode: WSMsgType) -> None:
                sent.append((message, opcode))

            async def close(self, code: int = 1000) -> None:
                self.closed = True

        wire = Wire()
        t = transport(wire, W())
        t.send_messages([b"<a/>", b"<b/>"])
        await t.finish()
        assert wire.written == []
        return sent

    assert asyncio.run(run()) == [(b"<a/>", WSMsgType.TEXT), (b"<b/>", WSMsgType.TEXT)]


def test_a_close_that_does_not_complete_aborts_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that never reads never lets the close through: after CLOSE_TIMEOUT
    the socket is aborted, as on TCP."""
    monkeypatch.setattr(websocket, "CLOSE_TIMEOUT", 0.05)

    async def run() -> Wire:
        wire = Wire()
        t = transport(wire)
        t.close()
        assert not wire.aborted
        await asyncio.sleep(0.1)
        return wire

    assert asyncio.run(run()).aborted
