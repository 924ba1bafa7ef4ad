"""The slots' table on SQLite and PostgreSQL: quota and rate decided with the
slot's insert, a single PUT claimed, what is over found, account deletion."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.storage.database import Database
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.repositories.uploads import SlotRecord, UploadRepository

pytestmark = pytest.mark.parametrize(
    "db_backend",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
    indirect=True,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
OWNER = ("bob", "localhost")


def record(token: str, size: int = 10, now: datetime = NOW) -> SlotRecord:
    return SlotRecord(
        token.ljust(32, "x"),
        "f.txt",
        size,
        "text/plain",
        now + timedelta(minutes=5),
        None,
        None,
        now + timedelta(days=7),
    )


async def reserve(repo: UploadRepository, slot: SlotRecord, now: datetime = NOW, **kw: int):  # type: ignore[no-untyped-def]
    limits = {"quota": 100, "per_window": 10, **kw}
    return await repo.reserve(
        OWNER,
        slot,
        now=now,
        quota=limits["quota"],
        per_window=limits["per_window"],
        window=timedelta(minutes=1),
    )


async def test_quota_and_rate(db: Database) -> None:
    await db.accounts.create("bob", "localhost", derive_all("pw"))
    repo = UploadRepository(db.engine)
    assert await reserve(repo, record("a", 60)) is None
    refused = await reserve(repo, record("b", 50))
    assert refused is not None and refused.reason == "quota"
    assert refused.retry == NOW + timedelta(days=7)
    for i in range(9):
        assert await reserve(repo, record(f"c{i}", 1)) is None
    rated = await reserve(repo, record("d", 1))
    assert rated is not None and rated.reason == "rate"
    later = NOW + timedelta(minutes=2)
    assert await reserve(repo, record("e", 1, later), later) is None
    with pytest.raises(AccountNotFound):
        await repo.reserve(
            ("nobody", "localhost"),
            record("z"),
            now=NOW,
            quota=1,
            per_window=1,
            window=timedelta(minutes=1),
        )


async def test_racing_reservations_never_pass_the_quota(db: Database) -> None:
    await db.accounts.create("bob", "localhost", derive_all("pw"))
    repo = UploadRepository(db.engine)
    results = await asyncio.gather(*(reserve(repo, record(f"r{i}", 30)) for i in range(8)))
    assert sum(r is None for r in results) == 3


async def test_single_put_and_what_is_over(db: Database) -> None:
    await db.accounts.create("bob", "localhost", derive_all("pw"))
    repo = UploadRepository(db.engine)
    used, unused = record("used"), record("unused")
    await reserve(repo, used)
    await reserve(repo, unused)
    claims = await asyncio.gather(*(repo.claim_put(used.token, NOW) for _ in range(5)))
    assert claims.count(True) == 1
    await repo.release_put(used.token)
    assert await repo.claim_put(used.token, NOW)
    await repo.stored(used.token, NOW)
    assert not await repo.claim_put(unused.token, NOW + timedelta(minutes=6))  # too late
    assert await repo.expired(NOW + timedelta(minutes=6)) == [unused.token]
    assert set(await repo.expired(NOW + timedelta(days=8))) == {used.token, unused.token}
    await repo.forget([unused.token])
    assert await repo.known([used.token, unused.token]) == {used.token}
    await db.accounts.delete("bob", "localhost")
    assert await repo.get(used.token) is None
