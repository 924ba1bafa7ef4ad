"""The push registration repository on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from chatgate.storage.database import Database
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.repositories.push import PushRepository, TooManyRegistrations

ALICE = ("alice", "localhost")

#: on both backends (tests/unit/conftest.py doubles only its storage folders)
pytestmark = pytest.mark.parametrize(
    "db_backend",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
    indirect=True,
)


async def test_push_registrations_replace_limit_disable_and_cascade(db: Database) -> None:
    repo = PushRepository(db.engine)
    with pytest.raises(AccountNotFound):
        await repo.enable(("nobody", "localhost"), "app@x/y", "n", {}, limit=2)
    await db.accounts.create("alice", "localhost", {})
    await repo.enable(ALICE, "app@x/y", "n1", {"secret": ["a"]}, limit=2)
    await repo.enable(ALICE, "app@x/y", "n1", {"secret": ["b"]}, limit=2)  # replaces
    await repo.enable(ALICE, "other@x/y", "n1", {}, limit=2)
    with pytest.raises(TooManyRegistrations):
        await repo.enable(ALICE, "app@x/y", "n2", {}, limit=2)
    found = await repo.targets(ALICE)
    assert [(t.service, t.node, t.options) for t in found] == [
        ("app@x/y", "n1", {"secret": ["b"]}),
        ("other@x/y", "n1", {}),
    ]
    assert await repo.disable(ALICE, "app@x/y", "n9") == 0
    assert await repo.disable(ALICE, "app@x/y", None) == 1
    await db.accounts.delete("alice", "localhost")
    assert await repo.targets(ALICE) == []
