"""TCP and TLS framing (RFC 6120 §4): the stream as one XML document, with each
connection's writes coalesced per event-loop turn.

Coalescing: many stanzas written in one loop turn leave in one
`transport.write()` (one send() system call) at the end of the turn.  Routing a
burst of stanzas read in one chunk would otherwise cost one system call per
delivered stanza; measured with py-spy that was ~47% of the server's time under
message load.  The buffer is flushed by a `call_soon` callback, so a lone
stanza waits at most for the rest of the current loop turn.

Everything that must reach the wire before a state change (the `<proceed/>`
before a TLS handshake) calls `flush()` first; `end()` flushes by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chatgate.vocabulary import ns
from chatgate.xml.serialize import escape_attr
from chatgate.xmpp.framing import StreamError, StreamHeader

_FEATURES_OPEN = b"<stream:features>"
_FEATURES_CLOSE = b"</stream:features>"
_FOOTER = b"</stream:stream>"


def stream_header(header: StreamHeader) -> bytes:
    """The XML declaration and `<stream:stream>` start tag (RFC 6120 §4.7)."""
    to_attr = f' to="{escape_attr(header.to)}"' if header.to else ""
    return (
        "<?xml version='1.0'?>"
        f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAMS}'"
        f' from="{escape_attr(header.from_)}"{to_attr} id="{header.stream_id}"'
        f" version='1.0' xml:lang='{header.lang}'>"
    ).encode()


class TurnBuffer:
    """What one loop turn wrote, handed on together at the end of the turn (see the
    module docstring): `_add` queues, `flush` passes the queue to `_deliver`.  The
    framers of byte streams and of WebSocket messages share it."""

    __slots__ = ("_loop", "_pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[bytes] | None = None

    def _add(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            pending.append(data)

    def flush(self) -> None:
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._deliver(pending)

    def _deliver(self, pending: list[bytes]) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        self._pending = None


class TcpStreamOutput(TurnBuffer):
    """`StreamOutput` for a byte stream (TCP, TLS): today's wire format."""

    __slots__ = ("_write",)

    def __init__(self, write: Callable[[bytes], None], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._write = write

    def header(self, header: StreamHeader) -> None:
        self._add(stream_header(header))

    def features(self, children: str) -> None:
        self._add(_FEATURES_OPEN + children.encode() + _FEATURES_CLOSE)

    #: one serialized element: queued as it is (the hot path: no call in between)
    element = TurnBuffer._add

    def end(self, error: StreamError | None) -> None:
        if error is not None:
            self._add(error.element().encode() + _FOOTER)
        else:
            self._add(_FOOTER)
        self.flush()

    def _deliver(self, pending: list[bytes]) -> None:
        self._write(pending[0] if len(pending) == 1 else b"".join(pending))
