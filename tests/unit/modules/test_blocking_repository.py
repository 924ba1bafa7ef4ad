"""The blocklist repository on SQLite and PostgreSQL: what changed, limits, cascade."""

from __future__ import annotations

import pytest

from chatgate.storage.database import Database
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.repositories.blocking import BlocklistFull, BlocklistRepository

ALICE = ("alice", "localhost")

#: on both backends (tests/unit/conftest.py doubles only its storage folders)
pytestmark = pytest.mark.parametrize(
    "db_backend",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
    indirect=True,
)


async def test_block_and_unblock_report_only_what_changed(db: Database) -> None:
    await db.accounts.create("alice", "localhost", {})
    repo = BlocklistRepository(db.engine)
    assert await repo.block(ALICE, ["b@x", "c@x", "b@x"], limit=10) == ["b@x", "c@x"]
    assert await repo.block(ALICE, ["c@x", "d@x"], limit=10) == ["d@x"]
    assert await repo.items(ALICE) == {"b@x", "c@x", "d@x"}
    assert await repo.unblock(ALICE, ["c@x", "nobody@x"]) == ["c@x"]
    assert await repo.unblock(ALICE, None) == ["b@x", "d@x"]
    assert await repo.items(ALICE) == frozenset()
    assert await repo.unblock(ALICE, None) == []


async def test_the_limit_refuses_the_whole_block(db: Database) -> None:
    await db.accounts.create("alice", "localhost", {})
    repo = BlocklistRepository(db.engine)
    await repo.block(ALICE, ["a@x", "b@x"], limit=3)
    with pytest.raises(BlocklistFull):
        await repo.block(ALICE, ["c@x", "d@x"], limit=3)
    assert await repo.count(ALICE) == 2
    # Already blocked JIDs do not count twice.
    assert await repo.block(ALICE, ["a@x", "c@x"], limit=3) == ["c@x"]


async def test_unknown_accounts_and_removal_cascade(db: Database) -> None:
    repo = BlocklistRepository(db.engine)
    with pytest.raises(AccountNotFound):
        await repo.block(("nobody", "localhost"), ["a@x"], limit=3)
    assert await repo.unblock(("nobody", "localhost"), None) == []
    await db.accounts.create("alice", "localhost", {})
    await repo.block(ALICE, ["a@x"], limit=3)
    await db.accounts.delete("alice", "localhost")
    assert await repo.items(ALICE) == frozenset()
    await db.accounts.create("alice", "localhost", {})
    assert await repo.items(ALICE) == frozenset()
