"""XMPP over WebSocket (RFC 7395) for the generator: a lean RFC 6455 client on an asyncio Protocol.

Why hand-written rather than aiohttp's `ws_connect`: a login there is a full ClientSession
request for the handshake plus a reader task, and every send is a coroutine; the generator
must stay well below one core at several times the fastest server's rate. Here the handshake is
one pre-built GET, a frame is a few bytes of header plus the masked payload (RFC 6455 section
5.3: a fresh key per frame, masked with one big-integer XOR), and received messages are handed to
the same lockstep `expect` / hot `sink` as TCP, one call per read.

Framing per RFC 7395: `<open/>` and `<close/>` in the framing namespace, one stanza per message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
from collections.abc import Callable

from bench.loadgen.scram import ScramCache
from bench.loadgen.xmpp import DOMAIN, Connection, LoginOptions, XmppError, sasl_and_bind

FRAMING_NS = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING_NS}' to='{DOMAIN}' version='1.0' xml:lang='en'/>".encode()
CLOSE = f"<close xmlns='{FRAMING_NS}'/>".encode()
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE_FRAME, PING, PONG = 0x1, 0x8, 0x9, 0xA


def frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    key = random.getrandbits(32).to_bytes(4, "big")
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    if not n:
        return head + key
    mask = (key * ((n >> 2) + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + key + masked


class WsConnection(Connection):
    """A WebSocket carrying one XMPP stream; messages feed `Connection.data_received`."""

    __slots__ = ("_accept", "_close_sent", "_frames", "_handshake", "_parts", "ended")
    STANZA_NS = b" xmlns='jabber:client'"

    def __init__(self, loop: asyncio.AbstractEventLoop, key: bytes) -> None:
        super().__init__(loop)
        self._accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self._handshake: asyncio.Future[None] | None = loop.create_future()
        self._frames = b""
        self._parts: list[bytes] = []  # fragments of a message not yet complete
        self._close_sent = False
        self.ended = False

    def data_received(self, data: bytes) -> None:
        if self._handshake is not None:
            data = self._upgrade(data)
            if not data:
                return
        buf = self._frames + data if self._frames else data
        messages: list[bytes] = []
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if b1 & 0x80:
                raise XmppError("the server masked a frame (RFC 6455 section 5.1)")
            end = pos + head + n
            if end > size:
                break
            payload = buf[pos + head : end]
            pos = end
            op = b0 & 0x0F
            if op == PING:
                self._raw(frame(payload, PONG))
            elif op == CLOSE_FRAME:
                messages.append(b"</stream:stream>")  # fails a lockstep wait at once
                if not self._close_sent:  # RFC 6455 section 5.5.1: answer a close once
                    self._close_sent = True
                    self._raw(frame(payload[:2], CLOSE_FRAME))
                self.ended = True
                if self.transport is not None:
                    self.transport.close()  # both closes exchanged: nothing more will come
                break
            elif op in (TEXT, 0x0):
                if b0 & 0x80:
                    if self._parts:
                        self._parts.append(payload)
                        payload = b"".join(self._parts)
                        self._parts = []
                    messages.append(payload)
                else:
                    self._parts.append(payload)
        self._frames = buf[pos:]
        if messages:
            super().data_received(messages[0] if len(messages) == 1 else b"".join(messages))

    def _upgrade(self, data: bytes) -> bytes:
        """Check the 101 answer; returns the bytes after it (frames may follow at once)."""
        self._frames += data
        end = self._frames.find(b"\r\n\r\n")
        if end < 0:
            return b""
        head, rest = self._frames[:end].lower(), self._frames[end + 4 :]
        self._frames = b""
        fut, self._handshake = self._handshake, None
        assert fut is not None
        line, *rows = head.split(b"\r\n")
        fields = {k.strip(): v.strip() for k, _, v in (r.partition(b":") for r in rows)}
        why = ""
        if line[9:12] != b"101":
            why = f"WebSocket handshake refused: {line.decode(errors='replace')}"
        elif fields.get(b"sec-websocket-protocol") != b"xmpp":
            why = "WebSocket handshake did not select the 'xmpp' subprotocol"
        elif fields.get(b"sec-websocket-accept") != self._accept.lower():
            why = "WebSocket handshake: wrong Sec-WebSocket-Accept"
        if why:
            fut.set_exception(XmppError(why))
            assert self.transport is not None
            self.transport.abort()
            return b""
        fut.set_result(None)
        return rest

    def connection_lost(self, exc: Exception | None) -> None:
        fut, self._handshake = self._handshake, None
        if fut is not None and not fut.done():
            fut.set_exception(XmppError(f"connection lost during the WebSocket handshake: {exc}"))
        self.ended = True
        super().connection_lost(exc)

    async def upgraded(self) -> None:
        if self._handshake is not None:
            await self._handshake

    # sending: one stanza per message
    def _raw(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)

    def write(self, data: bytes) -> None:
        self._raw(frame(data))

    def send_repeated(self, stanza: bytes, k: int) -> None:
        self._raw(b"".join([frame(stanza) for _ in range(k)]))

    async def restart(self) -> None:
        self.write(OPEN)

    async def terminate(self) -> None:
        self.close()

    def close(self) -> None:
        """`<close/>`, then the WebSocket close frame; the server closes the TCP connection."""
        t = self.transport
        if t is not None and not t.is_closing() and not self.ended:
            self.ended = True
            self._close_sent = True
            t.write(frame(CLOSE) + frame(b"\x03\xe8", CLOSE_FRAME))
            self.loop.call_later(5.0, t.close)  # in case the server never closes it


class WsClient:
    """Logs accounts in over WebSocket; shares the loop and SCRAM cache across logins."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, opts: LoginOptions, cache: ScramCache, path: str
    ) -> None:
        self.loop = loop
        self.opts = opts
        self.cache = cache
        self.path = path
        self.on_error: Callable[[BaseException], None] | None = None
        self._request_head = (
            f"GET {path} HTTP/1.1\r\nHost: {opts.host}:{opts.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: xmpp\r\nSec-WebSocket-Key: "
        ).encode()

    @property
    def url(self) -> str:
        return f"ws://{self.opts.host}:{self.opts.port}{self.path}"

    async def login(self, user: str, pw: str, resource: str) -> WsConnection:
        loop = self.loop
        key = base64.b64encode(os.urandom(16))
        _, conn = await loop.create_connection(
            lambda: WsConnection(loop, key), self.opts.host, self.opts.port
        )
        try:
            conn._raw(self._request_head + key + b"\r\n\r\n")
            await conn.upgraded()
            conn.write(OPEN)
            await conn.expect(b"stream:features")
            conn.jid = await sasl_and_bind(
                conn, self.opts.mechanism, self.cache, user, pw, resource
            )
        except BaseException:
            conn.abort()
            raise
        return conn

    async def shutdown(self) -> None:
        """Connections end themselves (close() arms a timer); nothing pooled to close."""
