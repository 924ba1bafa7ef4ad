"""RosterRepository enforces the per-account row limits where rows are inserted.

`put` and `add_pending_in` are the only inserts into the roster tables, so a
limit checked there, in the transaction that adds the row, holds for every
path (roster set, subscriptions, pre-approvals, anything added later).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.storage.database import Database
from chatgate.storage.records import RosterItem, Subscription
from chatgate.storage.repositories.roster import RosterLimitReached

ALICE = ("alice", "localhost")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}")
    await database.accounts.create(*ALICE, derive_all("pw"))
    try:
        yield database
    finally:
        await database.close()


async def test_put_refuses_a_new_item_past_the_limit(db: Database) -> None:
    await db.roster.put(ALICE, RosterItem("a@example.org"), 2)
    version = await db.roster.put(ALICE, RosterItem("b@example.org"), 2)
    with pytest.raises(RosterLimitReached) as refused:
        await db.roster.put(ALICE, RosterItem("c@example.org"), 2)
    assert (refused.value.what, refused.value.limit) == ("items", 2)
    assert await db.roster.count(ALICE) == 2
    assert await db.roster.version(ALICE) == version  # nothing written, no bump


async def test_put_still_replaces_an_item_at_the_limit(db: Database) -> None:
    await db.roster.put(ALICE, RosterItem("a@example.org"), 1)
    await db.roster.put(ALICE, RosterItem("a@example.org", subscription=Subscription.TO), 1)
    assert (await db.roster.item(ALICE, "a@example.org")).subscription is Subscription.TO  # type: ignore[union-attr]


async def test_add_pending_in_refuses_a_new_request_past_the_limit(db: Database) -> None:
    await db.roster.add_pending_in(ALICE, "a@example.org", None, 1)
    await db.roster.add_pending_in(ALICE, "a@example.org", "again", 1)  # a refresh
    with pytest.raises(RosterLimitReached) as refused:
        await db.roster.add_pending_in(ALICE, "b@example.org", None, 1)
    assert (refused.value.what, refused.value.limit) == ("requests", 1)
    assert await db.roster.pending_in(ALICE) == ["a@example.org"]


async def test_without_a_limit_nothing_is_refused(db: Database) -> None:
    for i in range(5):
        await db.roster.put(ALICE, RosterItem(f"{i}@example.org"))
        await db.roster.add_pending_in(ALICE, f"{i}@example.org", None)
    assert await db.roster.count(ALICE) == 5
