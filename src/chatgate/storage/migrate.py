"""Running the Alembic migrations from code: no alembic.ini is needed at runtime.

`migrate(url)` (or `upgrade(engine)` for an engine already open) brings the
schema to the newest revision; running it on an up-to-date database does
nothing.  The migration scripts ship inside the package (`migrations/`).

Several processes may start together on one database (the server and a CLI
command, `serve --workers N`, the nodes of a cluster): the upgrade runs once.
On SQLite the whole upgrade is one ``BEGIN IMMEDIATE`` transaction, which takes
the file's write lock.  On PostgreSQL it is one transaction too (DDL is
transactional there: a failed upgrade leaves the schema as it was) that first
takes a transaction-scoped advisory lock, `MIGRATION_LOCK`; whoever waits for
it then reads the revision the winner committed and finds nothing to do.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import create_engine, writer

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: PostgreSQL advisory lock key held while migrating (a fixed 64-bit number, the
#: ASCII of "chatgate"; advisory locks are per database, so other databases on the
#: same server are not affected)
MIGRATION_LOCK = int.from_bytes(b"chatgate", "big") & 0x7FFF_FFFF_FFFF_FFFF


def alembic_config(url: str | None = None) -> AlembicConfig:
    """An Alembic configuration pointing at the packaged migrations."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _upgrade(connection: Connection) -> None:
    context = MigrationContext.configure(connection)
    if context.get_current_revision() == head_revision():
        return  # the common case: nothing to do, and no env.py import cost
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Upgrade the database behind `engine` to the head revision (idempotent).

    On SQLite this runs under the write lock, on PostgreSQL under the advisory
    lock `MIGRATION_LOCK`, so processes starting together do not both try to
    create the tables.
    """
    async with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        await conn.run_sync(_upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def migrate(url: str) -> None:
    """Upgrade the database at `url` to the head revision; safe to call any number of
    times.  Its statements have no time limit (a migration may rewrite a large table)."""
    engine = create_engine(url, limit_statements=False)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
