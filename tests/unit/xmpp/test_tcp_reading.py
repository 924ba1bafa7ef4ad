"""Why the TCP transport stops reading, and when it starts again (issue 9, item 5):
each reason is lifted on its own, and a backlog drains one slice per loop turn
with the socket paused, so it never grows by more than one read."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from chatgate.config import Config
from chatgate.xmpp.transports.tcp import TcpTransport


class FakeSocketTransport:
    """What asyncio gives a Protocol, reduced to what the transport uses."""

    def __init__(self) -> None:
        self.reading = True
        self.written = bytearray()
        self.buffered = 0
        self.closed = False
        self.aborted = False

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False

    def resume_reading(self) -> None:
        assert not self.reading, "resumed twice"
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        self.written += data
        self.buffered += len(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


class RecordingConnection:
    """Stands for the C2S driver: what the transport reads of it."""

    def __init__(self, read_slice: int = 65_536) -> None:
        self.closed = False
        self.read_slice = read_slice
        self.read_bucket = None
        self.negotiation = SimpleNamespace(authenticated_user=None)
        self.session = None


def transport_with(conn: RecordingConnection) -> tuple[TcpTransport, FakeSocketTransport]:
    ctx = SimpleNamespace(config=Config(), domain="localhost")
    tcp = TcpTransport(ctx, lambda: None, None, direct_tls=False)  # type: ignore[arg-type]
    sock = FakeSocketTransport()
    tcp._transport = sock  # type: ignore[assignment]
    tcp.connection = conn  # type: ignore[assignment]
    return tcp, sock


def test_writer_back_pressure_does_not_undo_the_queue_pause() -> None:
    tcp, sock = transport_with(RecordingConnection())
    tcp.pause_reading()  # the driver's queue is full
    tcp.pause_writing()  # and the peer stopped reading
    tcp.resume_writing()  # the peer reads again ...
    assert not sock.reading  # ... but the queue is still full
    tcp.resume_reading()
    assert sock.reading


def test_the_queue_resuming_does_not_undo_writer_back_pressure() -> None:
    tcp, sock = transport_with(RecordingConnection())
    tcp.pause_writing()
    tcp.pause_reading()
    tcp.resume_reading()
    assert not sock.reading
    tcp.resume_writing()
    assert sock.reading


async def test_a_large_read_is_parsed_one_slice_per_loop_turn_with_the_socket_paused() -> None:
    conn = RecordingConnection(read_slice=4096)
    parsed: list[int] = []
    tcp, sock = transport_with(conn)

    class CountingParser:
        hibernating = False

        def feed(self, data: bytes) -> list[object]:
            parsed.append(len(data))
            return []

        def close(self) -> None:
            pass

    tcp._parser = CountingParser()  # type: ignore[assignment]
    tcp._feed(b"x" * 10_000)
    assert parsed == [4096] and not sock.reading
    # More arrives before the backlog is gone (asyncio had it in flight): held, in order.
    tcp._feed(b"y" * 100)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert parsed == [4096, 4096]
    for _ in range(6):
        await asyncio.sleep(0)
    assert parsed == [4096, 4096, 1808, 100]
    assert sock.reading and tcp._backlog is None


def test_output_past_the_limit_closes_the_session_once() -> None:
    conn = RecordingConnection()
    closes: list[tuple[object, str]] = []

    def close_stream(condition: object, text: str) -> None:
        closes.append((condition, text))
        tcp.write(b"</stream:stream>")  # the stream error goes out through write() too

    conn.close_stream = close_stream  # type: ignore[attr-defined]
    tcp, _ = transport_with(conn)
    tcp.pause_writing()
    limit = Config().limits.max_output_buffer
    tcp.write(b"x" * limit)
    assert closes == []
    tcp.write(b"x")
    assert len(closes) == 1
    assert closes[0][0].value == "policy-violation"  # type: ignore[attr-defined]
