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


async def test_blockers_names_the_accounts_with_a_list_up_to_a_limit(db: Database) -> None:
    repo = BlocklistRepository(db.engine)
    assert await repo.blockers(10) == set()
    for name in ("alice", "bob", "carol"):
        await db.accounts.create(name, "localhost", {})
    await repo.block(ALICE, ["x@y", "z@y"], limit=10)
    await repo.block(("bob", "localhost"), ["x@y"], limit=10)
    assert await repo.blockers(10) == {"alice@localhost", "bob@localhost"}
    assert await repo.blockers(2) == {"alice@localhost", "bob@localhost"}
    assert await repo.blockers(1) is None  # more than the limit: not known
    await repo.unblock(ALICE, None)
    assert await repo.blockers(10) == {"bob@localhost"}
