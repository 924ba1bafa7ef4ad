"""Fixtures for the storage tests: a fresh SQLite database file per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.auth.credentials import ScramKeys, derive_all
from chatgate.storage.database import Database

ALICE = ("alice", "localhost")
BOB = ("bob", "localhost")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'var' / 'chatgate.db'}"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(scope="session")
def keys() -> dict[str, ScramKeys]:
    return derive_all("correct horse")


@pytest.fixture
async def alice(db: Database, keys: dict[str, ScramKeys]) -> tuple[str, str]:
    await db.accounts.create(*ALICE, keys)
    return ALICE
