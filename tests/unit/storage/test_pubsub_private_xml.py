"""PrivateXmlRepository (XEP-0049) on SQLite and PostgreSQL: per-namespace fragments,
quotas checked in the write, gone with the account."""

from __future__ import annotations

import pytest

from chatgate.storage.database import Database
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.repositories.private import PrivateQuotaExceeded, PrivateXmlRepository

from .conftest import BOB, rows

ROOMY = {"max_fragments": 100, "max_bytes": 10**6}


async def test_fragments_are_kept_per_namespace(db: Database, alice: tuple[str, str]) -> None:
    repo = PrivateXmlRepository(db.engine)
    assert await repo.get(alice, "a:ns") is None
    await repo.put(alice, "a:ns", "<x xmlns='a:ns'>1</x>", **ROOMY)
    await repo.put(alice, "b:ns", "<x xmlns='b:ns'>2</x>", **ROOMY)
    await repo.put(alice, "a:ns", "<x xmlns='a:ns'>3</x>", **ROOMY)
    assert await repo.get(alice, "a:ns") == "<x xmlns='a:ns'>3</x>"
    assert await repo.get(alice, "b:ns") == "<x xmlns='b:ns'>2</x>"
    await repo.remove(alice, "b:ns")
    assert await repo.get(alice, "b:ns") is None


async def test_quota_counts_other_namespaces_only(db: Database, alice: tuple[str, str]) -> None:
    repo = PrivateXmlRepository(db.engine)
    await repo.put(alice, "a", "x" * 60, max_fragments=2, max_bytes=100)
    await repo.put(alice, "a", "y" * 90, max_fragments=2, max_bytes=100)  # replaces
    with pytest.raises(PrivateQuotaExceeded):
        await repo.put(alice, "b", "z" * 20, max_fragments=2, max_bytes=100)
    await repo.put(alice, "b", "z" * 10, max_fragments=2, max_bytes=100)
    with pytest.raises(PrivateQuotaExceeded):
        await repo.put(alice, "c", "", max_fragments=2, max_bytes=100)
    assert await repo.get(alice, "b") == "z" * 10


async def test_unknown_account_and_account_deletion(db: Database, alice: tuple[str, str]) -> None:
    repo = PrivateXmlRepository(db.engine)
    with pytest.raises(AccountNotFound):
        await repo.put(BOB, "a", "<x/>", **ROOMY)
    await repo.put(alice, "a", "<x xmlns='a'/>", **ROOMY)
    await db.accounts.delete(*alice)
    assert await rows(db, "SELECT namespace FROM private_xml") == []
