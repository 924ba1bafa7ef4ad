"""Running the Alembic migrations from code: no alembic.ini is needed at runtime.

`migrate(url)` (or `upgrade(engine)` for an engine already open) brings the
schema to the newest revision; running it on an up-to-date database does
nothing.  The migration scripts ship inside the package (`migrations/`).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import create_engine, writer

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


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

    On SQLite this runs under the write lock, so a server and a CLI starting
    together do not both try to create the tables.
    """
    async with writer(engine).begin() as conn:
        await conn.run_sync(_upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def migrate(url: str) -> None:
    """Upgrade the database at `url` to the head revision; safe to call any number of times."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
