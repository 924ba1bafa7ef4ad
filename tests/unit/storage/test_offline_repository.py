"""OfflineRepository: the per-account limit holds under concurrency; take_all empties."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from chatgate.storage.database import Database
from chatgate.storage.errors import AccountNotFound

from .conftest import BOB

T0 = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


async def test_store_refuses_past_the_limit(db: Database, alice: tuple[str, str]) -> None:
    assert await db.offline.store(alice, "<message>1</message>", T0, 2)
    assert await db.offline.store(alice, "<message>2</message>", T0, 2)
    assert not await db.offline.store(alice, "<message>3</message>", T0, 2)
    assert await db.offline.count(alice) == 2


async def test_limit_holds_for_concurrent_stores(db: Database, alice: tuple[str, str]) -> None:
    results = await asyncio.gather(
        *(db.offline.store(alice, f"<message>{i}</message>", T0, 5) for i in range(30))
    )
    assert results.count(True) == 5
    assert await db.offline.count(alice) == 5


async def test_limit_holds_across_engines_on_one_file(
    db: Database, db_url: str, alice: tuple[str, str]
) -> None:
    # Two engines on one file behave like two processes (server and CLI).
    other = await Database.open(db_url)
    try:
        results = await asyncio.gather(
            *(
                (db if i % 2 else other).offline.store(alice, f"<m>{i}</m>", T0, 7)
                for i in range(24)
            )
        )
    finally:
        await other.close()
    assert results.count(True) == 7
    assert await db.offline.count(alice) == 7


async def test_take_all_returns_in_order_and_empties(db: Database, alice: tuple[str, str]) -> None:
    for i in range(3):
        await db.offline.store(alice, f"<message>{i}</message>", T0 + timedelta(seconds=i), 10)
    taken = await db.offline.take_all(alice)
    assert [m.stanza for m in taken] == [f"<message>{i}</message>" for i in range(3)]
    assert [m.stamp for m in taken] == [T0 + timedelta(seconds=i) for i in range(3)]
    assert taken[0].stamp.tzinfo is UTC
    assert await db.offline.take_all(alice) == []
    assert await db.offline.count(alice) == 0


async def test_concurrent_take_all_hands_out_each_message_once(
    db: Database, alice: tuple[str, str]
) -> None:
    for i in range(10):
        await db.offline.store(alice, f"<message>{i}</message>", T0, 10)
    batches = await asyncio.gather(*(db.offline.take_all(alice) for _ in range(4)))
    ids = [m.id for batch in batches for m in batch]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 10


async def test_store_for_unknown_account_raises(db: Database) -> None:
    with pytest.raises(AccountNotFound):
        await db.offline.store(BOB, "<message/>", T0, 10)
    assert await db.offline.take_all(BOB) == []


async def test_naive_stamp_is_refused(db: Database, alice: tuple[str, str]) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        await db.offline.store(alice, "<message/>", datetime(2024, 1, 1), 10)
