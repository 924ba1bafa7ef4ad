"""Alembic environment for chatgate's schema (loaded by Alembic by path, not imported).

`chatgate.storage.migrate` runs the migrations programmatically and hands us
an open connection in ``config.attributes["connection"]``.  When Alembic's own
command line is used instead (for `alembic revision --autogenerate` while
developing), the URL comes from ``sqlalchemy.url`` and an async engine is made
here.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from chatgate.storage.engine import create_engine
from chatgate.storage.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode recreates tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    asyncio.run(_run_with_own_engine(url))


if context.is_offline_mode():
    raise RuntimeError("chatgate migrations run online only")
run_migrations_online()
