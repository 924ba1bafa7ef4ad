"""Fixtures for the storage tests (the database itself, SQLite or PostgreSQL, is
`db` from tests/unit/conftest.py), and `rows`: what a table holds, read with plain
SQL beside the repositories, whichever the backend."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

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


async def rows(db: Database, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """The rows `sql` selects, as plain tuples, read over `db`'s own engine."""
    async with db.engine.connect() as conn:
        return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]
