"""The parsing budget of a loop turn (`xmpp/transports/turns.py`) with real TCP and
component readers: once spent, the connections read later wait and are served
first in the next turn, in order, each queued once; one that must wait longer than
that stops being read until its turn."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
import weakref
from typing import Any

import pytest
import uvloop

from chatgate.xmpp.transports import turns as turns_module
from chatgate.xmpp.transports.pacing import PacedReader
from chatgate.xmpp.transports.turns import TurnBudget, turn_budget
from tests.unit.xmpp.test_pacing import BOTH, Consumer, CountingParser, Maker, turns

BUDGET = 0.002
#: a parse (or a wait) just past the budget
OVER = BUDGET + 0.0001


class Clock:
    """The budget's clock, moved by hand (and by parsing, when `cost` is set)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class OrderedParser:
    """Records, in one list shared by every reader, which reader parsed what; each
    feed costs `cost` seconds of the clock."""

    hibernating = False

    def __init__(self, name: str, log: list[tuple[str, bytes]], clock: Clock) -> None:
        self.name = name
        self.log = log
        self.clock = clock
        self.cost = 0.0

    def feed(self, data: bytes) -> list[object]:
        self.log.append((self.name, data))
        self.clock.now += self.cost
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(turns_module, "_monotonic", clock)
    return clock


def readers(
    make: Maker, names: str, clock: Clock
) -> tuple[dict[str, Any], list[tuple[str, bytes]], TurnBudget]:
    """Readers named by the letters of `names`, sharing one parse log and one budget
    of `BUDGET` on the running loop."""
    budget = TurnBudget(asyncio.get_running_loop(), BUDGET)
    log: list[tuple[str, bytes]] = []
    out = {}
    for name in names:
        reader, sock, _ = make(65_536)
        reader._parser = OrderedParser(name, log, clock)
        reader._turns = budget
        out[name] = (reader, sock)
    return out, log, budget


@BOTH
async def test_connections_read_after_the_budget_wait_for_the_next_turn_in_order(
    make: Maker, clock: Clock
) -> None:
    conns, log, budget = readers(make, "abc", clock)
    conns["a"][0].data_received(b"1")
    clock.now += OVER  # a has parsed for the whole budget
    conns["c"][0].data_received(b"2")
    conns["b"][0].data_received(b"3")
    conns["c"][0].data_received(b"4")  # in flight while c waits: kept behind "2"
    assert log == [("a", b"1")]
    # a wait of one read does not pause the socket (the next turn serves it before
    # any socket is read); c, read twice, is paused
    assert conns["b"][1].reading and not conns["c"][1].reading
    assert budget.waiting == 2  # c once, though it was read twice
    await turns(1)
    assert log == [("a", b"1"), ("c", b"2"), ("c", b"4"), ("b", b"3")]
    assert conns["c"][1].reading and conns["b"][1].reading
    assert budget.waiting == 0


@BOTH
async def test_those_held_back_go_before_what_the_next_turn_reads(
    make: Maker, clock: Clock
) -> None:
    """A turn serves who waits first; if the budget runs out on the way, those left
    keep their place ahead of connections read later."""
    conns, log, _ = readers(make, "abcd", clock)
    for name in "abc":
        conns[name][0]._parser.cost = OVER  # each parse spends a budget
    conns["a"][0].data_received(b"1")  # spends this turn's budget
    conns["b"][0].data_received(b"2")
    conns["c"][0].data_received(b"3")
    assert log == [("a", b"1")]
    await turns(1)  # b is served and spends the budget; c stays first in line
    assert log == [("a", b"1"), ("b", b"2")]
    assert not conns["c"][1].reading  # it waits another turn: its socket is paused
    conns["d"][0].data_received(b"4")  # read in this turn, after the budget: behind c
    await turns(1)
    assert log[2] == ("c", b"3")
    assert not conns["d"][1].reading  # c spent that turn: d waits on, paused
    await turns(1)
    assert log == [("a", b"1"), ("b", b"2"), ("c", b"3"), ("d", b"4")]
    assert all(sock.reading for _, sock in conns.values())


@BOTH
async def test_under_the_budget_nothing_waits(make: Maker, clock: Clock) -> None:
    conns, log, budget = readers(make, "abcdef", clock)
    for name, (reader, _) in conns.items():
        reader.data_received(name.encode())
        clock.now += BUDGET / 10
    assert [name for name, _ in log] == list("abcdef")
    assert budget.waiting == 0 and all(sock.reading for _, sock in conns.values())


@BOTH
async def test_a_connection_lost_while_it_waits_is_skipped(make: Maker, clock: Clock) -> None:
    conns, log, budget = readers(make, "ab", clock)
    conns["a"][0].data_received(b"1")
    clock.now += OVER
    reader, sock = conns["b"]
    reader.data_received(b"2")
    sock.closing = True
    reader.connection_lost(None)
    await turns(2)
    assert log == [("a", b"1")] and budget.waiting == 0


@BOTH
async def test_a_waiting_connection_released_by_another_reason_is_not_parsed_twice(
    make: Maker, clock: Clock
) -> None:
    """Held back by the budget, then paused and resumed for the peer's own writes
    (which schedules a release of what waited, beside its turn): what it sent is
    parsed once, in order; held back again later, it is queued again, once."""
    conns, log, budget = readers(make, "ab", clock)
    a, b = conns["a"][0], conns["b"][0]
    a._parser.cost = OVER
    a.data_received(b"1")
    b.data_received(b"2")
    b.pause_writing()
    b.resume_writing()  # schedules the release of b's backlog
    await turns(2)
    assert [data for name, data in log if name == "b"] == [b"2"]
    assert budget.spent() is False  # a new turn's clock, at once spent
    clock.now += OVER
    b.data_received(b"3")
    b.data_received(b"4")
    assert budget.waiting == 1
    await turns(3)
    assert [data for name, data in log if name == "b"] == [b"2", b"3", b"4"]
    assert budget.waiting == 0


@BOTH
async def test_a_connection_held_back_twice_in_a_row_is_served_both_times(
    make: Maker, clock: Clock
) -> None:
    conns, log, budget = readers(make, "ab", clock)
    a, b = conns["a"][0], conns["b"][0]
    a._parser.cost = OVER
    a.data_received(b"x")
    b.data_received(b"1")  # held back
    await turns(1)  # served
    a.data_received(b"y")  # spends this turn's budget (armed by that serving)
    b.data_received(b"2")  # held back again
    await turns(2)
    assert [data for name, data in log if name == "b"] == [b"1", b"2"]
    assert budget.waiting == 0 and conns["b"][1].reading


@BOTH
async def test_a_waiting_connection_is_paused_when_a_second_read_comes(
    make: Maker, clock: Clock
) -> None:
    """The first read of a wait leaves the socket read (the next turn comes before
    the next read, usually); a second one pauses it, so at most two reads wait."""
    conns, log, _ = readers(make, "ab", clock)
    conns["a"][0].data_received(b"1")
    clock.now += OVER
    reader, sock = conns["b"]
    reader.data_received(b"2")
    assert sock.reading
    reader.data_received(b"3")
    assert not sock.reading
    await turns(1)
    assert log == [("a", b"1"), ("b", b"2"), ("b", b"3")] and sock.reading


def test_a_dropped_loop_goes_with_its_budget() -> None:
    loops = []
    for _ in range(3):
        loop = asyncio.new_event_loop()
        turn_budget(loop).spent()  # armed: the next turn's call is scheduled
        loops.append(weakref.ref(loop))
        loop.close()
        del loop
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]


async def test_each_loop_has_one_budget() -> None:
    loop = asyncio.get_running_loop()
    assert turn_budget(loop) is turn_budget(loop)
    other = asyncio.new_event_loop()
    try:
        assert turn_budget(other) is not turn_budget(loop)
    finally:
        other.close()


class _SocketReader(PacedReader, asyncio.Protocol):
    """A `PacedReader` on a real socket, recording what waited when its turn came."""

    def __init__(self) -> None:
        self._parser = CountingParser()  # type: ignore[assignment]
        self.connection = Consumer(65_536)  # type: ignore[assignment]
        self._init_reading()
        self.held_at_turn: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport)

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_reading()

    def _go_on(self) -> None:
        self.held_at_turn.append(sum(map(len, self._backlog or [])))
        super()._go_on()


async def _flooded_reader_waits_for_its_turn() -> list[int]:
    """A reader paused (its queue full) while its peer writes 12 MB, resumed in a
    turn whose budget is spent: what it holds when its turn comes."""
    loop = asyncio.get_running_loop()
    made: list[_SocketReader] = []

    def factory() -> _SocketReader:
        made.append(_SocketReader())
        return made[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer = socket.create_connection(("127.0.0.1", port))
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 << 20)
    writer = threading.Thread(target=peer.sendall, args=(b"x" * (12 << 20),), daemon=True)
    try:
        await asyncio.sleep(0.05)
        reader = made[0]
        reader.pause_reading()
        writer.start()
        await asyncio.sleep(0.5)  # the kernel's buffers fill
        budget = turn_budget(loop)
        budget._seconds = 0.0
        budget.spent()  # this turn's clock: armed, and spent at once
        time.sleep(0.001)
        reader.resume_reading()  # the queue drained, in a spent turn
        await asyncio.sleep(0.2)
        return reader.held_at_turn
    finally:
        peer.close()
        server.close()


def test_a_flooded_connection_holds_at_most_two_reads_while_it_waits() -> None:
    """Under uvloop, the server's loop, which reads a ready socket up to 32 times
    per poll (256 KB each): a waiting connection that were not paused on its second
    read would hold megabytes.  (asyncio's own loop reads a socket once a turn.)"""
    held = uvloop.run(_flooded_reader_waits_for_its_turn())
    assert held, "the connection never waited for its turn"
    assert max(held) <= 2 * 262_144, held
