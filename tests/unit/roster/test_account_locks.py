"""LocalAccountLocks: per-account turns, no deadlock across pairs, nothing kept when idle."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.modules.roster.locks import AccountLocks, LocalAccountLocks

TURNS = 100  # loop turns: far more than any step here needs (no I/O, no clock)


async def turn(times: int = TURNS) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


def test_local_locks_implement_the_interface() -> None:
    locks: AccountLocks = LocalAccountLocks()
    assert callable(locks.hold)


async def test_holders_of_one_account_take_turns_in_arrival_order() -> None:
    locks = LocalAccountLocks()
    order: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold("alice@localhost"):
            order.append("first in")
            await release.wait()
            order.append("first out")

    async def later(name: str) -> None:
        async with locks.hold("alice@localhost"):
            order.append(name)

    tasks = [asyncio.ensure_future(first())]
    await turn()
    tasks += [asyncio.ensure_future(later("second")), asyncio.ensure_future(later("third"))]
    await turn()
    assert order == ["first in"]
    assert locks.waiting("alice@localhost") == 2
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first in", "first out", "second", "third"]


async def test_other_accounts_do_not_wait() -> None:
    locks = LocalAccountLocks()
    release = asyncio.Event()

    async def hold_alice() -> None:
        async with locks.hold("alice@localhost"):
            await release.wait()

    task = asyncio.ensure_future(hold_alice())
    await turn()
    async with locks.hold("bob@localhost"):
        pass
    release.set()
    await task


async def test_pairs_taken_in_opposite_orders_do_not_deadlock() -> None:
    locks = LocalAccountLocks()
    done: list[str] = []

    async def pair(a: str, b: str) -> None:
        async with locks.hold(a, b):
            await turn(3)
            done.append(a)

    await asyncio.wait_for(
        asyncio.gather(
            pair("alice@localhost", "bob@localhost"),
            pair("bob@localhost", "alice@localhost"),
            pair("bob@localhost", "bob@localhost"),
        ),
        timeout=60,  # a deadlock guard only; the gather finishes in a few loop turns
    )
    assert sorted(done) == ["alice@localhost", "bob@localhost", "bob@localhost"]


async def test_holding_again_in_the_same_task_raises_instead_of_hanging() -> None:
    locks = LocalAccountLocks()
    async with locks.hold("alice@localhost"):
        with pytest.raises(RuntimeError, match="already held"):
            async with locks.hold("bob@localhost", "alice@localhost"):
                pass
    assert len(locks) == 0


async def test_nothing_is_kept_once_idle_even_after_cancellation_and_errors() -> None:
    locks = LocalAccountLocks()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("alice@localhost", "bob@localhost"):
            await release.wait()

    async def waiter() -> None:
        async with locks.hold("alice@localhost"):
            pass

    async def failing() -> None:
        async with locks.hold("carol@localhost"):
            raise ValueError("boom")

    first = asyncio.ensure_future(holder())
    await turn()
    stuck = asyncio.ensure_future(waiter())
    await turn()
    assert locks.waiting("alice@localhost") == 1
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    with pytest.raises(ValueError):
        await failing()
    assert len(locks) == 2  # alice and bob, still held by the first task
    release.set()
    await first
    assert len(locks) == 0


async def test_many_accounts_leave_no_trace() -> None:
    locks = LocalAccountLocks()
    for i in range(10_000):
        async with locks.hold(f"user{i}@localhost", "victim@localhost"):
            pass
    assert len(locks) == 0
