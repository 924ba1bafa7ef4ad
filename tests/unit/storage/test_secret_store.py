"""Installation secrets: made once, the same for every process on the database.

Two `Database` objects on one SQLite file (or PostgreSQL database) stand for two server processes (each
has its own engine and connection pool, as a process would); the test that
matters is that they agree when they ask at the same moment.
"""

from __future__ import annotations

import asyncio

import pytest

from chatgate.storage.database import Database
from chatgate.storage.migrate import head_revision
from chatgate.storage.repositories.secrets import MemorySecretStore, SecretStore, SqlSecretStore

from .conftest import rows


async def test_the_first_value_stored_is_kept(db: Database) -> None:
    assert await db.secrets.get_or_create("decoy", b"first") == b"first"
    assert await db.secrets.get_or_create("decoy", b"second") == b"first"
    assert await db.secrets.get_or_create("other", b"second") == b"second"


async def test_a_reopened_database_gives_the_same_secret(db_url: str) -> None:
    first = await Database.open(db_url)
    try:
        value = await first.secrets.get_or_create("decoy", b"made-by-the-first")
    finally:
        await first.close()
    again = await Database.open(db_url)
    try:
        assert await again.secrets.get_or_create("decoy", b"made-by-the-second") == value
    finally:
        await again.close()


async def test_processes_starting_together_agree(db_url: str) -> None:
    databases = [await Database.open(db_url) for _ in range(4)]
    try:
        values = await asyncio.gather(
            *(
                d.secrets.get_or_create("decoy", f"candidate-{n}".encode())
                for n, d in enumerate(databases)
                for _ in range(3)
            )
        )
    finally:
        for d in databases:
            await d.close()
    assert len(set(values)) == 1


async def test_secrets_live_in_their_own_table(db: Database) -> None:
    await db.secrets.get_or_create("decoy", b"\x00\xffbinary")
    stored = await rows(db, "SELECT name, value FROM installation_secrets")
    assert stored == [("decoy", b"\x00\xffbinary")]


@pytest.mark.parametrize("name", ["", "Upper", "with space", "x" * 65, "-leading"])
async def test_invalid_names_are_refused(db: Database, name: str) -> None:
    with pytest.raises(ValueError):
        await db.secrets.get_or_create(name, b"value")


async def test_an_empty_secret_is_refused(db: Database) -> None:
    with pytest.raises(ValueError):
        await db.secrets.get_or_create("decoy", b"")


async def test_memory_store_has_the_same_semantics() -> None:
    store: SecretStore = MemorySecretStore()
    assert await store.get_or_create("decoy", b"first") == b"first"
    assert await store.get_or_create("decoy", b"second") == b"first"
    with pytest.raises(ValueError):
        await store.get_or_create("Bad Name", b"x")


def test_the_database_store_implements_the_interface(db: Database) -> None:
    store: SecretStore = db.secrets
    assert isinstance(store, SqlSecretStore)


def test_migration_0004_follows_0003() -> None:
    from alembic.script import ScriptDirectory

    from chatgate.storage.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config()).get_revision("0004")
    assert script is not None and script.down_revision == "0003"
    assert head_revision() >= "0004"
