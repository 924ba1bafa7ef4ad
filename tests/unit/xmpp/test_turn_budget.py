"""The parsing budget of a loop turn (`xmpp/transports/turns.py`) with real TCP and
component readers: once spent, the connections read later wait and are served
first in the next turn, in order, each queued once; one that must wait longer than
that stops being read until its turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatgate.xmpp.transports import turns as turns_module
from chatgate.xmpp.transports.turns import TurnBudget, turn_budget
from tests.unit.xmpp.test_pacing import BOTH, Maker, turns

BUDGET = 0.002


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
    make: Maker, names: str, clock: Clock, budget: TurnBudget
) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    log: list[tuple[str, bytes]] = []
    out = {}
    for name in names:
        reader, sock, _ = make(65_536)
        reader._parser = OrderedParser(name, log, clock)
        reader._turns = budget
        out[name] = (reader, sock)
    return out, log


@BOTH
async def test_connections_read_after_the_budget_wait_for_the_next_turn_in_order(
    make: Maker, clock: Clock
) -> None:
    budget = TurnBudget(asyncio.get_running_loop(), BUDGET)
    conns, log = readers(make, "abc", clock, budget)
    conns["a"][0].data_received(b"1")
    clock.now += BUDGET + 0.0001  # a has parsed for the whole budget
    conns["c"][0].data_received(b"2")
    conns["b"][0].data_received(b"3")
    conns["c"][0].data_received(b"4")  # in flight while c waits: kept behind "2"
    assert log == [("a", b"1")]
    # a wait of one turn does not pause the sockets (the next turn serves them
    # before any socket is read)
    assert all(sock.reading for _, sock in conns.values())
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
    budget = TurnBudget(asyncio.get_running_loop(), BUDGET)
    conns, log = readers(make, "abcd", clock, budget)
    for name in "abc":
        conns[name][0]._parser.cost = BUDGET + 0.0001  # each parse spends a budget
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
    budget = TurnBudget(asyncio.get_running_loop(), BUDGET)
    conns, log = readers(make, "abcdef", clock, budget)
    for name, (reader, _) in conns.items():
        reader.data_received(name.encode())
        clock.now += BUDGET / 10
    assert [name for name, _ in log] == list("abcdef")
    assert budget.waiting == 0 and all(sock.reading for _, sock in conns.values())


@BOTH
async def test_a_connection_lost_while_it_waits_is_skipped(make: Maker, clock: Clock) -> None:
    budget = TurnBudget(asyncio.get_running_loop(), BUDGET)
    conns, log = readers(make, "ab", clock, budget)
    conns["a"][0].data_received(b"1")
    clock.now += BUDGET + 0.0001
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
    (which releases what waited) and held back again: it is queued once, and what
    it sent is parsed once, in order."""
    budget = TurnBudget(asyncio.get_running_loop(), BUDGET)
    conns, log = readers(make, "ab", clock, budget)
    a, b = conns["a"][0], conns["b"][0]
    a._parser.cost = BUDGET + 0.0001
    a.data_received(b"1")
    b.data_received(b"2")
    b.pause_writing()
    b.resume_writing()  # schedules the release of b's backlog
    await turns(1)
    await turns(1)
    b.data_received(b"3")
    await turns(3)
    assert [data for name, data in log if name == "b"] == [b"2", b"3"]
    assert budget.waiting == 0


async def test_each_loop_has_one_budget() -> None:
    loop = asyncio.get_running_loop()
    assert turn_budget(loop) is turn_budget(loop)
    other = asyncio.new_event_loop()
    try:
        assert turn_budget(other) is not turn_budget(loop)
    finally:
        other.close()
