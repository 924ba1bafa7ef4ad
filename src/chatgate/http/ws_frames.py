"""A sans-I/O reader of a client's WebSocket frames (RFC 6455 §5), for the
listener's lane (`lane_websocket.py`).

It turns bytes into whole messages (fragments joined) and control frames, and
refuses what the RFC says a server must refuse, each with its close code:
unmasked frames, reserved bits or opcodes, fragmented or long control frames,
continuations out of place, a message over the size limit (1009, found from
the frame header, before its payload is buffered), text that is not UTF-8
(1007), a malformed close payload.  No extension is ever negotiated, so the
reserved bits must be zero.

Bounded: it holds at most one frame header plus one message of `max_message`
bytes, the fragments of a message joined in one buffer as they come (an object
per fragment cost 8 to 40 bytes each whatever its size, and empty fragments
none at all: a message continued with them for ever grew without bound).
`step` reports each frame as it is read, fragments too, so that the reader's
caller can count every frame against the connection's share and byte rate.
"""

from __future__ import annotations

from collections.abc import Iterator

CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA
#: what `step` returns for a fragment that does not end its message (not an opcode)
FRAGMENT = -1

PROTOCOL_ERROR = 1002
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009

_DATA_OPCODES = frozenset((CONTINUATION, TEXT, BINARY))
_CONTROL_OPCODES = frozenset((CLOSE, PING, PONG))
#: close codes a peer may send (§7.4.1-2): the defined ones, and 3000-4999
_SENDABLE = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


class FrameError(Exception):
    """The client broke RFC 6455: fail the connection with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def unmask(payload: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR `payload` with the repeated 4-byte `mask` (§5.3), as one big-integer
    operation: a loop over the bytes in Python would cost ~50x more."""
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(n, "little")


def close_code(payload: bytes) -> int | None:
    """The status code of a client's close frame (None: it gave none); raises
    FrameError for a malformed one (§5.5.1, §7.4)."""
    if not payload:
        return None
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "a close frame with a one-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if code not in _SENDABLE and not 3000 <= code <= 4999:
        raise FrameError(PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(INVALID_PAYLOAD, "a close reason that is not UTF-8") from None
    return code


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (a server's frames are never masked, §5.1)."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


class MessageReader:
    """Whole messages and control frames out of a client's bytes."""

    __slots__ = ("_buffer", "_fragments", "_max", "_opcode", "frame_bytes")

    def __init__(self, max_message: int) -> None:
        self._max = max_message
        self._buffer = bytearray()
        #: the opcode of the fragmented message being joined (None: none)
        self._opcode: int | None = None
        #: the payloads of its fragments so far
        self._fragments = bytearray()
        #: bytes on the wire (header, mask and payload) of the last frame read
        self.frame_bytes = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def messages(self) -> Iterator[tuple[int, bytes]]:
        """(opcode, payload) of each complete message or control frame, in order,
        until the buffer holds no complete frame; raises FrameError."""
        while True:
            item = self.next()
            if item is None:
                return
            yield item

    def next(self) -> tuple[int, bytes] | None:
        """The next complete message or control frame, None when more bytes are
        needed; raises FrameError."""
        while True:
            item = self.step()
            if item is None or item[0] != FRAGMENT:
                return item

    def step(self) -> tuple[int, bytes] | None:
        """What the next frame brings: a complete message, a control frame, or
        (FRAGMENT, its payload) for a fragment that does not end its message;
        None when more bytes are needed; raises FrameError.  `frame_bytes` is
        then the frame's size on the wire."""
        buffer = self._buffer
        have = len(buffer)
        if have < 2:
            return None
        first, second = buffer[0], buffer[1]
        if first & 0x70:
            raise FrameError(PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
        if not second & 0x80:
            raise FrameError(PROTOCOL_ERROR, "a client frame that is not masked")
        opcode = first & 0x0F
        fin = first & 0x80
        length = second & 0x7F
        start = 2
        if length == 126:
            if have < 4:
                return None
            length = int.from_bytes(buffer[2:4], "big")
            start = 4
        elif length == 127:
            if have < 10:
                return None
            length = int.from_bytes(buffer[2:10], "big")
            if length >> 63:
                raise FrameError(PROTOCOL_ERROR, "a frame length with its top bit set")
            start = 10
        self._check(opcode, bool(fin), length)
        end = start + 4 + length
        if have < end:
            return None
        payload = unmask(memoryview(buffer)[start + 4 : end], bytes(buffer[start : start + 4]))
        del buffer[:end]
        self.frame_bytes = end
        if opcode >= CLOSE:
            return opcode, payload
        message = self._join(opcode, bool(fin), payload)
        return (FRAGMENT, payload) if message is None else message

    def _check(self, opcode: int, fin: bool, length: int) -> None:
        if opcode >= CLOSE:
            if opcode not in _CONTROL_OPCODES:
                raise FrameError(PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
            if not fin or length > 125:
                raise FrameError(PROTOCOL_ERROR, "a fragmented or long control frame")
            return
        if opcode not in _DATA_OPCODES:
            raise FrameError(PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if opcode == CONTINUATION:
            if self._opcode is None:
                raise FrameError(PROTOCOL_ERROR, "a continuation frame with no message to continue")
        elif self._opcode is not None:
            raise FrameError(PROTOCOL_ERROR, "a new message before the last one ended")
        if len(self._fragments) + length > self._max:
            raise FrameError(MESSAGE_TOO_BIG, f"a message over {self._max} bytes")

    def _join(self, opcode: int, fin: bool, payload: bytes) -> tuple[int, bytes] | None:
        if opcode != CONTINUATION:
            if fin:
                return opcode, self._valid(opcode, payload)
            self._opcode = opcode
        self._fragments += payload
        if not fin:
            return None
        kind, self._opcode = self._opcode, None
        assert kind is not None
        whole = bytes(self._fragments)
        self._fragments = bytearray()
        return kind, self._valid(kind, whole)

    @staticmethod
    def _valid(opcode: int, payload: bytes) -> bytes:
        if opcode == TEXT and not payload.isascii():
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise FrameError(INVALID_PAYLOAD, "a text message that is not UTF-8") from None
        return payload
