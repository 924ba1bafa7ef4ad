"""Fixtures for the storage tests: a fresh SQLite database file per test."""

from __future__ import annotations

import pytest

from chatgate.auth.credentials import ScramKeys, derive_all
from chatgate.storage.database import Database

ALICE = ("alice", "localhost")
BOB = ("bob", "localhost")


@pytest.fixture(scope="session")
def keys() -> dict[str, ScramKeys]:
    return derive_all("correct horse")


@pytest.fixture
async def alice(db: Database, keys: dict[str, ScramKeys]) -> tuple[str, str]:
    await db.accounts.create(*ALICE, keys)
    return ALICE
