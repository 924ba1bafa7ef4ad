"""The paced reading client TCP connections and component connections share
(`xmpp/transports/pacing.py`), checked on both: one slice per loop turn with the
socket paused, pause reasons lifted one by one, the rate, and the close."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from chatgate.components.connection import ComponentConnection
from chatgate.config import Config
from chatgate.xmpp.shaper import TokenBucket
from chatgate.xmpp.transports.tcp import TcpTransport
from tests.unit.xmpp.test_tcp_reading import FakeSocketTransport


class FakeSocket(FakeSocketTransport):
    """The fake socket of the TCP reading tests, with what `connection_made` and a
    close use besides."""

    def __init__(self) -> None:
        super().__init__()
        self.eof = False

    @property
    def closing(self) -> bool:
        return self.closed

    @closing.setter
    def closing(self, value: bool) -> None:
        self.closed = value

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True


class CountingParser:
    """Records the size of each slice handed to it."""

    hibernating = False

    def __init__(self) -> None:
        self.fed: list[int] = []

    def feed(self, data: bytes) -> list[object]:
        self.fed.append(len(data))
        return []

    def close(self) -> None:
        pass


class Consumer:
    """Stands for the C2S driver in front of a TCP transport."""

    def __init__(self, read_slice: int) -> None:
        self.closed = False
        self.read_slice = read_slice
        self.read_bucket: TokenBucket | None = None
        self.negotiation = SimpleNamespace(authenticated_user=None)
        self.session = None
        self.peer_closed = False

    def events(self, events: list[object]) -> None:
        pass

    def connection_lost(self) -> None:
        self.closed = True


class Hub:
    """What a component connection asks of the components' hub."""

    def __init__(self) -> None:
        self.ctx = SimpleNamespace(config=Config(), domain="localhost")
        self.secrets = {"gw.localhost": "secret"}

    def admit(self, conn: object) -> bool:
        return True

    def gone(self, conn: object) -> None:
        pass


def tcp(read_slice: int) -> tuple[Any, FakeSocket, Any]:
    ctx = SimpleNamespace(config=Config(), domain="localhost")
    reader = TcpTransport(ctx, lambda: None, None, direct_tls=False)  # type: ignore[arg-type,return-value]
    sock = FakeSocket()
    reader._attach(sock)  # type: ignore[arg-type]
    consumer = Consumer(read_slice)
    reader.connection = consumer  # type: ignore[assignment]
    return reader, sock, consumer


def component(read_slice: int) -> tuple[Any, FakeSocket, Any]:
    conn = ComponentConnection(Hub())  # type: ignore[arg-type]
    conn.read_slice = read_slice
    sock = FakeSocket()
    conn.connection_made(sock)  # type: ignore[arg-type]
    for timer in conn._timers:
        timer.cancel()  # the handshake timeout is not what is tested here
    return conn, sock, conn


#: Builds a reader (TcpTransport or ComponentConnection), its socket and its consumer.
Maker = Callable[[int], tuple[Any, FakeSocket, Any]]
BOTH = pytest.mark.parametrize("make", [tcp, component], ids=["tcp", "component"])


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@BOTH
async def test_a_large_read_is_parsed_one_slice_per_turn_with_the_socket_paused(
    make: Maker,
) -> None:
    reader, sock, _ = make(4096)
    parser = reader._parser = CountingParser()
    reader.data_received(b"x" * 10_000)
    assert parser.fed == [4096] and not sock.reading
    reader.data_received(b"y" * 100)  # in flight: held, in order
    await turns(2)
    assert parser.fed == [4096, 4096]
    await turns(6)
    assert parser.fed == [4096, 4096, 1808, 100]
    assert sock.reading and reader._backlog is None


@BOTH
async def test_each_reason_is_lifted_on_its_own(make: Maker) -> None:
    reader, sock, _ = make(4096)
    parser = reader._parser = CountingParser()
    reader.pause_reading()  # the in-order queue is full
    reader.pause_writing()  # and the peer stopped reading
    reader.data_received(b"z" * 10)
    assert parser.fed == [] and not sock.reading
    reader.resume_writing()  # the peer reads again, but the queue is still full
    await turns(2)
    assert parser.fed == [] and not sock.reading
    reader.resume_reading()
    await turns(2)
    assert parser.fed == [10] and sock.reading


@BOTH
async def test_a_peer_over_its_byte_rate_is_read_later(make: Maker) -> None:
    reader, sock, consumer = make(65_536)
    parser = reader._parser = CountingParser()
    loop = asyncio.get_running_loop()
    consumer.read_bucket = TokenBucket(100_000, 1000, loop.time())
    reader.data_received(b"a" * 3000)  # 2000 bytes over the burst
    assert parser.fed == [3000] and not sock.reading
    reader.data_received(b"b" * 10)
    await turns(3)
    assert parser.fed == [3000]  # still paused: the rate's wait is ~20 ms
    await asyncio.sleep(0.1)
    assert parser.fed == [3000, 10] and sock.reading


@BOTH
async def test_the_pending_rate_resume_is_cancelled_when_the_connection_is_lost(
    make: Maker,
) -> None:
    reader, sock, consumer = make(65_536)
    reader._parser = CountingParser()
    consumer.read_bucket = TokenBucket(1, 1, asyncio.get_running_loop().time())
    reader.data_received(b"a" * 100)
    timer = reader._rate_timer
    assert timer is not None and not timer.cancelled()
    sock.closing = True
    reader.connection_lost(None)
    assert timer.cancelled() and reader._backlog is None


@BOTH
async def test_while_lingering_the_peer_is_read_whatever_pauses(make: Maker) -> None:
    reader, sock, consumer = make(65_536)
    reader._parser = CountingParser()
    reader.pause_writing()
    assert not sock.reading
    if isinstance(reader, TcpTransport):
        consumer.closed = True
        reader.close()
    else:
        assert isinstance(reader, ComponentConnection)
        reader.close_stream()
    assert sock.eof and sock.reading  # our side is shut; its last bytes are drained
    reader.pause_reading()  # a late reason to pause does not stop the draining
    reader.resume_writing()
    assert sock.reading
    for timer in getattr(reader, "_timers", []):
        timer.cancel()
